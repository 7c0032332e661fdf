"""CPU and wall time of the 1M-row logistic random-slope fit (``logit_slope_1m_10k``)
beside the floor (one pass forming the statistics of the same rows), in one process.

CPU time (``time.process_time``) says more than wall time on a shared machine; run it
with each checkout to compare two versions of skmlm on the same data::

    PYTHONPATH=<checkout> OPENBLAS_NUM_THREADS=1 python benchmarks/logit_slope_cpu.py
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from problems import simulate_logit_slope_shape  # noqa: E402

import skmlm  # noqa: E402

df = simulate_logit_slope_shape(1_000_000, 10_000, 1608)
X, y, g = df[["x1", "x2"]], df["y"], df["g"]
linear = skmlm.MixedLinearRegressor(reml=False, random_slopes=["x1"])


def floor():
    linear._statistics_of(linear._prepare_fit(X, y, g, None))


def fit():
    return skmlm.MixedLogisticClassifier(random_slopes=["x1"]).fit(X, y, groups=g)


def timed(f):
    c, t = time.process_time(), time.perf_counter()
    r = f()
    return time.perf_counter() - t, time.process_time() - c, r


passes = [timed(floor)[:2] for _ in range(5)]
fw, fc = np.median([p[0] for p in passes]), np.median([p[1] for p in passes])
w, c, est = timed(fit)
print(f"skmlm from {os.path.dirname(skmlm.__file__)}: floor wall {fw:.3f} s cpu {fc:.3f} s | fit wall {w:.2f} s "
      f"cpu {c:.2f} s | fit/floor wall {w / fw:.0f}x cpu {c / fc:.0f}x | logLik {est.log_likelihood_:.6f} "
      f"evaluations {len(est.optimizer_log_)} converged {est.converged_} | load {os.getloadavg()[0]:.1f}")
