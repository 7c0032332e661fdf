"""The linear model's parametric bootstrap: building its response simulator and drawing
one replicate's cross-products, by the blocked simulator, side by side with the dense one
of an earlier revision (a square root of the whole ``[X Z]'W[X Z]``, refused past order
6000), and whole bootstraps of large models.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bootstrap_simulator.py [--against REV]``
(``REV``: a git revision whose ``skmlm/_core/bootstrap.py`` has the dense simulator;
default ``c99906f``).
"""

import argparse
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skmlm import MixedLinearRegressor
from skmlm._core.bootstrap import ResponseSimulator

# (levels of the first factor, levels of a crossed second factor, rows per level, random slope)
CASES = [(1000, 0, 4, True), (2000, 200, 3, False), (2500, 0, 4, True),
         (10000, 0, 2, False), (10000, 0, 3, True), (10000, 500, 3, True)]
BOOTSTRAPS = [(10000, 0, 2, False), (10000, 0, 3, True), (10000, 500, 3, True)]


def dense_simulator(revision):
    """The ``ResponseSimulator`` class of ``revision`` (None if it cannot be read)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["git", "-C", str(root), "show", f"{revision}:skmlm/_core/bootstrap.py"],
                          capture_output=True, text=True)
    if proc.returncode:
        return None
    space = {}
    exec(compile(proc.stdout.replace("from .", "from skmlm._core."), "dense_bootstrap", "exec"), space)
    return space["ResponseSimulator"]


def fitted(m1, m2, per, slope, seed=0):
    rng = np.random.default_rng(seed)
    n = m1 * per
    g1 = np.repeat(np.arange(m1), per)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=m1)[g1] + rng.normal(size=n)
    if slope:
        y += rng.normal(size=m1)[g1] * x
    groups = {"a": g1}
    if m2:
        groups["b"] = rng.integers(0, m2, n)
    kw = {"random_slopes": {"a": ["x"]}} if slope else {}
    return MixedLinearRegressor(**kw).fit(pd.DataFrame({"x": x}), y, groups=pd.DataFrame(groups))


def simulator_times(cls, m, draws=20):
    model = m._core_model()
    theta, beta, sigma = m.theta_, m._beta(), m._sigma()
    t0 = time.perf_counter()
    try:
        sim = cls(model)
    except ValueError:
        return "refused"
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    for _ in range(draws):
        sim.draw(theta, beta, sigma, rng)
    t2 = time.perf_counter()
    return f"build {t1 - t0:.3f} s, draw {(t2 - t1) / draws * 1e3:.2f} ms"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default="c99906f")
    args = parser.parse_args()
    dense = dense_simulator(args.against)
    for case in CASES:
        m = fitted(*case)
        row = [f"levels {case[0]}, crossed {case[1]}, q1 {2 if case[3] else 1}"]
        if dense is not None:
            row.append("dense: " + simulator_times(dense, m))
        row.append("blocked: " + simulator_times(ResponseSimulator, m))
        print(" | ".join(row), flush=True)
    for case in BOOTSTRAPS:
        m = fitted(*case)
        t0 = time.perf_counter()
        boot = m.parametric_bootstrap(5, random_state=0, progress=False)
        print(f"levels {case[0]}, crossed {case[1]}, q1 {2 if case[3] else 1}: parametric_bootstrap(5) "
              f"{time.perf_counter() - t0:.2f} s, all converged {bool(boot.attrs['converged'].all())}", flush=True)


if __name__ == "__main__":
    main()
