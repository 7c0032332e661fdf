"""Infections per patient-day: counts with an exposure, a random intercept and overdispersion.

Hospital-acquired infections are counted in 30 hospitals, one row per ward and month.
Wards differ in size, so a row's count is a rate times its patient-days: the log of the
patient-days (in thousands) is an offset, and the coefficients are log rate ratios per
1000 patient-days. Hospitals differ in their rate (a random intercept); the predictor is
the ward's hand-hygiene audit score (standardised). The data are simulated, with more
spread than a Poisson (NB2, theta = 5), to be found.

1. The Poisson model, lme4's
   ``glmer(infections ~ hygiene + offset(log(kpd)) + (1 | hospital), family = poisson)``.
2. Overdispersion: the Pearson ratio, then the NB2 model (glmmTMB's ``nbinom2``), compared
   with the Poisson by ``compare_models``.
3. Predictions for a known and a new hospital; on held-out hospitals (GroupKFold), the
   mean over the hospital distribution is calibrated, the mean at effect 0 is too low.

Run: ``python examples/poisson_exposure.py``
"""

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import GroupKFold

from skmlm import MixedGLMRegressor, compare_models, r2_nakagawa

# -- the data ---------------------------------------------------------------------------
rng = np.random.default_rng(42)
n_hosp = 30
rows_per = rng.integers(12, 37, n_hosp)                       # ward-months per hospital
hospital = np.repeat([f"H{i:02d}" for i in range(n_hosp)], rows_per)
n = len(hospital)
patient_days = rng.integers(150, 1500, n)
hygiene = rng.normal(0, 1, n).round(2)
u = rng.normal(0, 0.4, n_hosp)                                # hospital effects, SD 0.4
mu = patient_days / 1000 * np.exp(1.2 - 0.25 * hygiene + np.repeat(u, rows_per))
theta = 5.0
df = pd.DataFrame({
    "hospital": hospital, "patient_days": patient_days, "hygiene": hygiene,
    "infections": rng.negative_binomial(theta, theta / (theta + mu)),
})
X, y, g = df[["hygiene"]], df["infections"], df["hospital"]
offset = np.log(df["patient_days"] / 1000)                    # rates per 1000 patient-days
print(f"{n} ward-months in {n_hosp} hospitals; {y.sum()} infections in {df.patient_days.sum()} patient-days "
      f"({1000 * y.sum() / df.patient_days.sum():.2f} per 1000)\n")

# -- 1. Poisson ---------------------------------------------------------------------------
poisson = MixedGLMRegressor(family="poisson").fit(X, y, groups=g, offset=offset)
print(poisson.summary())

# -- 2. overdispersion ----------------------------------------------------------------------
fitted = poisson.predict(X, groups=g, offset=offset)
ratio = np.sum((y - fitted) ** 2 / fitted) / (n - poisson.n_params_)
print(f"\nPearson chi2 / df of the Poisson fit: {ratio:.2f} (about 1 if the Poisson variance were right)")

nb2 = MixedGLMRegressor(family="negative_binomial").fit(X, y, groups=g, offset=offset)
print(f"NB2: theta = {nb2.dispersion_:.2f} (simulated with {theta:g}); Var y = mu + mu^2 / theta\n")
table = compare_models(poisson, nb2, names=["poisson", "nb2"])
print(table[["npar", "AIC", "BIC", "logLik", "Chisq", "Df", "Pr(>Chisq)"]].to_string(
    float_format="{:.3f}".format, formatters={"Pr(>Chisq)": "{:.3g}".format}))
print("(theta = infinity, the Poisson, is on the boundary: the chi-square p-value is conservative)\n")

side = pd.DataFrame({
    "poisson": poisson.fixed_effects_["Estimate"], "SE poisson": poisson.fixed_effects_["Std. Error"],
    "nb2": nb2.fixed_effects_["Estimate"], "SE nb2": nb2.fixed_effects_["Std. Error"],
})
print(side.round(4).to_string())
irr = np.exp(nb2.confint(parm=["hygiene"]).iloc[0])
print(f"\nNB2 rate ratio per SD of hygiene score: {np.exp(nb2.coef_[0]):.3f} "
      f"(profile 95% interval {irr.iloc[0]:.3f} to {irr.iloc[1]:.3f})")
print(f"hospital SD (log scale): {np.sqrt(nb2.random_covariance_['hospital'].iloc[0, 0]):.3f} (simulated 0.4)")
r2 = r2_nakagawa(nb2)
print(f"Nakagawa R2 (lognormal approximation): marginal {r2['r2_marginal']:.3f}, "
      f"conditional {r2['r2_conditional']:.3f}; ICC {r2['icc_adjusted']:.3f}")

# -- 3. predictions -------------------------------------------------------------------------
# a ward-month of 800 patient-days at an average hygiene score, in hospital H00 and in a new hospital
ward = pd.DataFrame({"hygiene": [0.0, 0.0, 0.0]})
where = ["H00", "new", "new"]
kpd = np.log([0.8, 0.8, 0.8])
avg = nb2.predict(ward, groups=where, offset=kpd)
zero = nb2.predict(ward, groups=where, offset=kpd, unseen_levels="zero")
print(f"\nExpected infections in 800 patient-days (hygiene 0): hospital H00 {avg[0]:.2f} "
      f"(its effect {nb2.random_effects_['hospital'].loc['H00'].iloc[0]:+.3f}); "
      f"a new hospital {avg[1]:.2f} averaged over hospitals, {zero[1]:.2f} at effect 0")
print(f"per 1000 patient-days (no offset): new hospital {nb2.predict(ward.iloc[:1], groups=['new'])[0]:.2f}")

# held-out hospitals: offsets and groups are routed to fit, predict and score
print("\nHeld-out hospitals (GroupKFold, 5 folds): observed and predicted infections")
rows = []
with sklearn.config_context(enable_metadata_routing=True):
    for fold, (train, test) in enumerate(GroupKFold(n_splits=5).split(X, y, g)):
        m = MixedGLMRegressor(family="negative_binomial").fit(
            X.iloc[train], y.iloc[train], groups=g.iloc[train], offset=offset.iloc[train])
        Xt, gt, ot = X.iloc[test], g.iloc[test], offset.iloc[test]
        rows.append({
            "fold": fold, "observed": int(y.iloc[test].sum()),
            "averaged": m.predict(Xt, groups=gt, offset=ot).sum(),
            "effect 0": m.predict(Xt, groups=gt, offset=ot, unseen_levels="zero").sum(),
            "D2": m.score(Xt, y.iloc[test], groups=gt, offset=ot),
        })
res = pd.DataFrame(rows).set_index("fold")
print(res.round(3).to_string())
tot = res.sum()
print(f"total: observed {tot.observed:.0f}, averaged over hospitals {tot.averaged:.1f}, at effect 0 "
      f"{tot['effect 0']:.1f}: exp(eta) at effect 0 is the median hospital's rate, below the mean")
