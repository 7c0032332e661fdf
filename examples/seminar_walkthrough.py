"""The multilevel seminar's sequence of models, on ESS-like data: life satisfaction of
5,800 people in 29 countries.

1. the null model and the ICC: how much of the variance lies between countries?
2. + years of education (a level-1 predictor)
3. a random slope of education: does its effect differ between countries?
4. between/within: education's country mean and the deviation from it
5. + GNI per capita (a level-2 predictor)
6. a cross-level interaction: does the within-country effect of education depend on GNI?
Then the AIC/BIC table with likelihood-ratio tests (lme4's ``anova``), the explained
variance at each level, Nakagawa's R^2, and all models side by side (sjPlot's
``tab_model``). Every model is fitted by ML (``reml=False``) so that models with
different fixed effects can be compared.

Run: ``python examples/seminar_walkthrough.py``
"""

import pandas as pd

from skmlm import (
    MixedLinearRegressor, between_within, compare_models, r2_nakagawa, tab_models, variance_reduction,
)
from skmlm.datasets import load_ess

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 20)

df = load_ess()
y, country = df["stflife"], df["cntry"]
print(f"{len(df)} respondents in {country.nunique()} countries\n")


def fit(columns, slopes=None):
    return MixedLinearRegressor(reml=False, random_slopes=slopes).fit(df[columns], y, groups=country)


# 1. null model: stflife ~ 1 + (1 | cntry)
null = fit([])
print(null.summary())
print(f"\nICC: {null.icc_:.3f} of the variance in life satisfaction lies between countries\n")

# 2. + education: stflife ~ eduyrs + (1 | cntry)
edu = fit(["eduyrs"])
# 3. random slope: stflife ~ eduyrs + (eduyrs | cntry)
slope = fit(["eduyrs"], slopes=["eduyrs"])

# 4. between/within: the country mean of education and the deviation from it
df = df.join(between_within(df[["eduyrs"]], groups=country))  # eduyrs_between, eduyrs_within
# 5. + GNI: stflife ~ eduyrs_between + eduyrs_within + gnipc1000 + (1 | cntry)
bw_gni = fit(["eduyrs_between", "eduyrs_within", "gnipc1000"])
print(bw_gni.summary())

# 6. cross-level interaction, a column built by hand, with a random slope of the within part:
#    stflife ~ eduyrs_between + eduyrs_within * gnipc1000 + (eduyrs_within | cntry)
df["within_x_gni"] = df["eduyrs_within"] * df["gnipc1000"]
cross = fit(["eduyrs_between", "eduyrs_within", "gnipc1000", "within_x_gni"], slopes=["eduyrs_within"])

models = {"null": null, "edu": edu, "slope": slope, "bw_gni": bw_gni, "cross": cross}

print("\nModel comparison (likelihood-ratio test of each model against the one before):")
print(compare_models(*models.values(), names=list(models)).round(4).to_string())
# slope vs bw_gni are not nested (same number of parameters): their test is empty; compare
# them by AIC/BIC. Nested sequences are tested one step at a time:
print("\nRandom slope of education (is its variance > 0?):")
print(compare_models(edu, slope, names=["edu", "slope"]).round(4).to_string())
print("\nBetween/within + GNI against education alone, then the cross-level interaction:")
print(compare_models(edu, bw_gni, cross, names=["edu", "bw_gni", "cross"]).round(4).to_string())

print("\nProportional reduction in variance against the null model (R^2 at each level):")
red = pd.DataFrame({name: variance_reduction(m, null)["reduction"] for name, m in models.items() if name != "null"})
red.index.name = None
print(red.round(3).to_string())
# the slope model's tau00 is the intercept variance at eduyrs = 0 (no schooling), far outside
# the data: it grows, and its "reduction" is negative. Centre a slope variable before reading
# tau00 (as the cross model does with eduyrs_within).

print("\nNakagawa's R^2 and the ICC:")
nak = pd.DataFrame({name: r2_nakagawa(m) for name, m in models.items()}).T
print(nak[["r2_marginal", "r2_conditional", "icc_adjusted"]].round(3).to_string())

print("\nAll models side by side:")
print(tab_models(*models.values(), names=list(models)))
