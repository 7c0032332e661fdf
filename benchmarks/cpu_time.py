"""CPU time of one fit (``time.process_time``), for single-threaded comparisons on a
loaded machine, where wall-clock time mostly measures the wait for a core.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/cpu_time.py PROBLEM skmlm|gpboost|gpboost_accurate

skmlm: the fit of ``bench_skmlm.build`` (its number of evaluations is the length of
``optimizer_log_``). gpboost: ``GPModel(group_data=..., likelihood="gaussian")`` with
its defaults (for several grouping factors an iterative method: the logLik it reports
is a stochastic estimate, see ``bench_gpboost.py``), one thread; ``gpboost_accurate``
with the settings of ``bench_gpboost_accurate.py``. Prints CPU and wall
seconds, the logLik and the peak RSS of the process. Run it with the BLAS and OpenMP
threads set to 1 (as above): the CPU time of several threads adds up.
"""

import resource
import sys
import time

import numpy as np

from problems import get_problems


def main(name, library):
    problem = get_problems([name])[0]
    df = problem.data
    if library == "skmlm":
        import bench_skmlm

        fit_once = bench_skmlm.build(problem)
    elif library in ("gpboost", "gpboost_accurate"):
        import gpboost as gpb

        from bench_gpboost_accurate import OPTIM_PARAMS

        y = df[problem.y].to_numpy(dtype=float)
        X = np.column_stack([np.ones(len(df))] + [df[c].to_numpy(dtype=float) for c in problem.fixed])

        def fit_once():
            m = gpb.GPModel(group_data=df[problem.group_columns].to_numpy(), likelihood="gaussian",
                            num_parallel_threads=1)
            if library == "gpboost_accurate":
                m.set_optim_params(params=OPTIM_PARAMS)
            m.fit(y=y, X=X)
            return m
    else:
        raise SystemExit(f"unknown library {library}: skmlm, gpboost or gpboost_accurate")
    cpu, wall = time.process_time(), time.perf_counter()
    m = fit_once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if library == "skmlm":
        detail = f"evaluations {len(m.optimizer_log_)}, logLik {m.log_likelihood_:.6f}"
    else:
        detail = f"logLik reported {-m.get_current_neg_log_likelihood():.6f}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{library} {name}: CPU {cpu:.2f} s, wall {wall:.2f} s, {detail}, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:3])
