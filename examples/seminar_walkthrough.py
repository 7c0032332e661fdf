"""The multilevel seminar's sequence of models in lme4's formulas, on ESS-like data: life
satisfaction of 5,800 people in 29 countries (simulated: see skmlm.datasets.load_ess).

1. the null model and the ICC: how much of the variance lies between countries?
2. + years of education (a level-1 predictor)
3. a random slope of education: does its effect differ between countries?
4. between/within: education's country mean and the deviation from it, + GNI per capita
   (a level-2 predictor)
5. a cross-level interaction: does the within-country effect of education depend on GNI?
6. individual covariates: gender (a categorical predictor), age squared
7. a logistic model of a binary outcome ("happy")
Then the AIC/BIC table with likelihood-ratio tests (lme4's ``anova``), the explained
variance at each level, Nakagawa's R^2, and all models side by side (sjPlot's
``tab_model``). The linear models are fitted by ML (``REML = FALSE``) so that models with
different fixed effects can be compared. Each step's lme4 call is in the comment above it;
tests/test_formula_golden.py checks every number against lme4's on the same data.

Run: ``python examples/seminar_walkthrough.py``
"""

import pandas as pd

from skmlm import compare_models, glmer, lmer, r2_nakagawa, tab_models, variance_reduction
from skmlm.datasets import load_ess

FORMULAS = {
    # lmer(stflife ~ 1 + (1 | cntry), ess, REML = FALSE)
    "null": "stflife ~ 1 + (1 | cntry)",
    # lmer(stflife ~ eduyrs + (1 | cntry), ess, REML = FALSE)
    "edu": "stflife ~ eduyrs + (1 | cntry)",
    # lmer(stflife ~ eduyrs + (eduyrs | cntry), ess, REML = FALSE)
    "slope": "stflife ~ eduyrs + (eduyrs | cntry)",
    # ess$edu_b <- ave(ess$eduyrs, ess$cntry); ess$edu_w <- ess$eduyrs - ess$edu_b
    # lmer(stflife ~ edu_b + edu_w + gnipc1000 + (1 | cntry), ess, REML = FALSE)
    "bw_gni": "stflife ~ between(eduyrs, cntry) + within(eduyrs, cntry) + gnipc1000 + (1 | cntry)",
    # lmer(stflife ~ edu_b + edu_w * gnipc1000 + (edu_w | cntry), ess, REML = FALSE)
    "cross": "stflife ~ between(eduyrs, cntry) + within(eduyrs, cntry) * gnipc1000 "
             "+ (within(eduyrs, cntry) | cntry)",
    # lmer(stflife ~ eduyrs * gnipc1000 + gndr + I(agea^2) + (1 + eduyrs | cntry), ess, REML = FALSE)
    "person": "stflife ~ eduyrs * gnipc1000 + gndr + I(agea^2) + (1 + eduyrs | cntry)",
}
# glmer(happy ~ eduyrs + gndr + scale(agea) + hinctnta + (1 | cntry), ess, family = binomial)
LOGIT = "happy ~ eduyrs + gndr + scale(agea) + hinctnta + (1 | cntry)"


def fit_models(ess):
    """The walkthrough's models, fitted to the data ``ess``."""
    models = {name: lmer(f, ess, REML=False) for name, f in FORMULAS.items()}
    models["logit"] = glmer(LOGIT, ess, family="binomial")
    return models


def main():
    pd.set_option("display.width", 120)
    pd.set_option("display.max_columns", 20)
    ess = load_ess()
    print(f"{len(ess)} respondents in {ess['cntry'].nunique()} countries (simulated)\n")
    models = fit_models(ess)
    null = models["null"]

    print(null.summary())  # summary(null)
    print(f"\nICC: {null.icc_:.3f} of the variance in life satisfaction lies between countries\n")
    print(models["cross"].summary())  # summary(cross)

    print("\nModel comparison (lme4's anova(null, edu, slope, bw_gni, cross)):")
    nested = ["null", "edu", "slope", "bw_gni", "cross"]
    print(compare_models(*(models[k] for k in nested), names=nested).to_string())
    # slope and bw_gni have the same number of parameters and are not nested: their row's
    # test is empty; compare them by AIC/BIC.

    print("\nProportional reduction in variance against the null model (R^2 at each level):")
    red = pd.DataFrame({k: variance_reduction(models[k], null)["reduction"] for k in nested[1:]})
    print(red.round(3).to_string())

    print("\nNakagawa's R^2 (performance::r2_nakagawa):")
    nak = pd.DataFrame({k: r2_nakagawa(m) for k, m in models.items()}).T
    print(nak[["r2_marginal", "r2_conditional"]].round(3).to_string())

    print("\nGender and age (gndrM: men against women, the first level):")
    print(models["person"].summary())

    print("\nThe logistic model of being happy (glmer, binomial):")
    logit = models["logit"]
    print(logit.summary())
    print("\nEach country's own intercept and slopes (lme4's coef(logit)$cntry), first rows:")
    print(logit.coef()["cntry"].head().round(4).to_string())

    print("\nAll models side by side (sjPlot's tab_model):")
    print(tab_models(*(models[k] for k in nested), names=nested))


if __name__ == "__main__":
    main()
