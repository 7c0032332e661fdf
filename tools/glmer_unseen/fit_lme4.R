# glmer with PIRLS converged fully (tolPwrss = 1e-12), as skmlm does: see docs/logistic.md
suppressMessages(library(lme4))
specs <- list(d0 = y ~ x1 + x2 + (1 | g), d1 = y ~ x1 + x2 + (1 | g), d2 = y ~ x1 + x2 + (0 + x1 | g), d3 = y ~ x1 + x2 + (1 | g))
for (nm in names(specs)) {
  d <- read.csv(paste0(nm, ".csv"))
  m <- glmer(specs[[nm]], data = d, family = binomial, weights = w, control = glmerControl(tolPwrss = 1e-12, optCtrl = list(maxfun = 1e5)))
  cat(nm, sprintf("%.8f", logLik(m)), sprintf("%.8f", fixef(m)), sprintf("%.6f", sqrt(diag(as.matrix(vcov(m))))), sprintf("%.6f", getME(m, "theta")), "\n")
}
d <- read.csv("d0.csv")
m <- glmer(y ~ x1 + x2 + (1 | g), data = d, family = binomial, weights = w, nAGQ = 9, control = glmerControl(tolPwrss = 1e-12, optCtrl = list(maxfun = 1e5)))
cat("d0_agq9", sprintf("%.8f", logLik(m)), sprintf("%.8f", fixef(m)), sprintf("%.6f", sqrt(diag(as.matrix(vcov(m))))), sprintf("%.6f", getME(m, "theta")), "\n")
d <- read.csv("d4.csv")
m <- glmer(y ~ x1 + x2 + (x1 | g) + (1 | h), data = d, family = binomial, control = glmerControl(tolPwrss = 1e-12, optCtrl = list(maxfun = 1e5)))
cat("d4", sprintf("%.8f", logLik(m)), sprintf("%.8f", fixef(m)), sprintf("%.6f", sqrt(diag(as.matrix(vcov(m))))), sprintf("%.6f", getME(m, "theta")), "\n")
