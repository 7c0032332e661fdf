"""CPU time of skmlm and mixedlm fits of issue 16's shapes, alternated in one process.

    OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/cpu_time_alternated.py two_slopes_7k_1700x60,nested_30k_130x2400 9

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


def main(names, reps):
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
                t = time.process_time()
                fit()
                times[lib].append(time.process_time() - t)
        a, b = statistics.median(times["skmlm"]), statistics.median(times["mixedlm"])
        print(f"{name}: CPU time, median of {reps}: skmlm {a * 1e3:.1f} ms, mixedlm {b * 1e3:.1f} ms, "
              f"mixedlm / skmlm {b / a:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 7)
