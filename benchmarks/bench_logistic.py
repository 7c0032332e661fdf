"""Side-by-side timing of binary logistic GLMMs: skmlm, lme4's glmer, mixedlm, gpboost.

Problems: the three binomial reference cases of ``tests/golden`` (cbpp Laplace and
9-point AGQ, a correlated random slope) and a bigger simulated case with crossed factors
and a random slope (6,000 rows, 200 x 30 levels). Every library fits the same model
in this one run; the figure is the median wall time of the fit alone (data already in
memory; for glmer, timed inside R with ``system.time``), with each library's log-likelihood.
A library counts as a competitor where its log-likelihood is within 1e-3 of the best.

Run: ``python benchmarks/bench_logistic.py [--reps 7]``; writes ``benchmarks/results_logistic.md``.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


def simulated_crossed(n=6000, m1=200, m2=30, seed=1):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, m1, n), rng.integers(0, m2, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    ba = rng.multivariate_normal([0, 0], [[0.6, 0.1], [0.1, 0.2]], m1)
    eta = -0.3 + 0.8 * x + 0.4 * z + ba[a, 0] + ba[a, 1] * x + rng.normal(0, 0.5, m2)[b]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g_a": [f"a{i}" for i in a], "g_b": [f"b{i}" for i in b]})


def problems():
    out = []
    for name, fixed, slopes, agq in [
        ("cbpp_binary_laplace", ["period2", "period3", "period4"], {"g_herd": []}, 1),
        ("cbpp_binary_agq9", ["period2", "period3", "period4"], {"g_herd": []}, 9),
        ("logit_slopes_laplace", ["x", "z"], {"g_g": ["x"]}, 1),
    ]:
        g = list(slopes)
        data = pd.read_csv(REPO / "tests" / "golden" / f"{name}.csv", dtype={c: str for c in g})
        out.append(dict(name=name, data=data, fixed=fixed, slopes=slopes, nagq=agq, reps=None))
    out.append(dict(name="crossed_slope_6000", data=simulated_crossed(), fixed=["x", "z"],
                    slopes={"g_a": ["x"], "g_b": []}, nagq=1, reps=3))
    return out


def formula(p):
    bars = [f"({' + '.join(['1'] + s)} | {g})" for g, s in p["slopes"].items()]
    return "y ~ " + " + ".join(p["fixed"] + bars)


def timed(fit_once, reps):
    fit_once()  # warm-up
    times, res = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fit_once()
        times.append(time.perf_counter() - t0)
    return res, times


def run_skmlm(p, reps):
    from skmlm import MixedLogisticClassifier

    # the inputs are prepared outside the timed fit, as gpboost's are (and as run.py does)
    groups = p["data"][list(p["slopes"])]
    X, y = p["data"][p["fixed"]], p["data"]["y"]
    slopes = {g: s for g, s in p["slopes"].items() if s} or None

    def fit_once():
        return MixedLogisticClassifier(random_slopes=slopes, n_quadrature_points=p["nagq"]).fit(X, y, groups=groups)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m, times = timed(fit_once, reps)
    return m.log_likelihood_, times, "" if m.converged_ else "not converged"


R_SCRIPT = r"""
suppressMessages({library(lme4); library(jsonlite)})
a <- commandArgs(TRUE)
d <- read.csv(a[1]); for (g in strsplit(a[3], ",")[[1]]) d[[g]] <- factor(d[[g]])
f <- as.formula(a[2]); k <- as.integer(a[4]); reps <- as.integer(a[5])
fit <- glmer(f, d, family = binomial, nAGQ = k)
tt <- sapply(seq_len(reps), function(i) system.time(fit <<- glmer(f, d, family = binomial, nAGQ = k))[["elapsed"]])
cat(toJSON(list(loglik = as.numeric(logLik(fit)), times = tt), digits = NA))
"""


def run_glmer(p, reps):
    if shutil.which("Rscript") is None:
        raise RuntimeError("Rscript not found")
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = os.path.join(tmp, "d.csv"), os.path.join(tmp, "fit.R")
        p["data"].to_csv(csv, index=False)
        Path(script).write_text(R_SCRIPT)
        out = subprocess.run(["Rscript", script, csv, formula(p), ",".join(p["slopes"]), str(p["nagq"]), str(reps)],
                             capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(np.atleast_1d(res["loglik"])[0]), list(np.atleast_1d(res["times"])), ""


def run_mixedlm(p, reps):
    import mixedlm

    fam = mixedlm.families.Binomial()
    res, times = timed(lambda: mixedlm.glmer(formula(p), p["data"], family=fam, nAGQ=p["nagq"]), reps)
    return float(res.logLik()), times, ""


def run_gpboost(p, reps):
    import gpboost as gpb

    if p["nagq"] > 1:
        raise NotImplementedError("no adaptive Gauss-Hermite quadrature")
    if any(p["slopes"].values()):
        raise NotImplementedError("no correlated random slopes")
    d = p["data"]
    X = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in p["fixed"]])
    y = d["y"].to_numpy(float)
    gd = d[list(p["slopes"])].to_numpy()

    def fit_once():
        m = gpb.GPModel(group_data=gd, likelihood="bernoulli_logit")
        m.fit(y=y, X=X, params={"trace": False})
        return m

    m, times = timed(fit_once, reps)
    return -float(m.get_current_neg_log_likelihood()), times, ""


LIBRARIES = {"skmlm": run_skmlm, "glmer (lme4)": run_glmer, "mixedlm": run_mixedlm, "gpboost": run_gpboost}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "results_logistic.md"))
    args = ap.parse_args()
    rows = []
    for p in problems():
        reps = p["reps"] or args.reps
        for lib, run in LIBRARIES.items():
            try:
                ll, times, note = run(p, reps)
                rows.append(dict(problem=p["name"], library=lib, loglik=ll, seconds=statistics.median(times),
                                 reps=len(times), note=note))
            except Exception as e:  # a library that cannot fit this model
                rows.append(dict(problem=p["name"], library=lib, loglik=np.nan, seconds=np.nan, reps=0,
                                 note=f"n/a: {str(e).splitlines()[0][:80] if str(e) else type(e).__name__}"))
            r = rows[-1]
            print(f"{p['name']:22s} {lib:13s} logLik {r['loglik']:14.6f}  median {r['seconds']:8.4f}s  {r['note']}", flush=True)
    df = pd.DataFrame(rows)
    lines = ["# Binary logistic GLMMs: skmlm vs glmer, mixedlm, gpboost", "",
             f"`python benchmarks/bench_logistic.py --reps {args.reps}` (crossed case: 3 reps), one run, "
             "median wall time of the fit after a warm-up. `ratio` = library time / skmlm time; "
             "`dlogLik` = logLik - best logLik of the row's problem (competitors: within 1e-3).", ""]
    lines.append("| problem | library | logLik | dlogLik | median s | ratio | note |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for name, grp in df.groupby("problem", sort=False):
        best = grp["loglik"].max()
        t0 = grp.loc[grp.library == "skmlm", "seconds"].iloc[0]
        for _, r in grp.iterrows():
            if np.isnan(r.loglik):
                lines.append(f"| {name} | {r.library} | | | | | {r.note} |")
                continue
            lines.append(f"| {name} | {r.library} | {r.loglik:.6f} | {r.loglik - best:.2e} | {r.seconds:.4f} | "
                         f"{r.seconds / t0:.1f} | {r.note} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
