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

With ``--design crossed`` the model is ``y ~ x1 + ... + x10 + (1 | g) + (1 | b)``, ML,
crossed factors of 100,000 x 10,000 levels (every row draws both at random, so at 100M
rows nearly every pair of levels meets: the cross block of the statistics holds ~95M
entries), with ``y`` drawn from that model. The same measures are taken.

Usage::

    python benchmarks/scale.py --rows 100_000_000 --partition 1_000_000 --prefix 10_000_000
    python benchmarks/scale.py --rows 10_000_000 --prefix 2_000_000     # a quicker run
    python benchmarks/scale.py --design crossed --rows 10_000_000 --prefix 10_000_000

A fit too long for one run goes in two (the statistics on the cluster, then the client's
fit from them, each timed with its peak memory)::

    python benchmarks/scale.py --design crossed --rows 100_000_000 --prefix 0 --statistics-only \
        --worker-memory 10GB --save /tmp/crossed100m.pkl
    python benchmarks/scale.py --fit-saved /tmp/crossed100m.pkl

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


def make_partition(index, rows, n_groups, crossed_b=10_000, design="slope"):
    """Partition ``index``: ``rows`` rows, reproducible from the index alone. ``design``
    "slope": y from ``(1 + x1 | g)``; "crossed": y from ``(1 | g) + (1 | b)``."""
    rng = np.random.default_rng([2024, index])
    a0, a1 = group_effects(n_groups)
    g = rng.integers(0, n_groups, rows)
    X = rng.normal(size=(rows, N_FEATURES))
    beta = np.linspace(-1.0, 1.0, N_FEATURES)
    if design == "slope":
        y = 2.0 + X @ beta + a0[g] + a1[g] * X[:, 0] + rng.normal(size=rows)
        b = rng.integers(0, crossed_b, rows)
    else:
        b = rng.integers(0, crossed_b, rows)
        c = np.random.default_rng(54321).normal(0, 0.5, crossed_b)
        y = 2.0 + X @ beta + a0[g] + c[b] + rng.normal(size=rows)
    frame = pd.DataFrame(X, columns=COLUMNS)
    frame["y"] = y
    frame["g"] = g
    frame["b"] = b
    return frame


def dask_frame(n_rows, partition, n_groups, design="slope"):
    import dask.dataframe as dd

    k = int(np.ceil(n_rows / partition))
    sizes = [min(partition, n_rows - i * partition) for i in range(k)]
    meta = make_partition(0, 2, n_groups, design=design).iloc[:0]
    return dd.from_map(lambda i: make_partition(i, sizes[i], n_groups, design=design), list(range(k)), meta=meta,
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


def statistics_size(stats):
    """Bytes of the statistics' arrays (the cross blocks' data and indices included)."""
    total = stats.xy_cross.nbytes + stats.xy_sum.nbytes + stats.xy_square.nbytes
    for f in stats.factors:
        total += f.counts.nbytes + f.a_zz.nbytes + f.a_zx.nbytes + f.levels.nbytes
    for block in stats.cross.values():
        total += block.data.nbytes + block.indices.nbytes + block.indptr.nbytes
    return total


def largest_difference(a, b):
    """The largest relative difference between two statistics (levels must agree)."""
    def rel(x, y):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-300), initial=0.0))

    for f, h in zip(a.factors, b.factors):
        if not np.array_equal(f.levels, h.levels):
            raise AssertionError(f"the levels of {f.name} differ")
    out = max(rel(a.xy_cross, b.xy_cross), rel(a.xy_square, b.xy_square), rel(a.xy_sum, b.xy_sum))
    for f, h in zip(a.factors, b.factors):
        out = max(out, rel(f.counts, h.counts), rel(f.a_zz, h.a_zz), rel(f.a_zx, h.a_zx))
    for key, block in a.cross.items():
        diff = (block - b.cross[key]).tocsr()
        ref = abs(b.cross[key]).max()
        out = max(out, float(abs(diff).max()) / ref if diff.nnz else 0.0)
        if block.nnz != b.cross[key].nnz:
            raise AssertionError(f"cross block {key}: {block.nnz} entries against {b.cross[key].nnz}")
    return out


def statistics_only(args, ddf, settings, group_cols, t_pass, say, write):
    """Form and reduce the statistics on the cluster (what ``fit`` does before the search);
    with ``--prefix`` as many rows as the whole frame, compare them with the statistics
    formed in memory."""
    import dask

    from skmlm import MixedLinearRegressor
    from skmlm._dask import _chunk_statistics, dask_statistics

    est = MixedLinearRegressor(**settings)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        stats = dask_statistics(est, ddf[COLUMNS], ddf["y"], ddf[group_cols], None)
        t_stats = time.perf_counter() - t0
    blocks = ", ".join(f"{b.shape[0]:,} x {b.shape[1]:,} with {b.nnz:,} entries" for b in stats.cross.values())
    say(f"- statistics formed per partition and tree-reduced on the cluster: {t_stats:.1f} s "
        f"({t_stats / t_pass:.2f} x the numpy pass), peak memory {mem.peak / 2**30:.2f} GB; "
        f"{statistics_size(stats) / 2**20:.0f} MB of statistics (cross block {blocks})")
    if args.save:
        import pickle

        with open(args.save, "wb") as fh:
            pickle.dump(stats, fh, protocol=pickle.HIGHEST_PROTOCOL)
        say(f"- saved to {args.save}")
    write()
    if args.prefix and args.prefix >= args.rows:
        rows = pd.concat(dask.compute(*ddf.to_delayed()), ignore_index=True)
        t0 = time.perf_counter()
        ref = _chunk_statistics(est, rows[COLUMNS], rows["y"], rows[group_cols], None)
        t_mem = time.perf_counter() - t0
        del rows
        say(f"- the same statistics formed in memory from all {args.rows:,} rows ({t_mem:.1f} s): largest relative "
            f"difference {largest_difference(stats, ref):.2e} (the same levels and the same cross-block pattern)")
        write()


def evaluate(args):
    """One evaluation of the ML deviance at the start, from saved statistics: what each
    step of the search costs (the model's setup timed apart)."""
    import pickle

    from skmlm._core.lmm import LinearMixedModel

    with open(args.evaluate, "rb") as fh:
        stats = pickle.load(fh)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        model = LinearMixedModel(stats, reml=False)
        t_setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        value = model.objective(model.theta_start)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.objective(model.theta_start * 1.1)
        t_second = time.perf_counter() - t0
    text = (f"- from the statistics of {stats.n:,} rows ({args.evaluate}): model setup {t_setup:.1f} s, the deviance "
            f"at the start {t_first:.1f} s (the coupling block built on first use), at another theta {t_second:.1f} s; "
            f"peak memory {mem.peak / 2**30:.2f} GB; deviance {value:.6f}")
    print(text, flush=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(f"- command: `python benchmarks/{' '.join(['scale.py'] + sys.argv[1:])}`\n{text}\n")


def fit_saved(args):
    """The fit from saved statistics: what ``fit`` on the Dask collection does on the client
    once the statistics are reduced (the same call), timed with its peak memory. With
    ``--statistics-only --save`` before, the two phases of a fit too long for one run."""
    import pickle

    from skmlm._core.search import fit_lmm
    from skmlm._threads import single_blas_thread

    with open(args.fit_saved, "rb") as fh:
        stats = pickle.load(fh)
    with PeakMemory() as mem, single_blas_thread():  # as MixedLinearRegressor.fit
        t0 = time.perf_counter()
        model, opt, est = fit_lmm(stats, reml=False, verbose=1)
        t_fit = time.perf_counter() - t0
    sd = ", ".join(f"{f.name} {theta * np.sqrt(est['sigma2']):.6f}" for f, theta in zip(model.factors, opt.x))
    text = (f"- the fit from the reduced statistics of {stats.n:,} rows ({args.fit_saved}; ML, one BLAS thread "
            f"as in fit): {t_fit:.1f} s, peak memory {mem.peak / 2**30:.2f} GB, {opt.n_evaluations} deviance "
            f"evaluations; logLik {-0.5 * opt.fun:.6f}, converged {opt.converged}; random-effect SDs {sd}, "
            f"residual SD {np.sqrt(est['sigma2']):.6f}")
    print(text, flush=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(f"- command: `python benchmarks/{' '.join(['scale.py'] + sys.argv[1:])}`\n{text}\n")


DESIGNS = {
    "slope": ("y ~ x1..x10 + (1 + x1 | g)", dict(random_slopes=["x1"], reml=False), "g"),
    "crossed": ("y ~ x1..x10 + (1 | g) + (1 | b)", dict(reml=False), ["g", "b"]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--design", choices=sorted(DESIGNS), default="slope")
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--partition", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--prefix", type=int, default=10_000_000, help="rows of the equality check (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="3GB", help="each worker's memory limit")
    ap.add_argument("--statistics-only", action="store_true",
                    help="form and reduce the statistics only (no fit); the equality check compares them with "
                         "the statistics of the prefix's rows formed in memory")
    ap.add_argument("--save", default="", help="with --statistics-only: pickle the reduced statistics to this file")
    ap.add_argument("--evaluate", default="",
                    help="instead of a run: time one deviance evaluation (at the start) from statistics saved by "
                         "--save, with its peak memory")
    ap.add_argument("--fit-saved", default="",
                    help="instead of a run: the fit from statistics saved by --save, timed with its peak memory")
    ap.add_argument("--out", default=os.path.join(HERE, "results_scale.md"))
    args = ap.parse_args()
    if args.evaluate:
        return evaluate(args)
    if args.fit_saved:
        return fit_saved(args)

    import dask
    from dask.distributed import Client, LocalCluster

    from skmlm import MixedLinearRegressor

    formula, settings, group_cols = DESIGNS[args.design]
    levels = f"{args.groups:,} groups" if args.design == "slope" else f"{args.groups:,} x 10,000 crossed levels"
    lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M')}: {formula}, {args.rows:,} rows, {levels}, "
             f"partitions of {args.partition:,}, {args.workers} workers x 1 thread ({args.worker_memory} each)", "",
             f"- command: `python benchmarks/{' '.join(['scale.py'] + sys.argv[1:])}`"]

    def say(text):
        print(text, flush=True)
        lines.append(text)

    def write():
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        lines.clear()

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.worker_memory) as cluster, \
            Client(cluster) as client:
        ddf = dask_frame(args.rows, args.partition, args.groups, args.design)
        model = MixedLinearRegressor(**settings)
        with PeakMemory() as mem_pass:
            t0 = time.perf_counter()
            parts = ddf.to_delayed()
            reduced = dask.delayed(lambda *r: (sum(a for a, _ in r), sum(b for _, b in r)))(
                *[dask.delayed(numpy_pass)(p) for p in parts])
            reduced.compute()
            t_pass = time.perf_counter() - t0
        say(f"- one numpy pass (generate, X'X, sums): {t_pass:.1f} s, peak memory {mem_pass.peak / 2**30:.2f} GB")
        if args.statistics_only:
            return statistics_only(args, ddf, settings, group_cols, t_pass, say, write)
        with PeakMemory() as mem_fit:
            t0 = time.perf_counter()
            model.fit(ddf[COLUMNS], ddf["y"], groups=ddf[group_cols])
            t_fit = time.perf_counter() - t0
        say(f"- fit {formula}, ML: {t_fit:.1f} s ({t_fit / t_pass:.2f} x the numpy pass), "
            f"peak memory {mem_fit.peak / 2**30:.2f} GB; logLik {model.log_likelihood_:.6f}, "
            f"converged {model.converged_}, {model.n_iter_} iterations")
        import pickle

        say(f"- pickled fitted model: {len(pickle.dumps(model)) / 2**20:.1f} MB")
        write()

        if args.prefix:
            k = int(np.ceil(args.prefix / args.partition))
            if k >= ddf.npartitions:
                small = model
            else:
                prefix = ddf.partitions[:k]
                small = MixedLinearRegressor(**settings).fit(prefix[COLUMNS], prefix["y"], groups=prefix[group_cols])
            # partition by partition to the client (one partition of the whole prefix would
            # exceed a worker's memory budget)
            rows = pd.concat(dask.compute(*ddf.partitions[:k].to_delayed()), ignore_index=True)
            t0 = time.perf_counter()
            ref = MixedLinearRegressor(**settings).fit(rows[COLUMNS], rows["y"], groups=rows[group_cols])
            t_mem = time.perf_counter() - t0
            rel = float(np.max(np.abs(estimates(small) - estimates(ref)) / np.maximum(np.abs(estimates(ref)), 1e-300)))
            say(f"- equality on the first {len(rows):,} rows: |logLik difference| "
                f"{abs(small.log_likelihood_ - ref.log_likelihood_):.2e}, largest relative difference of the "
                f"estimates {rel:.2e} (in-memory fit of those rows: {t_mem:.1f} s)")
            del rows
            write()


if __name__ == "__main__":
    main()
