"""How many times a skmlm fit evaluates its objective, problem by problem.

Prints ``len(optimizer_log_)`` (every evaluation of the deviance the search logged;
analytic gradients are not logged) and ``n_iter_`` for each problem of ``problems.py``
and the crossed binomial case of ``bench_logistic.py``. It uses only public attributes,
so it runs on older checkouts too (``git worktree add /tmp/old REV`` and run it there
with ``PYTHONPATH=/tmp/old``) to compare the searches of two versions.

Run: ``python benchmarks/evaluations.py [--large]``
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import problems as P  # noqa: E402
from bench_skmlm import build  # noqa: E402


def crossed_binomial():
    from bench_logistic import simulated_crossed

    from skmlm import MixedLogisticClassifier

    df = simulated_crossed()
    return MixedLogisticClassifier(random_slopes={"g_a": ["x"], "g_b": []}).fit(
        df[["x", "z"]], df["y"], groups=df[["g_a", "g_b"]]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also the 1M-row problem")
    args = parser.parse_args()
    fits = [(p.name, build(p)) for p in P.get_problems(None, large=args.large)]
    fits.append(("crossed_slope_6000 (binomial)", crossed_binomial))
    print(f"{'problem':32s} {'evaluations':>11s} {'n_iter_':>8s} {'logLik':>18s}")
    for name, fit in fits:
        m = fit()
        print(f"{name:32s} {len(m.optimizer_log_):11d} {m.n_iter_:8d} {m.log_likelihood_:18.6f}")


if __name__ == "__main__":
    main()
