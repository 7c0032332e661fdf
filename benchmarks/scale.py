"""A linear mixed model past memory: 100M rows on a Dask LocalCluster.

``y ~ x1 + ... + x10 + (1 + x1 | g)``, 100,000 groups, ML. The data are a Dask DataFrame
generated partition by partition on the workers (never whole anywhere), and the fit
forms statistics per partition, reduces them on the cluster and fits on the client.

Measured in one run, side by side:

* ``pass``: one numpy pass over the same partitions (generate each, form ``X'X`` and the
  column sums, reduce): what touching the data once costs on this machine;
* ``fit``: ``MixedLinearRegressor(...).fit`` on the Dask DataFrame; the ratio fit / pass;
* peak memory: the largest sum of the resident memory of this process and the workers,
  sampled every 0.1 s;
* equality: the Dask fit on the first ``--prefix`` rows against the in-memory fit of
  the same rows (log-likelihood and estimates).

Optionally (``--crossed``) the crossed model ``(1 | a) + (1 | b)`` with 100,000 x 10,000
levels on the same rows: time and memory.

Usage::

    python benchmarks/scale.py --rows 100_000_000 --partition 1_000_000 --prefix 10_000_000
    python benchmarks/scale.py --rows 10_000_000 --prefix 2_000_000     # a quicker run

Results are printed and appended to ``benchmarks/results_scale.md``.
"""

import argparse
import os
import sys
import threading
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

N_FEATURES = 10
COLUMNS = [f"x{k + 1}" for k in range(N_FEATURES)]


def group_effects(n_groups, seed=12345):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.0, n_groups), rng.normal(0, 0.3, n_groups)


def make_partition(index, rows, n_groups, crossed_b=10_000):
    """Partition ``index``: ``rows`` rows, reproducible from the index alone."""
    rng = np.random.default_rng([2024, index])
    a0, a1 = group_effects(n_groups)
    g = rng.integers(0, n_groups, rows)
    X = rng.normal(size=(rows, N_FEATURES))
    beta = np.linspace(-1.0, 1.0, N_FEATURES)
    y = 2.0 + X @ beta + a0[g] + a1[g] * X[:, 0] + rng.normal(size=rows)
    frame = pd.DataFrame(X, columns=COLUMNS)
    frame["y"] = y
    frame["g"] = g
    frame["b"] = rng.integers(0, crossed_b, rows)
    return frame


def dask_frame(n_rows, partition, n_groups):
    import dask.dataframe as dd

    k = int(np.ceil(n_rows / partition))
    sizes = [min(partition, n_rows - i * partition) for i in range(k)]
    meta = make_partition(0, 2, n_groups).iloc[:0]
    return dd.from_map(lambda i: make_partition(i, sizes[i], n_groups), list(range(k)), meta=meta,
                       enforce_metadata=False)


def numpy_pass(part):
    X = part[COLUMNS + ["y"]].to_numpy()
    return X.T @ X, X.sum(axis=0)


class PeakMemory:
    """Largest total resident memory of this process and its children (the workers)."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self):
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # a worker that just ended
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(0.1)

    def __enter__(self):
        self.peak = self._total()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def estimates(m):
    return np.concatenate([[m.intercept_], m.coef_, m.theta_, [m.residual_variance_]])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--partition", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--prefix", type=int, default=10_000_000, help="rows of the equality check (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--crossed", action="store_true", help="also (1 | a) + (1 | b), 100k x 10k levels")
    ap.add_argument("--out", default=os.path.join(HERE, "results_scale.md"))
    args = ap.parse_args()

    import dask
    from dask.distributed import Client, LocalCluster

    from skmlm import MixedLinearRegressor

    lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M')}: {args.rows:,} rows, {args.groups:,} groups, "
             f"partitions of {args.partition:,}, {args.workers} workers x 1 thread", ""]

    def say(text):
        print(text, flush=True)
        lines.append(text)

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit="3GB") as cluster, \
            Client(cluster) as client:
        say(f"- dashboard: {client.dashboard_link}")
        ddf = dask_frame(args.rows, args.partition, args.groups)
        model = MixedLinearRegressor(random_slopes=["x1"], reml=False)
        with PeakMemory() as mem_pass:
            t0 = time.perf_counter()
            parts = ddf.to_delayed()
            reduced = dask.delayed(lambda *r: (sum(a for a, _ in r), sum(b for _, b in r)))(
                *[dask.delayed(numpy_pass)(p) for p in parts])
            reduced.compute()
            t_pass = time.perf_counter() - t0
        say(f"- one numpy pass (generate, X'X, sums): {t_pass:.1f} s, peak memory {mem_pass.peak / 2**30:.2f} GB")
        with PeakMemory() as mem_fit:
            t0 = time.perf_counter()
            model.fit(ddf[COLUMNS], ddf["y"], groups=ddf["g"])
            t_fit = time.perf_counter() - t0
        say(f"- fit y ~ x1..x10 + (1 + x1 | g), ML: {t_fit:.1f} s ({t_fit / t_pass:.2f} x the numpy pass), "
            f"peak memory {mem_fit.peak / 2**30:.2f} GB; logLik {model.log_likelihood_:.6f}, "
            f"converged {model.converged_}, {model.n_iter_} iterations")
        import pickle

        say(f"- pickled fitted model: {len(pickle.dumps(model)) / 2**20:.1f} MB")

        if args.prefix:
            k = int(np.ceil(args.prefix / args.partition))
            prefix = ddf.partitions[:k]
            small = MixedLinearRegressor(random_slopes=["x1"], reml=False).fit(prefix[COLUMNS], prefix["y"],
                                                                               groups=prefix["g"])
            # partition by partition to the client (one partition of the whole prefix would
            # exceed a worker's memory budget)
            rows = pd.concat(dask.compute(*prefix.to_delayed()), ignore_index=True)
            t0 = time.perf_counter()
            ref = MixedLinearRegressor(random_slopes=["x1"], reml=False).fit(rows[COLUMNS], rows["y"], groups=rows["g"])
            t_mem = time.perf_counter() - t0
            rel = float(np.max(np.abs(estimates(small) - estimates(ref)) / np.maximum(np.abs(estimates(ref)), 1e-300)))
            say(f"- equality on the first {len(rows):,} rows: |logLik difference| "
                f"{abs(small.log_likelihood_ - ref.log_likelihood_):.2e}, largest relative difference of the "
                f"estimates {rel:.2e} (in-memory fit of those rows: {t_mem:.1f} s)")
            del rows

        if args.crossed:
            crossed = MixedLinearRegressor(reml=False)
            with PeakMemory() as mem_x:
                t0 = time.perf_counter()
                try:
                    crossed.fit(ddf[COLUMNS], ddf["y"], groups=ddf[["g", "b"]])
                    outcome = f"logLik {crossed.log_likelihood_:.6f}, converged {crossed.converged_}"
                except Exception as err:  # report what happened
                    outcome = f"failed: {type(err).__name__}: {str(err)[:200]}"
                t_x = time.perf_counter() - t0
            say(f"- crossed (1 | g) + (1 | b), {args.groups:,} x 10,000 levels: {t_x:.1f} s, peak memory "
                f"{mem_x.peak / 2**30:.2f} GB; {outcome}")

    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
