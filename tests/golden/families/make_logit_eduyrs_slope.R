# The units case logit_eduyrs_slope: y = (stflife >= 8) (life satisfaction 0-10, "8 or more")
# from skmlm/datasets/ess.csv, and y ~ eduyrs + (1 + eduyrs | cntry), binomial logit, Laplace, with
# eduyrs left in years (unscaled), fitted by lme4 glmer and by glmmTMB; as a check, lme4 on
# standardised eduyrs mapped back to years. Any engine should reach the same optimum whatever the
# units. Writes logit_eduyrs_slope.csv (y, eduyrs, cntry) and logit_eduyrs_slope.json.
# Usage (from the repository root):
#   Rscript tests/golden/families/make_logit_eduyrs_slope.R skmlm/datasets/ess.csv tests/golden/families
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
src <- if (length(args) >= 1) args[1] else "skmlm/datasets/ess.csv"
outdir <- if (length(args) >= 2) args[2] else "tests/golden/families"
ess <- read.csv(src)
d <- data.frame(y = as.integer(ess$stflife >= 8), eduyrs = ess$eduyrs, cntry = as.character(ess$cntry))
write.csv(d, file.path(outdir, "logit_eduyrs_slope.csv"), row.names = FALSE)
d <- read.csv(file.path(outdir, "logit_eduyrs_slope.csv"))  # fit exactly what the CSV holds
d$cntry <- factor(d$cntry)
f <- y ~ eduyrs + (1 + eduyrs | cntry)

collect <- function(expr) {
  w <- character(0)
  val <- withCallingHandlers(expr, warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") })
  list(value = val, warnings = I(unique(w)))
}
vc_list <- function(S) list(list(group = "cntry", terms = I(c("(Intercept)", "eduyrs")), covariance = unname(S)))
info <- function(logLik, fe, se, S, warnings, extra = list())
  c(list(logLik = logLik, fixef = as.list(fe), fixef_se = as.list(se), varcorr = vc_list(S),
         warnings = warnings), extra)

t0 <- proc.time()[["elapsed"]]
f1 <- collect(glmer(f, d, family = binomial)); m1 <- f1$value
lme4_fit <- info(as.numeric(logLik(m1)), fixef(m1), sqrt(diag(as.matrix(vcov(m1)))),
  as.matrix(VarCorr(m1)$cntry), f1$warnings,
  list(version = as.character(packageVersion("lme4")), theta = I(unname(getME(m1, "theta"))),
       optimizer = "glmer default (bobyqa + Nelder_Mead)", singular = isSingular(m1),
       seconds = proc.time()[["elapsed"]] - t0))

t0 <- proc.time()[["elapsed"]]
f2 <- collect(glmmTMB(f, d, family = binomial)); m2 <- f2$value
tmb_fit <- info(as.numeric(logLik(m2)), fixef(m2)$cond, sqrt(diag(as.matrix(vcov(m2)$cond))),
  unname(as.matrix(VarCorr(m2)$cond$cntry)), f2$warnings,
  list(version = as.character(packageVersion("glmmTMB")), convergence = m2$fit$convergence,
       pdHess = m2$sdr$pdHess, seconds = proc.time()[["elapsed"]] - t0))

# check: lme4 on z = (eduyrs - c) / s; in years, slope b/s, intercept a - b c/s, covariance A S A'
cc <- mean(d$eduyrs); s <- sd(d$eduyrs)
d$z <- (d$eduyrs - cc) / s
f3 <- collect(glmer(y ~ z + (1 + z | cntry), d, family = binomial)); m3 <- f3$value
A <- matrix(c(1, 0, -cc / s, 1 / s), 2)
b <- fixef(m3); fe3 <- setNames(c(b[1] - b[2] * cc / s, b[2] / s), c("(Intercept)", "eduyrs"))
se3 <- setNames(sqrt(diag(A %*% as.matrix(vcov(m3)) %*% t(A))), names(fe3))
scaled_fit <- info(as.numeric(logLik(m3)), fe3, se3, A %*% as.matrix(VarCorr(m3)$cntry) %*% t(A), f3$warnings,
  list(center = cc, scale = s))

fits <- list(lme4 = lme4_fit, glmmTMB = tmb_fit, lme4_standardised_backtransformed = scaled_fit)
best <- names(fits)[which.max(sapply(fits, `[[`, "logLik"))]
out <- list(
  name = "logit_eduyrs_slope", source = src,
  outcome = "y = 1 if stflife (life satisfaction, 0-10) >= 8, else 0",
  formula = "y ~ eduyrs + (1 + eduyrs | cntry)", family = "binomial", link = "logit",
  reml = FALSE, nAGQ = 1, n_obs = nrow(d), n_groups = nlevels(d$cntry), response = "y",
  fixed = I("eduyrs"), fit_intercept = TRUE,
  random_terms = list(list(group = "cntry", intercept = TRUE, slopes = I("eduyrs"))),
  note = "eduyrs is in years, not standardised; the group column is cntry (no g_ prefix). Top-level logLik/fixef/fixef_se/varcorr are from reference_engine, the fit with the highest logLik; all fits are under engines",
  reference_engine = best,
  logLik = fits[[best]]$logLik, fixef = fits[[best]]$fixef, fixef_se = fits[[best]]$fixef_se,
  varcorr = fits[[best]]$varcorr,
  engines = fits, R_version = R.version.string)
write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
      file.path(outdir, "logit_eduyrs_slope.json"))
for (k in names(fits)) cat(sprintf("%-34s logLik=%.8f fixef=%s warnings=%s\n", k, fits[[k]]$logLik,
  paste(signif(unlist(fits[[k]]$fixef), 8), collapse = ","), paste(fits[[k]]$warnings, collapse = " | ")))
