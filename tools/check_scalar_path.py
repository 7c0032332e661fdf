"""Fit random binary designs with one scalar random term by both logistic paths.

The level-by-level path (``skmlm/_core/scalar_glmm.py``) against the general one
(``GeneralizedMixedModel(..., scalar_path=False)``): Laplace and adaptive quadrature, an
intercept or a slope alone, prior weights, single-row levels, effects up to SD 5 and
predictors up to 10 times wider (near separation). A design counts as worse when the
scalar path's deviance exceeds the general path's by more than 1e-6, does not converge,
or raises.

Usage: python tools/check_scalar_path.py FIRST_SEED LAST_SEED   (prints the failures,
a count and the evaluations each path took in all)
"""

import sys
import warnings

import numpy as np
from scipy.special import expit

from skmlm._core.design import RandomFactor
from skmlm._core.glmm import GeneralizedMixedModel, fit_glmm


def random_design(seed):
    """``(factors, X, y, w, n_agq)`` of one random design, or None when y is constant."""
    r = np.random.default_rng(seed)
    n, m = int(r.choice([30, 100, 500, 2000])), int(r.choice([3, 5, 20, 60]))
    m = min(m, n)
    x = r.normal(size=n) * r.choice([1, 10])
    codes = r.integers(0, m, n)
    codes[:m] = np.arange(m)
    slope = bool(r.random() < 0.3)
    effect = r.choice([0.0, 0.3, 1.0, 2.0, 5.0]) * r.normal(size=m)[codes]
    y = (r.random(n) < expit(r.choice([-3.0, 0.0, 3.0]) * 0.5 + 0.5 * x + effect * (x if slope else 1.0))).astype(float)
    if y.min() == y.max():
        return None
    X = np.column_stack([np.ones(n), x])
    w = r.uniform(0.5, 2.0, n) if r.random() < 0.3 else np.ones(n)
    z, term = (x[:, None], "x") if slope else (np.ones((n, 1)), "(Intercept)")
    factors = [RandomFactor("g", codes, np.arange(m), z, [term])]
    return factors, X, y, w, int(r.choice([1, 1, 5, 9]))


def check(seed):
    """``(gap, converged, evaluations scalar, evaluations general)``, or None if skipped."""
    design = random_design(seed)
    if design is None:
        return None
    factors, X, y, w, n_agq = design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fit_glmm(GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq))
        general = fit_glmm(GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq, scalar_path=False))
    return fast.fun - general.fun, fast.converged, len(fast.log), len(general.log)


if __name__ == "__main__":
    first, last = int(sys.argv[1]), int(sys.argv[2])
    worse = checked = evals_fast = evals_general = 0
    for seed in range(first, last):
        try:
            result = check(seed)
        except Exception as exc:  # noqa: BLE001 - a crash is a failure to report
            worse += 1
            print(f"seed {seed}: raised {type(exc).__name__}: {exc}")
            continue
        if result is None:
            continue
        gap, converged, n_fast, n_general = result
        checked += 1
        evals_fast += n_fast
        evals_general += n_general
        if not (gap <= 1e-6 and converged):
            worse += 1
            print(f"seed {seed}: deviance {gap:.2e} above the general path's (converged={converged})")
    print(f"{worse} of {checked} designs worse than the general path; "
          f"evaluations {evals_fast} (scalar path) against {evals_general} (general path)")
