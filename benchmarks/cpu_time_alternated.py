"""CPU time of skmlm and a peer (mixedlm or GPBoost) on the same problems, alternated in one process.

    OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/cpu_time_alternated.py two_slopes_7k_1700x60,nested_30k_130x2400 9 [--wall]
    OPENBLAS_NUM_THREADS=1 python benchmarks/cpu_time_alternated.py cbpp_trials 301 --peer gpboost --wall

``--wall``: wall-clock time (``time.perf_counter``) instead, still alternated fit by fit, so
that both libraries see the same states of a quiet machine (``run.py`` times one library's
fits, then the next's). ``--peer``: ``mixedlm`` (default, ``lmer``/``glmer`` on the problem's
formula) or ``gpboost`` (``bench_gpboost.build``: its inputs prepared outside the timed fit,
as in ``run.py``). Any problem of ``problems.py`` (issue 16's shapes, the GLMM families, the
default set).

``time.process_time()`` around each fit (after one untimed fit of each), the two
libraries alternated, medians printed: on a machine loaded by other work the process
time of a fit swings far less than its wall time (it still grows with cache contention).
"""

import argparse
import statistics
import time

import problems
import bench_skmlm


def peer_fit(peer, p):
    """The peer's ``fit_once`` for problem ``p``."""
    if peer == "gpboost":
        import bench_gpboost

        return bench_gpboost.build(p)
    import mixedlm as mlm

    df, formula = p.data, p.lme4_formula()
    if p.family == "gaussian":
        return lambda: mlm.lmer(formula, df, REML=p.reml)
    raise SystemExit(f"{p.name}: the mixedlm peer here fits gaussian problems only")


def main(names, reps, peer="mixedlm", clock=time.process_time, label="CPU time"):
    by_name = {q.name: q for q in problems.all_problems() + problems.family_problems() + problems.shape_problems()}
    for name in names.split(","):
        p = by_name[name]
        fits = {"skmlm": bench_skmlm.build(p), peer: peer_fit(peer, p)}
        for fit in fits.values():
            fit()
        times = {lib: [] for lib in fits}
        for _ in range(reps):
            for lib, fit in fits.items():
                t = clock()
                fit()
                times[lib].append(clock() - t)
        a, b = statistics.median(times["skmlm"]), statistics.median(times[peer])
        print(f"{name}: {label}, median of {reps}: skmlm {a * 1e3:.2f} ms, {peer} {b * 1e3:.2f} ms, "
              f"{peer} / skmlm {b / a:.2f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("problems")
    ap.add_argument("reps", nargs="?", type=int, default=7)
    ap.add_argument("--peer", default="mixedlm", choices=["mixedlm", "gpboost"])
    ap.add_argument("--wall", action="store_true")
    args = ap.parse_args()
    clock, label = (time.perf_counter, "wall time") if args.wall else (time.process_time, "CPU time")
    main(args.problems, args.reps, args.peer, clock, label)
