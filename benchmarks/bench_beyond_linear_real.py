"""Random effects on top of gradient boosting, on real multilevel data: the methods of
``bench_beyond_linear.py`` side by side in one run.

Data (R's mlmRev, exported with Rscript at run time to ``/tmp/skmlm_bench``, as
``problems.load_insteval`` does for InstEval):

* ``Exam`` (4,059 students in 65 London schools): ``normexam`` from ``standLRT``, ``sex``,
  ``schgend``, ``schavg`` (a school-level mean intake score), ``vr``, ``intake`` and
  ``type``; a random intercept and a random slope on ``standLRT`` by school (the model of
  Goldstein et al.'s analysis). Scored by RMSE.
* ``Contraception`` (1,934 women in 60 districts of Bangladesh): ``use`` from ``age``,
  ``age^2``, ``urban`` and the number of living children (``livch``); a random intercept
  and a random slope on ``urban`` by district (the model of mlmRev's and lme4's examples).
  Scored by log-loss.

Categorical columns are one-hot encoded (first level dropped) for every method. Each split
(``--seeds``): 80% of the groups are known, 80% of their rows train and the other 20% are
the "known" test; the other 20% of the groups are the "new" test. Every model with gradient
boosting inside uses scikit-learn's ``HistGradientBoostingRegressor(random_state=0)`` with
its defaults (MERF the same); the classifiers ``HistGradientBoostingClassifier(random_state=0)``
with its defaults and with ``early_stopping=True``; gpboost its own trees, its rounds chosen
by early stopping on held-out rows and refitted (as in ``bench_beyond_linear.py``). One
thread for every library; times are one fit each, wall-clock and the process's CPU time.

Run: ``python benchmarks/bench_beyond_linear_real.py [--seeds 0,1,2,3,4] [--jobs 2]``; writes
``benchmarks/results_beyond_linear_real.md``.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import shutil
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import log_loss

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skmlm import MixedEffectsClassifier, MixedEffectsRegressor, MixedLinearRegressor, MixedLogisticClassifier  # noqa: E402

TMP_DIR = os.environ.get("SKMLM_BENCH_TMP", "/tmp/skmlm_bench")

#: name -> (R columns, response, group, categorical columns, slope column, binary)
DATASETS = {
    "Exam": (["normexam", "standLRT", "sex", "schgend", "schavg", "vr", "intake", "type", "school"],
             "normexam", "school", ["sex", "schgend", "vr", "intake", "type"], "standLRT", False),
    "Contraception": (["use", "age", "urban", "livch", "district"], "use", "district", ["urban", "livch"],
                      "urban_Y", True),
}


def load(name):
    """``(features DataFrame, y, groups)`` of an mlmRev data set, exported once via Rscript."""
    columns, response, group, categorical, _, binary = DATASETS[name]
    os.makedirs(TMP_DIR, exist_ok=True)
    csv = os.path.join(TMP_DIR, f"{name}.csv")
    if not os.path.exists(csv):
        if not shutil.which("Rscript"):
            raise SystemExit(f"{csv} is missing and Rscript is not on PATH: the data come from R's mlmRev")
        cols = ", ".join(f'"{c}"' for c in columns)
        code = (f'suppressMessages(library(mlmRev)); data({name}, package="mlmRev"); '
                f'write.csv({name}[, c({cols})], "{csv}", row.names=FALSE)')
        subprocess.run(["Rscript", "-e", code], check=True, capture_output=True, timeout=120)
    df = pd.read_csv(csv, dtype={group: str})
    y = (df[response] == "Y").astype(int).to_numpy() if binary else df[response].to_numpy(dtype=float)
    X = df.drop(columns=[response, group])
    if name == "Contraception":
        X["age2"] = X["age"] ** 2
    X = pd.get_dummies(X, columns=categorical, drop_first=True, dtype=float)
    X.columns = [c.replace(" ", "_").replace("%", "pc").replace("+", "plus") for c in X.columns]
    return X, y, df[group].to_numpy()


def split(groups, seed):
    """Row masks (train, known test, new test): 80% of the groups known, 80% of their rows train."""
    rng = np.random.default_rng(seed)
    levels = np.unique(groups)
    known_levels = rng.permutation(levels)[: int(round(0.8 * len(levels)))]
    known = np.isin(groups, known_levels)
    train = known & (rng.uniform(size=len(groups)) < 0.8)
    return train, known & ~train, ~known


# ---- each method fits on (X, y, groups, slope) and returns predict(X, groups)
def hgb(X, y, g, slope):
    m = HistGradientBoostingRegressor(random_state=0).fit(X, y)
    return lambda Xt, gt: m.predict(Xt)


def lmm(X, y, g, slope):
    m = MixedLinearRegressor(random_slopes=[slope], reml=False).fit(X, y, groups=g)
    return lambda Xt, gt: m.predict(Xt, groups=gt)


def skmlm_me(X, y, g, slope, **kw):
    m = MixedEffectsRegressor(random_slopes=[slope], **kw).fit(X, y, groups=g)
    return lambda Xt, gt: m.predict(Xt, groups=gt)


def merf(X, y, g, slope):
    from merf import MERF

    logging.getLogger("merf").setLevel(logging.WARNING)
    logging.disable(logging.INFO)
    m = MERF(fixed_effects_model=HistGradientBoostingRegressor(random_state=0), max_iterations=20)
    m.fit(X, np.column_stack([np.ones(len(X)), X[slope]]), pd.Series(g), y)
    return lambda Xt, gt: m.predict(Xt, np.column_stack([np.ones(len(Xt)), Xt[slope]]), pd.Series(gt))


def gpboost(X, y, g, slope, with_slope=True, likelihood="gaussian"):
    """``bench_beyond_linear.gpboost_booster``: default trees, rounds by early stopping on 20%
    of the training rows (20 rounds' patience), then refitted on all training rows."""
    from bench_beyond_linear import gpboost_booster

    bst, _ = gpboost_booster(X.to_numpy(), y, g, X[slope].to_numpy() if with_slope else None, likelihood)

    def predict(Xt, gt):
        kw = dict(group_rand_coef_data_pred=Xt[slope].to_numpy()) if with_slope else {}
        return bst.predict(data=Xt.to_numpy(), group_data_pred=gt, predict_var=likelihood != "gaussian",
                           pred_latent=False, **kw)["response_mean"]
    return predict


def hgb_clf(X, y, g, slope, **kw):
    m = HistGradientBoostingClassifier(random_state=0, **kw).fit(X, y)
    return lambda Xt, gt: m.predict_proba(Xt)[:, 1]


def glmm(X, y, g, slope):
    m = MixedLogisticClassifier(random_slopes=[slope]).fit(X, y, groups=g)
    return lambda Xt, gt: m.predict_proba(Xt, groups=gt)[:, 1]


def skmlm_me_clf(X, y, g, slope, **kw):
    m = MixedEffectsClassifier(random_slopes=[slope], **kw).fit(X, y, groups=g)
    return lambda Xt, gt: m.predict_proba(Xt, groups=gt)[:, 1]


REGRESSION = {
    "HistGradientBoosting alone": hgb,
    "linear mixed model (skmlm)": lmm,
    "MERF (HGB inside)": merf,
    "gpboost (intercept + slope)": gpboost,
    "skmlm MixedEffectsRegressor, no linear part (linear_part=False)": lambda *a: skmlm_me(*a, linear_part=False),
    "skmlm MixedEffectsRegressor": skmlm_me,
}

CLASSIFICATION = {
    "HistGradientBoosting alone": hgb_clf,
    "HistGradientBoosting alone, early stopping": lambda *a: hgb_clf(*a, early_stopping=True),
    "logistic mixed model (skmlm)": glmm,
    "gpboost bernoulli (intercept + slope)": lambda *a: gpboost(*a, likelihood="bernoulli_logit"),
    "skmlm MixedEffectsClassifier, no linear part (linear_part=False)": lambda *a: skmlm_me_clf(*a, linear_part=False),
    "skmlm MixedEffectsClassifier": skmlm_me_clf,
}


def run_split(args):
    """Rows of every method on one split of one data set."""
    name, seed = args
    X, y, g = load(name)
    slope, binary = DATASETS[name][4], DATASETS[name][5]
    train, known, new = split(g, seed)
    rows = []
    for method, fit in (CLASSIFICATION if binary else REGRESSION).items():
        warnings.simplefilter("ignore")
        try:
            start, cpu = time.perf_counter(), time.process_time()
            predict = fit(X[train].reset_index(drop=True), y[train], g[train], slope)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        except ImportError as e:
            rows.append({"data": name, "method": method, "seed": seed, "status": f"n/a ({e})"})
            continue
        scores = {}
        for part, mask in (("known", known), ("new", new)):
            p = np.asarray(predict(X[mask].reset_index(drop=True), g[mask]), dtype=float)
            scores[part] = log_loss(y[mask], p) if binary else float(np.sqrt(np.mean((p - y[mask]) ** 2)))
        rows.append({"data": name, "method": method, "seed": seed, "known": scores["known"], "new": scores["new"],
                     "fit_seconds": seconds, "fit_cpu_seconds": cpu, "status": "ok"})
        print(f"  {name} seed {seed} {method:45s} known {scores['known']:.4f}  new {scores['new']:.4f}  "
              f"{seconds:7.2f} s  {cpu:7.2f} s CPU", flush=True)
    return rows


def table(df, metric):
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({
        f"{metric} known": g["known"].mean(), f"{metric} new": g["new"].mean(),
        "fit seconds (median)": g["fit_seconds"].median(), "fit CPU seconds (median)": g["fit_cpu_seconds"].median(),
    })
    lines = ["| method | " + " | ".join(out.columns) + " |", "|---" * (len(out.columns) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{v:.4f}" if j < 2 else f"{v:.3f}" for j, v in enumerate(r)) + " |"
              for m, r in out.iterrows()]
    return "\n".join(lines)


def per_seed(df, ours, metric):
    """Per split, the metric of each method on known and new groups; then which is lowest how often."""
    lines = []
    for part in ("known", "new"):
        t = df.pivot(index="seed", columns="method", values=part)[list(dict.fromkeys(df["method"]))]
        best = t.idxmin(axis=1)
        lines += [f"{metric} on {part} groups, per split (lowest of the split in bold); skmlm's lowest in "
                  f"{int((best == ours).sum())} of {len(t)} splits.", "",
                  "| split | " + " | ".join(t.columns) + " |", "|---" * (len(t.columns) + 1) + "|"]
        lines += [f"| {s} | " + " | ".join(f"**{v:.4f}**" if c == best[s] else f"{v:.4f}" for c, v in r.items())
                  + " |" for s, r in t.iterrows()]
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated split seeds")
    ap.add_argument("--jobs", type=int, default=1, help="splits run in this many processes at once")
    ap.add_argument("--out", default=str(HERE / "results_beyond_linear_real.md"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in DATASETS:
        load(name)  # export once, before the processes start
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:  # each fit's CPU time is counted in its own process
        for r in pool.map(run_split, [(name, s) for name in DATASETS for s in seeds]):
            rows += r
    df = pd.DataFrame([r for r in rows if r["status"] == "ok"])
    import sklearn
    text = [
        "# Random effects on top of gradient boosting: real multilevel data",
        "",
        f"`python benchmarks/bench_beyond_linear_real.py --seeds {args.seeds} --jobs {args.jobs}`, one thread per "
        f"library, each split in one process; scikit-learn {sklearn.__version__}; load average "
        f"{os.getloadavg()[0]:.1f} at the end. Data: R's mlmRev (see the script's docstring for the models and the "
        "splits). Figures are means over the splits (times: medians).",
        "",
        "## Exam (4,059 students, 65 schools): test RMSE of normexam",
        "",
        table(df[df["data"] == "Exam"], "RMSE"),
        "",
        per_seed(df[df["data"] == "Exam"], "skmlm MixedEffectsRegressor", "RMSE"),
        "## Contraception (1,934 women, 60 districts): test log-loss of use",
        "",
        table(df[df["data"] == "Contraception"], "log-loss"),
        "",
        per_seed(df[df["data"] == "Contraception"], "skmlm MixedEffectsClassifier", "log-loss"),
    ]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
