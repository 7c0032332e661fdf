"""Contagious bovine pleuropneumonia: a logistic mixed model on lme4's cbpp data.

One row per animal (lme4's cbpp expanded to binary outcomes): was it a new case in the
period? Herds differ in their risk, so the herd gets a random intercept; the period is a
fixed effect. The same model as ``glmer(y ~ period + (1 | herd), family = binomial)``,
first by the Laplace approximation, then by 9-point adaptive Gauss-Hermite quadrature.

Run: ``python examples/logistic_cbpp.py``
"""

from skmlm import MixedLogisticClassifier
from skmlm.datasets import load_cbpp

df = load_cbpp()
X = df["period"].str.get_dummies().drop(columns="1").add_prefix("period").astype(float)
y, herd = df["y"], df["herd"]

laplace = MixedLogisticClassifier().fit(X, y, groups=herd)
print(laplace.summary())

agq = MixedLogisticClassifier(n_quadrature_points=9).fit(X, y, groups=herd)
print(f"\nlogLik  Laplace {laplace.log_likelihood_:.4f}   AGQ(9) {agq.log_likelihood_:.4f}")
print(f"herd variance  Laplace {laplace.random_covariance_['herd'].iloc[0, 0]:.4f}   "
      f"AGQ(9) {agq.random_covariance_['herd'].iloc[0, 0]:.4f}")

# the five herds with the highest risk (conditional modes, log-odds scale)
print("\nHerd effects (log-odds), highest first:")
print(laplace.random_effects_["herd"].sort_values("(Intercept)", ascending=False).head().round(3))

# probability of a new case in period 1: for herd 14 (known), and for a new herd, whose
# probability is averaged over the fitted herd distribution (or taken at effect 0)
x1 = X.iloc[[0]]
print(f"\nP(new case, period 1)  herd 14: {laplace.predict_proba(x1, groups=['14'])[0, 1]:.3f}   "
      f"new herd (population average): {laplace.predict_proba(x1, groups=['new'])[0, 1]:.3f}   "
      f"new herd at effect 0: {laplace.predict_proba(x1, groups=['new'], unseen_levels='zero')[0, 1]:.3f}")
