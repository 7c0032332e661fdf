# lme4 and glmmTMB on count, proportion and positive data beyond tests/golden/families:
# offsets with an interaction (NB2), adaptive quadrature with an offset (Poisson) and with
# trials (binomial), a random slope with an offset (Poisson), a random slope on a factor
# (binomial), a correlated random slope (Gamma). Each data set is one CSV, as the formulas
# read it; each case is an entry of reference.json naming its data.
# Run: Rscript make_reference.R (lme4, glmmTMB, mlmRev, jsonlite).
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite); library(mlmRev)})
out <- list()
saturated <- function(family, y, n = NULL) {  # log-likelihood of the saturated model
  if (family == "poisson") return(sum(dpois(y, y, log = TRUE)))
  sum(dbinom(y, n, y / n, log = TRUE))
}
covariances <- function(vc) lapply(vc, function(m) unname(as.matrix(m)[, , drop = FALSE]))
save_case <- function(name, data, fit, formula, family, nAGQ = 1, logLik_full = NULL) {
  data_name <- deparse(substitute(data))
  write.csv(data, paste0(data_name, ".csv"), row.names = FALSE)
  if (inherits(fit, "glmmTMB")) {
    fe <- fixef(fit)$cond; se <- sqrt(diag(vcov(fit)$cond)); vc <- VarCorr(fit)$cond; disp <- sigma(fit)
    engine <- paste("glmmTMB", packageVersion("glmmTMB"))
  } else {
    fe <- fixef(fit); se <- sqrt(diag(as.matrix(vcov(fit)))); vc <- VarCorr(fit); disp <- NULL
    engine <- paste("lme4", packageVersion("lme4"))
  }
  ll <- as.numeric(logLik(fit))
  out[[name]] <<- list(data = data_name, formula = formula, family = family, nAGQ = nAGQ, engine = engine, logLik = ll,
                       logLik_full = if (is.null(logLik_full)) ll else ll + logLik_full,
                       fixef = as.list(fe), fixef_se = as.list(se),
                       covariance = lapply(covariances(vc), function(m) m), dispersion = disp)
}
data(Owls, package = "glmmTMB")
owls <- data.frame(y = Owls$SiblingNegotiation, food = as.character(Owls$FoodTreatment),
                   sex = as.character(Owls$SexParent), arrival = Owls$ArrivalTime,
                   log_brood = log(Owls$BroodSize), nest = as.character(Owls$Nest))
f <- "y ~ food * sex + offset(log_brood) + (1 | nest)"
save_case("owls_nb2_offset", owls, glmmTMB(as.formula(f), data = owls, family = nbinom2), f, "negative_binomial")
f <- "y ~ food + arrival + offset(log_brood) + (1 | nest)"
save_case("owls_poisson_agq10", owls, glmer(as.formula(f), data = owls, family = poisson, nAGQ = 10), f, "poisson",
          nAGQ = 10, logLik_full = saturated("poisson", owls$y))
f <- "y ~ food + arrival + offset(log_brood) + (1 + arrival | nest)"
save_case("owls_poisson_slope", owls, glmer(as.formula(f), data = owls, family = poisson), f, "poisson")
data(Contraception, package = "mlmRev")
contraception <- data.frame(use = as.integer(Contraception$use == "Y"), age = Contraception$age,
                     urban = as.character(Contraception$urban), livch = as.character(Contraception$livch),
                     district = as.character(Contraception$district))
f <- "use ~ age + I(age^2) + urban + livch + (1 | district)"
save_case("contraception_agq15", contraception, glmer(as.formula(f), data = contraception, family = binomial, nAGQ = 15), f,
          "binomial", nAGQ = 15)
f <- "use ~ age + I(age^2) + urban + livch + (1 + urban | district)"
save_case("contraception_slope", contraception, glmer(as.formula(f), data = contraception, family = binomial), f, "binomial")
data(cbpp, package = "lme4")
cbpp_data <- data.frame(incidence = cbpp$incidence, size = cbpp$size, period = as.character(cbpp$period),
                 herd = as.character(cbpp$herd))
f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
save_case("cbpp_trials_agq25", cbpp_data, glmer(as.formula(f), data = cbpp_data, family = binomial, nAGQ = 25), f, "binomial",
          nAGQ = 25, logLik_full = saturated("binomial", cbpp_data$incidence, cbpp_data$size))
set.seed(11)
n <- 1500; g <- sample(60, n, TRUE); x <- rnorm(n); b0 <- rnorm(60, 0, 0.5); b1 <- rnorm(60, 0, 0.3)
mu <- exp(1 + 0.4 * x + b0[g] + b1[g] * x)
gamma_sim <- data.frame(y = rgamma(n, shape = 3, rate = 3 / mu), x = x, g = paste0("g", g))
f <- "y ~ x + (1 + x | g)"
save_case("gamma_log_slope", gamma_sim, glmmTMB(as.formula(f), data = gamma_sim, family = Gamma(link = "log")), f, "gamma")
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "reference.json")
