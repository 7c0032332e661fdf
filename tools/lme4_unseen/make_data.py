"""Simulate three designs never seen by the tests: crossed factors, a correlated random slope.

Usage: python make_data.py   (writes a.csv, b.csv, d.csv here; then Rscript fit_lme4.R
and python fit_skmlm.py, and compare the printed logLik, SEs and variances)
"""

import numpy as np
import pandas as pd


def simulate(n, m1, m2, seed):
    r = np.random.default_rng(seed)
    g1, g2 = r.integers(0, m1, n), r.integers(0, m2, n)
    x1, x2 = r.normal(2, 1.5, n), r.uniform(size=n)
    u0, u1, v = r.normal(0, 1.0, m1), r.normal(0, 0.4, m1), r.normal(0, 0.7, m2)
    y = 1 + 0.5 * x1 - 2 * x2 + u0[g1] + u1[g1] * x1 + v[g2] + r.normal(0, 1.2, n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g1": [f"a{i}" for i in g1],
                         "g2": [f"b{i}" for i in g2], "w": r.uniform(0.5, 2, n)})


if __name__ == "__main__":
    simulate(2000, 50, 30, 1).to_csv("a.csv", index=False)
    simulate(6000, 400, 200, 2).to_csv("b.csv", index=False)
    simulate(20000, 2000, 300, 3).to_csv("d.csv", index=False)
