# Statistical inference reference values from lme4 / lmerTest for the reference cases.
# For every case in tests/golden/ (CSV + JSON written by make_reference.R) it refits the
# model from the CSV and records, in inference_<case>.json:
#   confint_wald     lme4 confint(m, method = "Wald")     (NA for variance parameters)
#   confint_profile  lme4 confint(m, method = "profile")  (gaussian cases; lme4 profiles the ML refit)
#   satterthwaite    lmerTest summary(m)$coefficients: Estimate, SE, df, t, p (gaussian)
#   condvar          attr(ranef(m, condVar = TRUE)[[g]], "postVar"), per grouping factor
#   confint_boot     lme4 confint(m, method = "boot", nsim = 2000) (percentile; sleepstudy_rs_ml only)
#   derivs           lme4's gradient and Hessian at the optimum (m@optinfo$derivs, theta scale)
# Usage (from the repository root): Rscript tests/golden/make_inference.R tests/golden
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else "tests/golden"

profile_cases <- c("sleepstudy_rs_ml", "sleepstudy_ri_ml", "sleepstudy_rs_reml", "sleepstudy_diag_reml",
                   "dyestuff_reml", "penicillin_crossed_reml", "pastes_nested_reml", "ess_edu_slope_ml")

# lme4's parametric bootstrap (percentile intervals) with many replicates: the reference a
# short skmlm bootstrap is compared with, within both Monte Carlo errors
boot_cases <- c("sleepstudy_rs_ml")
n_boot_reference <- 2000

ci_list <- function(ci) {
  ci <- as.matrix(ci)
  list(names = I(rownames(ci)), lower = I(unname(ci[, 1])), upper = I(unname(ci[, 2])))
}

build_formula <- function(ref) {
  fixed <- if (length(ref$fixed)) paste(ref$fixed, collapse = " + ") else "1"
  if (!ref$fit_intercept) fixed <- paste("0 +", fixed)
  bars <- vapply(ref$random_terms, function(t) {
    lhs <- c(if (t$intercept) "1" else "0", unlist(t$slopes))
    sprintf("(%s | %s)", paste(lhs, collapse = " + "), t$group)
  }, "")
  as.formula(paste("y ~", fixed, "+", paste(bars, collapse = " + ")))
}

for (path in sort(Sys.glob(file.path(dir, "*.json")))) {
  ref <- fromJSON(path, simplifyVector = FALSE)
  if (is.null(ref$random_terms) || grepl("^inference_", basename(path))) next
  name <- ref$name
  d <- read.csv(file.path(dir, paste0(name, ".csv")), colClasses = "character")
  for (v in names(d)) if (!startsWith(v, "g_")) d[[v]] <- as.numeric(d[[v]])
  for (v in names(d)) if (startsWith(v, "g_")) d[[v]] <- factor(d[[v]])
  f <- build_formula(ref)
  gaussian <- ref$family == "gaussian"
  m <- if (gaussian) lmerTest::lmer(f, d, REML = ref$reml) else glmer(f, d, family = binomial, nAGQ = ref$nAGQ)
  out <- list(name = name, formula = paste(deparse(f), collapse = ""), family = ref$family,
              reml = ref$reml, logLik = as.numeric(logLik(m)), theta = I(unname(getME(m, "theta"))),
              fixef = I(unname(fixef(m))), sigma = if (gaussian) sigma(m) else NULL,
              confint_wald = ci_list(confint(m, method = "Wald")))
  if (gaussian && name %in% profile_cases) {
    t0 <- proc.time()[["elapsed"]]
    ci <- suppressWarnings(suppressMessages(confint(m, method = "profile")))
    out$confint_profile <- ci_list(ci)
    out$confint_profile_seconds <- proc.time()[["elapsed"]] - t0
  }
  if (name %in% boot_cases) {
    t0 <- proc.time()[["elapsed"]]
    ci <- suppressWarnings(suppressMessages(confint(m, method = "boot", nsim = n_boot_reference, seed = 20240501)))
    out$confint_boot <- ci_list(ci)
    out$confint_boot_nsim <- n_boot_reference
    out$confint_boot_seconds <- proc.time()[["elapsed"]] - t0
  }
  if (gaussian) {
    co <- summary(m)$coefficients
    out$satterthwaite <- list(names = I(rownames(co)), estimate = I(unname(co[, "Estimate"])),
      se = I(unname(co[, "Std. Error"])), df = I(unname(co[, "df"])), t = I(unname(co[, "t value"])),
      p = I(unname(co[, "Pr(>|t|)"])))
  }
  re <- ranef(m, condVar = TRUE)
  out$condvar <- lapply(names(re), function(g) {
    pv <- attr(re[[g]], "postVar")  # q x q x levels
    per_term <- is.list(pv)  # (x || g): one 1 x 1 x levels array per term; covariances not given
    if (per_term) {
      q <- length(pv); k <- dim(pv[[1]])[3]
      full <- array(NA_real_, c(q, q, k))
      for (i in seq_len(q)) full[i, i, ] <- pv[[i]][1, 1, ]
      pv <- full
    }
    list(group = g, levels = I(rownames(re[[g]])), terms = I(colnames(re[[g]])), per_term = per_term,
         dim = I(dim(pv)), values = I(as.numeric(pv)))
  })
  dv <- m@optinfo$derivs
  if (!is.null(dv)) out$derivs <- list(gradient = I(as.numeric(dv$gradient)), hessian = I(as.numeric(dv$Hessian)))
  write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
        file.path(dir, paste0("inference_", name, ".json")))
  cat(sprintf("%-28s done\n", name))
}
