"""Fit random designs and compare with a brute-force multi-start search on the same objective.

Each design draws the number of rows, one or two grouping factors (the second crossed
with the first or nested in it), a random slope or not, ML or REML, correlated or diagonal terms, variances from 0 up, and a predictor far
from 0 or not. skmlm's deviance must not exceed the best of six L-BFGS-B + Nelder-Mead
searches from random starts by more than 1e-6.

Usage: python tools/check_optimum.py FIRST_SEED LAST_SEED   (prints the failures and a count)
"""

import sys
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from skmlm import MixedLinearRegressor
from skmlm._core.lmm import LinearMixedModel


def random_design(seed):
    """(X, y, groups, estimator parameters) of one random design."""
    r = np.random.default_rng(seed)
    n = int(r.choice([60, 300, 2000]))
    slopes = bool(r.random() < 0.5)
    x = r.normal(r.choice([0, 5, 20]), r.choice([0.5, 3]), n)
    y = 1 + 0.3 * x + r.normal(size=n) * r.choice([0.5, 2])
    groups = {}
    for j in range(int(r.choice([1, 1, 2]))):
        m = int(r.choice([3, 8, 30, 100]))
        g = r.integers(0, m, n)
        groups[f"g{j}"] = g
        y += r.normal(size=m)[g] * r.choice([0.0, 0.05, 0.5, 2.0])
        if slopes and j == 0:
            y += r.normal(size=m)[g] * r.choice([0.0, 0.02, 0.3]) * x
    nest = np.random.default_rng(seed + 20_000)  # its own stream: the designs above stay as they were
    nested = len(groups) == 2 and nest.random() < 0.5
    if nested:  # g1 nested in g0 (pastes: cask within batch)
        k = int(nest.choice([2, 3, 6]))
        groups["g1"] = groups["g0"] * k + nest.integers(0, k, n)
        y += nest.normal(size=groups["g1"].max() + 1)[groups["g1"]] * nest.choice([0.0, 0.3, 1.5])
    slope_factors = ["g0", "g1"] if nested and nest.random() < 0.5 else ["g0"]
    params = {
        "random_slopes": {g: ["x"] for g in slope_factors} if slopes else None,
        "reml": bool(r.random() < 0.5),
        "covariance": "diagonal" if r.random() < 0.25 else "unstructured",
    }
    return pd.DataFrame({"x": x}), y, pd.DataFrame(groups), params


def brute_force_deviance(model, seed, starts=6):
    """The lowest deviance of several bounded searches from random starts."""
    r = np.random.default_rng(seed + 10_000)
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in model.theta_lower]
    best = np.inf
    for _ in range(starts):
        x0 = np.abs(r.normal(size=len(model.theta_start))) * r.choice([0.1, 1, 3])
        res = minimize(model.objective, x0, method="L-BFGS-B", bounds=bounds)
        res2 = minimize(model.objective, res.x, method="Nelder-Mead",
                        options={"xatol": 1e-9, "fatol": 1e-11, "maxfev": 4000})
        inside = np.all(res2.x >= model.theta_lower - 1e-12)
        best = min(best, res.fun, res2.fun if inside else np.inf)
    return best


def check(seed):
    """``(gap, estimator)``: skmlm's deviance minus the brute-force best, or None if skipped."""
    X, y, groups, params = random_design(seed)
    if groups.nunique().min() < 2:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MixedLinearRegressor(**params).fit(X, y, groups=groups)
    core = LinearMixedModel(est.statistics_, params["reml"])  # the fit's own statistics
    return est.deviance_ - brute_force_deviance(core, seed), est


if __name__ == "__main__":
    first, last = int(sys.argv[1]), int(sys.argv[2])
    worse = 0
    for seed in range(first, last):
        gap, est = check(seed)
        if gap is not None and gap > 1e-6:
            worse += 1
            print(f"seed {seed}: deviance {gap:.2e} above the brute-force best (converged_={est.converged_})")
    print(f"{worse} of {last - first} designs worse than the brute-force search")
