"""Peak memory of one fit of ``large_slope_1m`` (1,000,000 rows, 10,000
groups, ``y ~ x1 + x2 + (1 + x1 | g)``, ML), measured in a fresh process.

    python benchmarks/peak_memory.py [--library skmlm|mixedlm|gpboost|floor|none] [--problem NAME]

The parent process only launches a child (``--child``) that builds the data,
fits once and reports:

* ``max RSS``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child at
  the end, i.e. the peak resident memory of the whole process (interpreter,
  imported libraries, the DataFrame and the fit).  This is the headline
  figure; the target for skmlm is < 1 GB.
* ``RSS before fit``: resident memory once the data were built (VmRSS);
* ``fit peak``: the peak resident memory during the fit alone (VmHWM after
  resetting it through /proc/self/clear_refs just before the fit, Linux).

``--library floor`` makes one pass forming the statistics (``bench_floor.py``'s pass,
no fit); ``--library none`` builds the data only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _status_kb(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child(library, problem_name):
    import problems

    prob = {p.name: p for p in problems.all_problems() + problems.shape_problems()}[problem_name]
    df = prob.data  # noqa: F841  (built before the fit)
    if library == "skmlm":
        import bench_skmlm as ad

        fit_once = ad.build(prob)
    elif library == "mixedlm":
        import mixedlm as mlm

        formula = prob.lme4_formula()
        fit_once = lambda: mlm.lmer(formula, prob.data, REML=prob.reml)  # noqa: E731
    elif library == "gpboost":
        import bench_gpboost as ad

        res = {}

        def fit_once():
            res.update(ad.fit(prob, reps=1, budget=0.0))
            return None
    elif library == "floor":  # one pass forming the statistics, as bench_floor.py times it
        import skmlm
        from bench_skmlm import estimator_kwargs

        X, y = prob.data[list(prob.fixed)], prob.data[prob.y]
        gcols = prob.group_columns
        groups = prob.data[gcols[0]] if len(gcols) == 1 else prob.data[gcols]
        est = skmlm.MixedLinearRegressor(reml=bool(prob.reml), **estimator_kwargs(prob))

        def fit_once():
            est._statistics_of(est._prepare_fit(X, y, groups, None))
            return None
    elif library == "none":
        fit_once = lambda: None  # noqa: E731
    else:
        raise SystemExit(f"unsupported library {library}")
    gc.collect()
    before = _status_kb("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    m = fit_once()
    secs = time.perf_counter() - t0
    fit_peak = _status_kb("VmHWM") if reset else None
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    ll = res.get("loglik") if library == "gpboost" else None
    if m is not None:
        ll = float(getattr(m, "log_likelihood_", None) or m.logLik())
    print(json.dumps(dict(library=library, problem=problem_name, n_rows=len(prob.data), seconds=secs,
                          loglik=ll, maxrss_mb=maxrss_kb / 1024,
                          rss_before_fit_mb=None if before is None else before / 1024,
                          fit_peak_mb=None if fit_peak is None else fit_peak / 1024)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", default="skmlm", choices=["skmlm", "mixedlm", "gpboost", "floor", "none"])
    ap.add_argument("--problem", default="large_slope_1m")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--limit-mb", type=float, default=1024.0, help="target for max RSS (default 1024 MB)")
    args = ap.parse_args()
    if args.child:
        child(args.library, args.problem)
        return 0
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--library", args.library,
                        "--problem", args.problem], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        return r.returncode
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ok = res["maxrss_mb"] < args.limit_mb
    print(f"library:        {res['library']}")
    print(f"problem:        {res['problem']} ({res['n_rows']:,} rows)")
    print(f"fit time:       {res['seconds']:.2f} s")
    if res["loglik"] is not None:
        print(f"logLik:         {res['loglik']:.6f}")
    if res["rss_before_fit_mb"] is not None:
        print(f"RSS before fit: {res['rss_before_fit_mb']:.0f} MB")
    if res["fit_peak_mb"] is not None:
        print(f"fit peak RSS:   {res['fit_peak_mb']:.0f} MB (peak during the fit alone)")
    print(f"max RSS:        {res['maxrss_mb']:.0f} MB (whole process) -> "
          f"{'OK' if ok else 'OVER'} target < {args.limit_mb:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
