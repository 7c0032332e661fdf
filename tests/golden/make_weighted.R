# A prior-weights case for skmlm's sample_weight: lme4's lmer with weights on sleepstudy.
# Usage: Rscript make_weighted.R   (writes sleepstudy_weighted_ml.{csv,json} here)
suppressMessages({library(lme4); library(jsonlite)})
d <- sleepstudy
d$w <- 1 + (d$Days %% 3) + as.numeric(as.integer(d$Subject) %% 2 == 0) * 0.5
m <- lmer(Reaction ~ Days + (Days | Subject), d, REML = FALSE, weights = w)
out <- data.frame(y = d$Reaction, Days = d$Days, w = d$w, g_Subject = as.character(d$Subject))
write.csv(out, "sleepstudy_weighted_ml.csv", row.names = FALSE)
vc <- VarCorr(m)$Subject
re <- ranef(m)$Subject
ref <- list(name = "sleepstudy_weighted_ml", formula = "Reaction ~ Days + (Days | Subject), weights = w",
  family = "gaussian", reml = FALSE, weights = "w",
  fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
  covariance = unname(as.matrix(vc)), sigma = sigma(m), theta = I(unname(getME(m, "theta"))),
  logLik = as.numeric(logLik(m)), levels = I(rownames(re)), ranef = unname(as.matrix(re)))
write(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE), "sleepstudy_weighted_ml.json")
cat("logLik", as.numeric(logLik(m)), "\n")
