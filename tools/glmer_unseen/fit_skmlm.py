"""skmlm on the designs of make_data.py: logLik, fixed effects, SEs, theta, evaluations, converged_."""

import pandas as pd

from skmlm import MixedLogisticClassifier
for k, slope in enumerate([False, False, True, False]):
    d = pd.read_csv(f"d{k}.csv")
    kw = dict(random_slopes=["x1"], random_intercept=False) if slope else {}
    m = MixedLogisticClassifier(**kw).fit(d[["x1", "x2"]], d.y, groups=d.g, sample_weight=d.w)
    fe = m.fixed_effects_
    print(f"d{k}", f"{m.log_likelihood_:.8f}", " ".join(f"{v:.8f}" for v in fe["Estimate"]), " ".join(f"{v:.6f}" for v in fe["Std. Error"]), " ".join(f"{v:.6f}" for v in m.theta_), len(m.optimizer_log_), m.converged_)
d = pd.read_csv("d0.csv")
m = MixedLogisticClassifier(n_quadrature_points=9).fit(d[["x1", "x2"]], d.y, groups=d.g, sample_weight=d.w)
fe = m.fixed_effects_
print("d0_agq9", f"{m.log_likelihood_:.8f}", " ".join(f"{v:.8f}" for v in fe["Estimate"]), " ".join(f"{v:.6f}" for v in fe["Std. Error"]), " ".join(f"{v:.6f}" for v in m.theta_), len(m.optimizer_log_), m.converged_)
d = pd.read_csv("d4.csv")
m = MixedLogisticClassifier(random_slopes={"g": ["x1"], "h": []}).fit(d[["x1", "x2"]], d.y, groups=d[["g", "h"]])
fe = m.fixed_effects_
print("d4", f"{m.log_likelihood_:.8f}", " ".join(f"{v:.8f}" for v in fe["Estimate"]), " ".join(f"{v:.6f}" for v in fe["Std. Error"]), " ".join(f"{v:.6f}" for v in m.theta_), len(m.optimizer_log_), m.converged_)
