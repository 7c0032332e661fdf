# lme4's printed summaries (print(summary(m)) at R's default width 80 and digits 7), the
# layout skmlm's summary() follows, and lmer with an offset. Run from the repository root:
#   Rscript tests/golden/summaries/make_summaries.R
# R 4.2.2, lme4 1.1-31, lmerTest 3.1-3.
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
out <- "tests/golden/summaries"
save <- function(m, name) writeLines(capture.output(print(summary(m))), file.path(out, paste0(name, ".txt")))

sleep <- read.csv("skmlm/datasets/sleepstudy.csv", colClasses = c(Subject = "character"))
cbpp <- read.csv("skmlm/datasets/cbpp_binary.csv", colClasses = c(period = "character", herd = "character"))
pois <- read.csv("tests/golden/families/sim_poisson_offset_slope.csv")
sal <- read.csv("tests/golden/families/salamanders_nb2.csv")

# GLMMs with PIRLS converged as skmlm converges it (lme4's default tolPwrss = 1e-7 stops it
# early, moving the Laplace deviance by ~1e-3 and the standard errors by ~1%); the printed
# call shows the control argument, which skmlm's summary does not have
ctl <- glmerControl(tolPwrss = 1e-12)

# an LMM with a random slope, Satterthwaite t-tests (lmerTest)
save(lmerTest::lmer(Reaction ~ Days + (Days | Subject), sleep), "sleep_slope_lmertest")
# a logistic GLMM with a categorical predictor
save(glmer(y ~ period + (1 | herd), cbpp, family = binomial, control = ctl), "cbpp_logit")
# a Poisson GLMM with an offset in the formula and a correlated random slope
save(glmer(y ~ x + offset(offset) + (x | g_g), pois, family = poisson, control = ctl), "poisson_offset")
# negative binomial (NB2): glmer.nb prints the family as "Negative Binomial(theta)". Its Laplace
# likelihood is not glmmTMB's (which skmlm matches): logLik -826.157 at theta 0.9419 against
# -826.202 at 0.9424, estimates ~1% apart, so only the layout and the rough numbers compare
save(glmer.nb(y ~ sppPR + sppDM + sppEC_A + sppEC_L + sppDES_L + sppDF + minedno + (1 | g_site), sal,
              control = ctl), "salamanders_nb2")

# lmer with an offset (lmerTest's summary, as skmlm's): lme4 fits y - offset, and predict() adds the offset of the new data
m <- lmerTest::lmer(Reaction ~ Days + offset(2 * log(Days + 1)) + (Days | Subject), sleep, REML = FALSE)
save(m, "sleep_offset_ml")
new <- sleep[c(1, 15, 100, 180), ]
new$Days <- c(0.5, 3, 11, 7)
new$Subject[4] <- "NEW"
vc <- VarCorr(m)$Subject
writeLines(toJSON(list(
  logLik = as.numeric(logLik(m)), fixef = as.list(fixef(m)), sigma = sigma(m),
  covariance = unname(as.matrix(vc)),
  fitted_head = unname(head(fitted(m), 3)), resid_head = unname(head(residuals(m), 3)),
  newdata_days = new$Days, newdata_subject = new$Subject,
  predict = unname(predict(m, new, allow.new.levels = TRUE)),
  predict_population = unname(predict(m, new, re.form = NA))
), auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "sleep_offset_ml.json"))
