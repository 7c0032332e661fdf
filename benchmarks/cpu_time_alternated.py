"""CPU time of skmlm and mixedlm fits of issue 16's shapes, alternated in one process.

    OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/cpu_time_alternated.py two_slopes_7k_1700x60,nested_30k_130x2400 9 [--wall]

``--wall``: wall-clock time (``time.perf_counter``) instead, still alternated fit by fit, so
that both libraries see the same states of a quiet machine (``run.py`` times one library's
fits, then the next's).

``time.process_time()`` around each fit (after one untimed fit of each), the two
libraries alternated, medians printed: on a machine loaded by other work the process
time of a fit swings far less than its wall time (it still grows with cache contention).
"""

import statistics
import sys
import time

import problems
import bench_skmlm
import mixedlm as mlm


def main(names, reps, clock=time.process_time, label="CPU time"):
    for name in names.split(","):
        p = {q.name: q for q in problems.shape_problems()}[name]
        df = p.data
        fit_skmlm = bench_skmlm.build(p)
        formula = p.lme4_formula()

        def fit_mixedlm():
            return mlm.lmer(formula, df, REML=p.reml)

        fit_skmlm(), fit_mixedlm()
        times = {"skmlm": [], "mixedlm": []}
        for _ in range(reps):
            for lib, fit in (("skmlm", fit_skmlm), ("mixedlm", fit_mixedlm)):
                t = clock()
                fit()
                times[lib].append(clock() - t)
        a, b = statistics.median(times["skmlm"]), statistics.median(times["mixedlm"])
        print(f"{name}: {label}, median of {reps}: skmlm {a * 1e3:.1f} ms, mixedlm {b * 1e3:.1f} ms, "
              f"mixedlm / skmlm {b / a:.2f}", flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--wall"]
    wall = "--wall" in sys.argv[1:]
    main(args[0], int(args[1]) if len(args) > 1 else 7,
         *((time.perf_counter, "wall time") if wall else (time.process_time, "CPU time")))
