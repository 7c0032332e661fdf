# Inference reference values for the GLMM family cases (tests/golden/families). Refits each model
# below from its CSV (lme4 glmer; glmmTMB for NB2 and Gamma) and writes inference_<name>.json:
#   logLik, fixef (+ SE), theta, varcorr, dispersion (glmmTMB sigma())
#   confint_wald     lme4 confint(m, method = "Wald") (NA for variance parameters);
#                    glmmTMB confint(m, method = "wald", parm = "beta_") (fixed effects only)
#   confint_profile  lme4 confint(m, method = "profile", oldNames = TRUE) (.sig01 ... SDs, then fixed);
#                    glmmTMB confint(m, method = "profile") (its own parameter names and scales)
#                    stopped after 300 s (status, seconds and warnings recorded)
#   r2_nakagawa, icc performance::r2_nakagawa / icc, with insight::get_variance's components
#   summary          the printed summary(m)
# Usage (from the repository root): Rscript tests/golden/families/make_inference.R tests/golden/families
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite); library(performance)})
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else "tests/golden/families"
profile_limit <- 300  # seconds

# name, CSV (relative to dir), formula, family, engine, nAGQ, weights column, what to compute
spec <- function(name, csv, formula, family, engine = "lme4", nagq = 1, weights = NULL,
                 profile = TRUE, full = TRUE)
  list(name = name, csv = csv, formula = formula, family = family, engine = engine, nagq = nagq,
       weights = weights, profile = profile, full = full)
cases <- list(
  spec("cbpp_trials_laplace", "cbpp_trials_laplace.csv", y ~ period2 + period3 + period4 + (1 | g_herd),
       quote(binomial), weights = "trials"),
  spec("poisson_offset_ri", "sim_poisson_offset_slope.csv", y ~ x + offset(offset) + (1 | g_g), quote(poisson)),
  spec("poisson_offset_ri_agq9", "sim_poisson_offset_slope.csv", y ~ x + offset(offset) + (1 | g_g),
       quote(poisson), nagq = 9),
  spec("sim_poisson_offset_slope", "sim_poisson_offset_slope.csv", y ~ x + offset(offset) + (1 + x | g_g),
       quote(poisson)),
  spec("grouseticks_poisson", "grouseticks_poisson.csv",
       y ~ YEAR96 + YEAR97 + cHEIGHT + (1 | g_BROOD) + (1 | g_INDEX) + (1 | g_LOCATION), quote(poisson),
       profile = FALSE),
  # the binary (one row per animal) cbpp case of tests/golden: profile intervals only
  spec("cbpp_binary_laplace", "../cbpp_binary_laplace.csv", y ~ period2 + period3 + period4 + (1 | g_herd),
       quote(binomial), full = FALSE),
  spec("salamanders_nb2", "salamanders_nb2.csv",
       y ~ sppPR + sppDM + sppEC_A + sppEC_L + sppDES_L + sppDF + minedno + (1 | g_site),
       quote(nbinom2), engine = "glmmTMB"),
  spec("sim_gamma_log", "sim_gamma_log.csv", y ~ x + (1 | g_g), quote(Gamma(link = "log")), engine = "glmmTMB")
)

ci_list <- function(ci) {
  ci <- as.matrix(ci)
  list(names = I(rownames(ci)), lower = I(unname(ci[, 1])), upper = I(unname(ci[, 2])))
}
# run expr, collecting its warnings (and messages) instead of printing them
collect <- function(expr) {
  w <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) invokeRestart("muffleMessage"))
  list(value = val, warnings = I(unique(w)))
}
varcorr_list <- function(m, engine) {
  vc <- VarCorr(m); if (engine == "glmmTMB") vc <- vc$cond
  lapply(names(vc), function(g) list(group = g, terms = I(colnames(vc[[g]])),
                                     covariance = unname(as.matrix(vc[[g]]))))
}

for (cs in cases) {
  d <- read.csv(file.path(dir, cs$csv), colClasses = "character")
  for (v in names(d)) d[[v]] <- if (startsWith(v, "g_")) factor(d[[v]]) else as.numeric(d[[v]])
  # the data and the call live in the global environment, so that performance's null-model
  # refit (update(m, y ~ (1 | g) ...)) finds them
  dname <- paste0("data_", cs$name); assign(dname, d, envir = globalenv())
  cl <- if (cs$engine == "lme4") call("glmer", cs$formula, data = as.name(dname), family = cs$family, nAGQ = cs$nagq)
        else call("glmmTMB", cs$formula, data = as.name(dname), family = cs$family)
  if (!is.null(cs$weights)) cl$weights <- as.name(cs$weights)
  fit <- collect(eval(cl, globalenv())); m <- fit$value
  lme <- cs$engine == "lme4"
  fam <- family(m)
  fe <- if (lme) fixef(m) else fixef(m)$cond
  V <- if (lme) as.matrix(vcov(m)) else as.matrix(vcov(m)$cond)
  out <- list(name = cs$name, data = basename(cs$csv), formula = paste(deparse(cs$formula), collapse = ""),
              family = if (identical(cs$family, quote(nbinom2))) "nbinom2" else fam$family, link = fam$link,
              engine = cs$engine, engine_version = as.character(packageVersion(cs$engine)),
              nAGQ = cs$nagq, weights = cs$weights, n_obs = nobs(m),
              logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
              fixef = as.list(fe), theta = I(unname(getME(m, "theta"))))
  if (lme && cs$nagq > 1) {
    # lme4 (issues #161, #567): with nAGQ > 1 logLik() is on the deviance-residual scale, i.e. the
    # full log-likelihood minus the saturated model's; add the latter back for the full value
    yy <- getME(m, "y"); wt <- weights(m)
    out$logLik_saturated <- -fam$aic(yy, rep(1, length(yy)), yy, wt, 0) / 2
    out$logLik_full <- out$logLik + out$logLik_saturated
    out$logLik_meaning <- "logLik is lme4's as reported (nAGQ > 1: full log-likelihood minus the saturated log-likelihood, lme4 issues #161/#567); logLik_full = logLik + logLik_saturated is comparable with Laplace fits and the families JSONs"
  }
  if (!lme) out$theta_meaning <- "glmmTMB getME(m, 'theta'): log standard deviations (and correlation parameters), not lme4's relative Cholesky factor"
  if (cs$full) {
    out$fixef_se <- as.list(setNames(sqrt(diag(V)), names(fe)))
    out$varcorr <- varcorr_list(m, cs$engine)
    out["dispersion"] <- list(if (lme) NULL else sigma(m))
    out$fit_warnings <- fit$warnings
    out$confint_wald <- ci_list(if (lme) confint(m, method = "Wald")
                                else confint(m, method = "wald", parm = "beta_")[, 1:2, drop = FALSE])
  }
  if (cs$profile) {
    t0 <- proc.time()[["elapsed"]]
    setTimeLimit(elapsed = profile_limit, transient = TRUE)
    pr <- tryCatch(collect(if (lme) confint(m, method = "profile", oldNames = TRUE) else confint(m, method = "profile", full = TRUE)),
                   error = function(e) list(value = NULL, warnings = I(character(0)), error = conditionMessage(e)))
    setTimeLimit(elapsed = Inf)
    out["confint_profile"] <- list(if (is.null(pr$value)) NULL else ci_list(pr$value))
    out$confint_profile_status <- if (is.null(pr$error)) "ok" else paste("failed:", pr$error)
    out$confint_profile_seconds <- proc.time()[["elapsed"]] - t0
    out$confint_profile_warnings <- pr$warnings
    if (!lme) {
      out$confint_profile_meaning <- "glmmTMB confint(m, method = 'profile', full = TRUE), on glmmTMB's internal scales (the default call gives the same rows without d~): fixed effects by name; d~(Intercept) = betad, the log dispersion: NB2 log(size theta), Gamma log(shape) = -2 log(sigma); theta_1|<group>.1 = the log standard deviation of that random intercept"
      out$internal_parameters <- list(names = I(unname(rownames(vcov(m, full = TRUE)))), values = I(unname(m$fit$par)))
    }
  } else if (cs$full) {
    out["confint_profile"] <- list(NULL)
    out$confint_profile_status <- "skipped: not requested (too slow for this model)"
  }
  if (cs$full) {
    r2 <- collect(r2_nakagawa(m)); ic <- collect(icc(m)); gv <- collect(insight::get_variance(m))
    nm <- collect(insight::null_model(m)); nfe <- if (lme) fixef(nm$value) else fixef(nm$value)$cond
    out$r2_nakagawa <- list(
      conditional = unname(r2$value$R2_conditional), marginal = unname(r2$value$R2_marginal),
      var_fixed = gv$value$var.fixed, var_random = gv$value$var.random,
      var_residual = gv$value$var.residual, var_distribution = gv$value$var.distribution,
      var_dispersion = gv$value$var.dispersion,
      null_model_intercept = unname(nfe[1]), null_model_mu = exp(unname(nfe[1])),
      approximation = paste(
        "performance", as.character(packageVersion("performance")), "/ insight", as.character(packageVersion("insight")),
        "have no 'approximation' argument; they use the lognormal approximation (Nakagawa et al. 2017):",
        "Poisson/NB2 log link: var_distribution = log1p(V(mu)/mu^2), V(mu) = mu (Poisson) or mu + mu^2/theta (NB2),",
        "mu = exp(intercept of the null model: the same random effects and offset, fixed part ~ 1);",
        "binomial logit: pi^2/3; Gamma: family(m)$variance(sigma) = sigma^2 (no log1p);",
        "a random intercept with one level per row goes to var_dispersion (added to var_residual), not var_random;",
        "var_residual = var_distribution + var_dispersion; R2m = vf/(vf+vr+vres), R2c = (vf+vr)/(vf+vr+vres)"),
      warnings = I(unique(c(r2$warnings, gv$warnings))))
    out$icc <- list(adjusted = unname(ic$value$ICC_adjusted), unadjusted = unname(ic$value$ICC_unadjusted),
                    warnings = ic$warnings)
    out$performance_version <- as.character(packageVersion("performance"))
    out$insight_version <- as.character(packageVersion("insight"))
    out$summary <- paste(capture.output(print(summary(m))), collapse = "\n")
  }
  out$R_version <- R.version.string
  write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
        file.path(dir, paste0("inference_", cs$name, ".json")))
  cat(sprintf("%-26s logLik=%.6f profile=%s\n", cs$name, out$logLik,
              if (is.null(out$confint_profile_status)) "-" else out$confint_profile_status))
}
