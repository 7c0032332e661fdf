"""Micro-timings behind three design choices of the numeric core (median of repeats).

1. scipy's L-BFGS-B against skmlm's ``quasi_newton`` on a 3-parameter quadratic, whose
   evaluations cost next to nothing: what is left is each optimiser's own bookkeeping.
2. ``np.linalg.cholesky`` against ``cholesky_lower_overwrite`` (LAPACK's potrf in place
   on the transposed lower triangle) at the order of the InstEval dense block, 1,142.
3. scikit-learn's ``_check_feature_names`` against skmlm's direct recording of string
   column names, on a one-column DataFrame.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/micro.py``
"""

import time

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.utils.validation import _check_feature_names

from skmlm import MixedLinearRegressor
from skmlm._core.dense_gradient import cholesky_lower_overwrite
from skmlm._core.optimize import quasi_newton
from skmlm._input import _string_column_names


def median_seconds(fun, setup=lambda: None, repeats=200):
    times = []
    for _ in range(repeats):
        arg = setup()
        t0 = time.perf_counter()
        fun(arg)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def optimisers():
    scale = np.array([1.0, 10.0, 100.0])
    calls = []

    def fg(x):
        calls.append(1)
        d = x - 1.0
        return float(d @ (scale * d)), 2.0 * scale * d

    x0 = np.zeros(3)
    calls.clear()
    t_lbfgs = median_seconds(lambda _: minimize(fg, x0, jac=True, method="L-BFGS-B", options={"maxcor": 20}))
    n_lbfgs = len(calls) / 200
    calls.clear()
    t_qn = median_seconds(lambda _: quasi_newton(fg, x0, 1000))
    n_qn = len(calls) / 200
    print(f"L-BFGS-B:     {1e6 * t_lbfgs:7.1f} us for {n_lbfgs:.0f} evaluations ({1e6 * t_lbfgs / n_lbfgs:5.1f} us each)")
    print(f"quasi_newton: {1e6 * t_qn:7.1f} us for {n_qn:.0f} evaluations ({1e6 * t_qn / n_qn:5.1f} us each)")


def cholesky(n=1142):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, n))
    a = a @ a.T + n * np.eye(n)
    t_np = median_seconds(np.linalg.cholesky, setup=a.copy, repeats=15)
    t_own = median_seconds(cholesky_lower_overwrite, setup=a.copy, repeats=15)
    print(f"Cholesky, order {n}: np.linalg.cholesky {1e3 * t_np:6.1f} ms, in place {1e3 * t_own:6.1f} ms")


def feature_names():
    X = pd.DataFrame({"Days": np.arange(180.0)})
    est = MixedLinearRegressor()
    t_sk = median_seconds(lambda _: _check_feature_names(est, X, reset=True), repeats=2000)
    t_own = median_seconds(lambda _: _string_column_names(est, X), repeats=2000)
    print(f"feature names: scikit-learn {1e6 * t_sk:6.1f} us, direct {1e6 * t_own:6.1f} us")


if __name__ == "__main__":
    optimisers()
    cholesky()
    feature_names()
