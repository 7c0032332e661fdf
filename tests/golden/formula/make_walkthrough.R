# lme4's answers for the seminar walkthrough in formulas (examples/seminar_walkthrough.py)
# and a few formula features, on skmlm's bundled ESS-like data (skmlm/datasets/ess.csv).
# Run from the repository root: Rscript tests/golden/formula/make_walkthrough.R
# R 4.2.2, lme4 1.1-31, performance.
suppressMessages({library(lme4); library(jsonlite); library(performance)})
ess <- read.csv("skmlm/datasets/ess.csv", colClasses = c(cntry = "character", gndr = "character"))
ess$edu_b <- ave(ess$eduyrs, ess$cntry)          # between(eduyrs, cntry)
ess$edu_w <- ess$eduyrs - ess$edu_b             # within(eduyrs, cntry)

fits <- list(
  null   = lmer(stflife ~ 1 + (1 | cntry), ess, REML = FALSE),
  edu    = lmer(stflife ~ eduyrs + (1 | cntry), ess, REML = FALSE),
  slope  = lmer(stflife ~ eduyrs + (eduyrs | cntry), ess, REML = FALSE),
  bw_gni = lmer(stflife ~ edu_b + edu_w + gnipc1000 + (1 | cntry), ess, REML = FALSE),
  cross  = lmer(stflife ~ edu_b + edu_w * gnipc1000 + (edu_w | cntry), ess, REML = FALSE),
  person = lmer(stflife ~ eduyrs * gnipc1000 + gndr + I(agea^2) + (1 + eduyrs | cntry), ess, REML = FALSE),
  diag   = lmer(stflife ~ eduyrs + gndr + (eduyrs || cntry), ess, REML = TRUE),
  logit  = glmer(happy ~ eduyrs + gndr + scale(agea) + hinctnta + (1 | cntry), ess, family = binomial)
)
# skmlm's names for R's columns built outside the formula (between/within)
rename <- c(edu_b = "between(eduyrs, cntry)", edu_w = "within(eduyrs, cntry)",
            "edu_w:gnipc1000" = "within(eduyrs, cntry):gnipc1000")
nm <- function(x) ifelse(x %in% names(rename), rename[x], x)

newdata <- ess[c(1, 2, 201, 5800), ]
newdata$cntry[4] <- "NEW"  # a country not seen in fit: the population prediction
# skmlm's between()/within() of a country not seen in fit: its mean in the new data (one row)
newdata$edu_b[4] <- newdata$eduyrs[4]; newdata$edu_w[4] <- 0
summ <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  fe <- fixef(m); se <- sqrt(diag(as.matrix(vcov(m))))
  names(fe) <- nm(names(fe)); names(se) <- names(fe)
  vcl <- lapply(names(VarCorr(m)), function(g) {
    v <- as.matrix(VarCorr(m)[[g]]); dimnames(v) <- list(nm(rownames(v)), nm(colnames(v)))
    list(group = g, terms = rownames(v), covariance = unname(v))
  })
  r2 <- suppressWarnings(performance::r2_nakagawa(m))
  list(
    fixef = as.list(fe), fixef_se = as.list(se), varcorr = vcl,
    sigma = if (isGLMM(m)) NULL else sigma(m),
    logLik = as.numeric(logLik(m)), AIC = AIC(m), BIC = BIC(m), df = attr(logLik(m), "df"),
    df_resid = df.residual(m),
    r2_marginal = r2$R2_marginal, r2_conditional = r2$R2_conditional,
    predict = unname(predict(m, newdata, allow.new.levels = TRUE, type = "response")),
    coef_first = {cf <- coef(m)$cntry[1, , drop = FALSE]; names(cf) <- nm(names(cf)); as.list(cf)},
    fitted_head = unname(head(fitted(m), 3)),
    resid_response_head = unname(head(residuals(m, type = "response"), 3)),
    resid_pearson_head = unname(head(residuals(m, type = "pearson"), 3)),
    resid_deviance_head = unname(head(residuals(m, type = "deviance"), 3))
  )
}
out <- lapply(fits, summ)
a <- anova(fits$null, fits$edu, fits$slope, fits$bw_gni, fits$cross)
out$anova <- list(models = c("null", "edu", "slope", "bw_gni", "cross")[order(c(3, 4, 6, 6, 8))],
                  npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik, Chisq = a$Chisq, Df = a$Df,
                  p = a[["Pr(>Chisq)"]], rownames = rownames(a))
out$newdata_rows <- c(1, 2, 201, 5800)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE),
           "tests/golden/formula/walkthrough.json")
# lme4's printed summaries, for the layout of skmlm's summary()
writeLines(capture.output(print(summary(fits$person))), "tests/golden/formula/summary_person.txt")
writeLines(capture.output(print(summary(fits$diag))), "tests/golden/formula/summary_diag.txt")
writeLines(capture.output(print(summary(fits$logit))), "tests/golden/formula/summary_logit.txt")
