# lme4 (bobyqa) on the designs of make_data.py: logLik, fixed effects, SEs, VarCorr.
# Usage: Rscript fit_lme4.R
suppressMessages(library(lme4))
f <- function(file, form, REML, w=FALSE) {
  d <- read.csv(file)
  m <- if (w) lmer(form, d, REML=REML, weights=w, control=lmerControl(optimizer="bobyqa")) else lmer(form, d, REML=REML, control=lmerControl(optimizer="bobyqa"))
  cat(file, deparse(form), "logLik", format(as.numeric(logLik(m)), digits=12), "\n")
  cat(" fixef", format(fixef(m), digits=8), "\n se", format(sqrt(diag(as.matrix(vcov(m)))), digits=8), "\n")
  print(VarCorr(m), comp="Variance", digits=8)
}
f("a.csv", y ~ x1 + x2 + (x1 | g1) + (1 | g2), TRUE)
f("a.csv", y ~ x1 + x2 + (x1 || g1) + (1 | g2), FALSE, TRUE)
f("b.csv", y ~ x1 + x2 + (x1 | g1) + (1 | g2), TRUE)
f("d.csv", y ~ x1 + x2 + (x1 | g1) + (1 | g2), FALSE)
# one scalar random term (the closed-form path) and crossed random intercepts
f("a.csv", y ~ x1 + x2 + (1 | g1), TRUE, TRUE)
f("b.csv", y ~ x1 + x2 + (0 + x1 | g1), FALSE)
f("d.csv", y ~ x1 + x2 + (1 | g1), FALSE)
f("a.csv", y ~ x1 + x2 + (1 | g1) + (1 | g2), TRUE)
