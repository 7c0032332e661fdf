"""Simulate four binary designs with one scalar random term, never seen by the tests.

Usage: python make_data.py   (writes d0.csv .. d3.csv here; then Rscript fit_lme4.R and
python fit_skmlm.py, and compare the printed logLik, fixed effects, SEs and theta)

d0: random intercept, 3,000 rows, 60 levels; d1: the same with prior weights 1-3
(rows counting as 1-3 trials); d2: a random slope without intercept; d3: 400 rows,
80 levels, little spread. fit_lme4.R and fit_skmlm.py also fit d0 with nAGQ = 9, and
d4: two crossed factors, a correlated random slope on the first (the general path).
"""

import numpy as np, pandas as pd
from scipy.special import expit
for k, (n, m, sd, slope, wts) in enumerate([(3000, 60, 0.8, False, False), (1200, 25, 1.5, False, True), (2500, 40, 0.6, True, False), (400, 80, 0.3, False, False)]):
    r = np.random.default_rng(100 + k)
    g = r.integers(0, m, n); x1 = r.normal(size=n); x2 = r.uniform(size=n)
    b = r.normal(0, sd, m)
    eta = -0.5 + 0.8 * x1 - 1.2 * x2 + (b[g] * x1 if slope else b[g])
    y = (r.random(n) < expit(eta)).astype(int)
    w = r.integers(1, 4, n) if wts else np.ones(n, int)
    pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": [f"L{i}" for i in g], "w": w}).to_csv(f"d{k}.csv", index=False)

r = np.random.default_rng(104)
n, m1, m2 = 3000, 60, 25
g1, g2 = r.integers(0, m1, n), r.integers(0, m2, n)
x1, x2 = r.normal(size=n), r.uniform(size=n)
b = r.multivariate_normal([0, 0], [[0.6, 0.1], [0.1, 0.15]], m1)
eta = -0.4 + 0.7 * x1 - 1.0 * x2 + b[g1, 0] + b[g1, 1] * x1 + r.normal(0, 0.5, m2)[g2]
y = (r.random(n) < expit(eta)).astype(int)
pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": [f"L{i}" for i in g1], "h": [f"H{i}" for i in g2], "w": 1}).to_csv("d4.csv", index=False)
