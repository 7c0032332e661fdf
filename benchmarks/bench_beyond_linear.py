"""Random effects on top of gradient boosting: skmlm's MixedEffectsRegressor/Classifier
against gradient boosting alone, one-hot and target-encoded groups, the linear mixed
model, MERF and gpboost, side by side in one run on simulated data.

Simulation (issue 14): ``f`` is Friedman's #1 function of 5 of 8 uniform features,
``10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4``; 200 groups of 5 to 60 rows; a random
intercept (SD 3) and a random slope on ``x0`` (SD 2), independent; noise SD 1. Train on
80% of the rows of 80% of the groups; test on the other rows of those groups ("known")
and on the other 20% of the groups ("new"). The binary version: ``logit P(y=1) =
(f - 14.4) / 4 + b0 + b1 x0`` with ``b0, b1 ~ N(0, 1)``, scored by log-loss.

Every regression model with gradient boosting inside uses scikit-learn's
``HistGradientBoostingRegressor(random_state=0)`` with its defaults (MERF the same);
the classifiers ``HistGradientBoostingClassifier(random_state=0)``, with its defaults and
with ``early_stopping=True`` (MixedEffectsClassifier's default classifier) (gpboost:
its own trees with its default settings, the number of rounds chosen by early stopping on
held-out rows, then refitted on all training rows, as its guide recommends; its fit time
includes that choice). One thread for every library
(``OMP_NUM_THREADS=1``). Times are the fit only, one fit each: wall-clock and the process's
CPU time (which a busy machine disturbs less; with one thread it is the fair measure).

Run: ``python benchmarks/bench_beyond_linear.py [--seeds 0,1,2] [--jobs 3] [--part classification]``
(``--jobs``: seeds run in parallel processes; each fit's CPU time is its own process's;
``--part``: one part only, the other's sections kept from the results file); writes
``benchmarks/results_beyond_linear.md``. The same methods on real multilevel data (R's
mlmRev): ``benchmarks/bench_beyond_linear_real.py``.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, TargetEncoder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from skmlm import MixedEffectsClassifier, MixedEffectsRegressor, MixedLinearRegressor, MixedLogisticClassifier  # noqa: E402

FEATURES = [f"x{j}" for j in range(8)]


def simulate(seed, binary=False, n_groups=200):
    """The data, the group labels and the three row masks (train, test on known groups, new groups)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 61, n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    n = len(g)
    X = rng.uniform(size=(n, 8))
    f = 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3] + 5 * X[:, 4]
    if binary:
        b0, b1 = rng.normal(0, 1, n_groups), rng.normal(0, 1, n_groups)
        eta = (f - 14.4) / 4 + b0[g] + b1[g] * X[:, 0]
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    else:
        b0, b1 = rng.normal(0, 3, n_groups), rng.normal(0, 2, n_groups)
        y = f + b0[g] + b1[g] * X[:, 0] + rng.normal(0, 1, n)
    known = np.isin(g, rng.permutation(n_groups)[: int(0.8 * n_groups)])
    train = known & (rng.uniform(size=n) < 0.8)
    df = pd.DataFrame(X, columns=FEATURES)
    df["group"] = g
    return df, y, train, known & ~train, ~known


# ---- regression: each returns a predict(frame) function after fitting on the training frame
def hgb(d, y):
    m = HistGradientBoostingRegressor(random_state=0).fit(d[FEATURES], y)
    return lambda t: m.predict(t[FEATURES])


def one_hot_hgb(d, y):
    ct = make_column_transformer((OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["group"]),
                                 remainder="passthrough")
    m = make_pipeline(ct, HistGradientBoostingRegressor(random_state=0)).fit(d, y)
    return m.predict


def target_encoded_hgb(d, y, target_type="continuous"):
    ct = make_column_transformer((TargetEncoder(target_type=target_type, random_state=0), ["group"]),
                                 remainder="passthrough")
    est = HistGradientBoostingRegressor if target_type == "continuous" else HistGradientBoostingClassifier
    m = make_pipeline(ct, est(random_state=0)).fit(d, y)
    return m.predict if target_type == "continuous" else (lambda t: m.predict_proba(t)[:, 1])


def lmm(d, y):
    m = MixedLinearRegressor(random_slopes=["x0"], reml=False).fit(d[FEATURES], y, groups=d["group"])
    return lambda t: m.predict(t[FEATURES], groups=t["group"])


def skmlm_me(d, y, **kw):
    m = MixedEffectsRegressor(random_slopes=["x0"], **kw).fit(d[FEATURES], y, groups=d["group"])
    print(f"    (backfitting iterations: {m.n_iter_}, converged: {m.converged_})")
    return lambda t: m.predict(t[FEATURES], groups=t["group"])


def merf(d, y):
    from merf import MERF

    logging.getLogger("merf").setLevel(logging.WARNING)
    logging.disable(logging.INFO)
    Z = np.column_stack([np.ones(len(d)), d["x0"]])
    m = MERF(fixed_effects_model=HistGradientBoostingRegressor(random_state=0), max_iterations=20)
    m.fit(d[FEATURES], Z, d["group"], y)
    return lambda t: m.predict(t[FEATURES], np.column_stack([np.ones(len(t)), t["x0"]]), t["group"])


def gpboost_booster(X, y, groups, slope_values=None, likelihood="gaussian"):
    """GPBoost (trees + grouped random effects, a random slope on ``slope_values`` where
    given) with its default tree parameters and the number of boosting rounds chosen as its
    guide recommends: early stopping (20 rounds) on held-out rows (20% of the training rows,
    the GP model used for validation), then a refit on all training rows with that number of
    rounds. Returns ``(booster, rounds)``; arrays in, as the real-data benchmark uses it too."""
    import gpboost as gpb

    params = {"learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20, "verbose": -1, "num_threads": 1}

    def gp_model(rows):
        kw = {} if slope_values is None else dict(group_rand_coef_data=slope_values[rows], ind_effect_group_rand_coef=[1])
        return gpb.GPModel(group_data=groups[rows], likelihood=likelihood, **kw)

    val = np.random.default_rng(0).uniform(size=len(y)) < 0.2
    gm = gp_model(~val)
    kw = {} if slope_values is None else dict(group_rand_coef_data_pred=slope_values[val])
    gm.set_prediction_data(group_data_pred=groups[val], **kw)
    train_set = gpb.Dataset(X[~val], y[~val])
    bst = gpb.train(params=params, train_set=train_set, gp_model=gm, num_boost_round=1000,
                    valid_sets=gpb.Dataset(X[val], y[val], reference=train_set), early_stopping_rounds=20,
                    use_gp_model_for_validation=True, verbose_eval=False)
    rounds = max(bst.best_iteration, 1)
    bst = gpb.train(params=params, train_set=gpb.Dataset(X, y), gp_model=gp_model(np.ones(len(y), bool)),
                    num_boost_round=rounds)
    return bst, rounds


def gpboost(d, y, slope=True, likelihood="gaussian"):
    """:func:`gpboost_booster` on the simulation's features, its slope on ``x0``."""
    bst, rounds = gpboost_booster(d[FEATURES].to_numpy(), y, d["group"].to_numpy(),
                                  d["x0"].to_numpy() if slope else None, likelihood)
    print(f"    (gpboost boosting rounds: {rounds})")

    def predict(t):
        kw = dict(group_rand_coef_data_pred=t["x0"].to_numpy()) if slope else {}
        out = bst.predict(data=t[FEATURES].to_numpy(), group_data_pred=t["group"].to_numpy(),
                          predict_var=likelihood != "gaussian", pred_latent=False, **kw)
        return out["response_mean"]
    return predict


# ---- classification: each returns a function giving P(y = 1)
def hgb_clf(d, y, **kw):
    m = HistGradientBoostingClassifier(random_state=0, **kw).fit(d[FEATURES], y)
    return lambda t: m.predict_proba(t[FEATURES])[:, 1]


def glmm(d, y):
    m = MixedLogisticClassifier(random_slopes=["x0"]).fit(d[FEATURES], y, groups=d["group"])
    return lambda t: m.predict_proba(t[FEATURES], groups=t["group"])[:, 1]


def skmlm_me_clf(d, y, **kw):
    m = MixedEffectsClassifier(random_slopes=["x0"], **kw).fit(d[FEATURES], y, groups=d["group"])
    return lambda t: m.predict_proba(t[FEATURES], groups=t["group"])[:, 1]


REGRESSION = {
    "HistGradientBoosting alone": hgb,
    "one-hot group + HGB": one_hot_hgb,
    "target-encoded group + HGB": target_encoded_hgb,
    "linear mixed model (skmlm)": lmm,
    "MERF (HGB inside)": merf,
    "gpboost (intercept + slope)": gpboost,
    "gpboost (intercept)": lambda d, y: gpboost(d, y, slope=False),
    "skmlm MixedEffectsRegressor, in-sample residuals (cv=None)": lambda d, y: skmlm_me(d, y, cv=None),
    "skmlm MixedEffectsRegressor, cv=5": lambda d, y: skmlm_me(d, y, cv=5),
    "skmlm MixedEffectsRegressor, no linear part (linear_part=False)": lambda d, y: skmlm_me(d, y, linear_part=False),
    "skmlm MixedEffectsRegressor": skmlm_me,
}

CLASSIFICATION = {
    "HistGradientBoosting alone": hgb_clf,
    "HistGradientBoosting alone, early stopping": lambda d, y: hgb_clf(d, y, early_stopping=True),
    "target-encoded group + HGB": lambda d, y: target_encoded_hgb(d, y, "binary"),
    "logistic mixed model (skmlm)": glmm,
    "gpboost bernoulli (intercept + slope)": lambda d, y: gpboost(d, y, True, "bernoulli_logit"),
    "gpboost bernoulli (intercept)": lambda d, y: gpboost(d, y, False, "bernoulli_logit"),
    "skmlm MixedEffectsClassifier, no linear part (linear_part=False)":
        lambda d, y: skmlm_me_clf(d, y, linear_part=False),
    "skmlm MixedEffectsClassifier": skmlm_me_clf,
}


def run(methods, seed, binary):
    d, y, train, known, new = simulate(seed, binary)
    rows = []
    for name, fit in methods.items():
        warnings.simplefilter("ignore")
        try:
            start, cpu = time.perf_counter(), time.process_time()
            predict = fit(d[train].reset_index(drop=True), y[train])
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        except ImportError as e:
            rows.append({"method": name, "seed": seed, "status": f"n/a ({e})"})
            continue
        scores = {}
        for part, mask in (("known", known), ("new", new)):
            p = np.asarray(predict(d[mask].reset_index(drop=True)), dtype=float)
            scores[part] = log_loss(y[mask], p) if binary else float(np.sqrt(np.mean((p - y[mask]) ** 2)))
        rows.append({"method": name, "seed": seed, "known": scores["known"], "new": scores["new"],
                     "fit_seconds": seconds, "fit_cpu_seconds": cpu, "status": "ok"})
        print(f"  seed {seed} {name:60s} known {scores['known']:.4f}  new {scores['new']:.4f}  {seconds:7.2f} s  "
              f"{cpu:7.2f} s CPU", flush=True)
    return rows


def table(rows, metric):
    df = pd.DataFrame([r for r in rows if r["status"] == "ok"])
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({
        f"{metric} known": g["known"].mean(), f"{metric} new": g["new"].mean(),
        "fit seconds (median)": g["fit_seconds"].median(),
        "fit CPU seconds (median)": g["fit_cpu_seconds"].median(),
    })
    lines = ["| method | " + " | ".join(out.columns) + " |", "|---" * (len(out.columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for name, row in out.iterrows()]
    return "\n".join(lines)


def head_to_head(rows, ours, others, metric):
    """Per seed: ours against each of ``others`` on known and new groups, and the ratio of
    their fit CPU time to ours; then the mean and median over the seeds."""
    df = pd.DataFrame([r for r in rows if r["status"] == "ok"]).set_index(["method", "seed"])
    lines = []
    for other in others:
        if other not in df.index.get_level_values(0):
            continue
        a, b = df.loc[ours], df.loc[other]
        t = pd.DataFrame({
            f"{metric} known, skmlm": a["known"], "known, other": b["known"],
            f"{metric} new, skmlm": a["new"], "new, other": b["new"],
            "CPU s, skmlm": a["fit_cpu_seconds"], "CPU s, other": b["fit_cpu_seconds"],
            "CPU ratio other / skmlm": b["fit_cpu_seconds"] / a["fit_cpu_seconds"],
            "wall ratio other / skmlm": b["fit_seconds"] / a["fit_seconds"],
        })
        t.loc["mean"], t.loc["median"] = t.mean(), t.median()
        wins_known, wins_new = int((a["known"] < b["known"]).sum()), int((a["new"] < b["new"]).sum())
        lines += [f"### {ours} against {other}", "",
                  f"skmlm lower on known groups in {wins_known} of {len(a)} seeds, on new groups in {wins_new}.", "",
                  "| seed | " + " | ".join(t.columns) + " |", "|---" * (len(t.columns) + 1) + "|"]
        lines += [f"| {i} | " + " | ".join(f"{v:.4f}" if j < 4 else f"{v:.2f}" for j, v in enumerate(r)) + " |"
                  for i, r in t.iterrows()]
        lines.append("")
    return "\n".join(lines)


PARTS = {"regression": "## Regression: test RMSE", "classification": "## Binary outcome: test log-loss"}


def run_seed(seed, parts=tuple(PARTS)):
    """Regression and classification rows of one seed (empty for a part not run)."""
    reg, clf = [], []
    if "regression" in parts:
        print(f"regression, seed {seed}")
        reg = run(REGRESSION, seed, binary=False)
    if "classification" in parts:
        print(f"classification, seed {seed}")
        clf = run(CLASSIFICATION, seed, binary=True)
    return reg, clf


def kept_sections(path):
    """The sections of an earlier results file, by part: its text from each part's heading
    to the next part's (or the end)."""
    text = Path(path).read_text() if Path(path).exists() else ""
    starts = sorted((text.find(head), part) for part, head in PARTS.items() if head in text)
    return {part: text[at:(starts[i + 1][0] if i + 1 < len(starts) else len(text))].rstrip() + "\n"
            for i, (at, part) in enumerate(starts)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0", help="comma-separated simulation seeds (figures are means over them)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes at once")
    ap.add_argument("--part", choices=["all", *PARTS], default="all",
                    help="run one part only; the other part's sections are kept from the --out file")
    ap.add_argument("--out", default=str(HERE / "results_beyond_linear.md"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = tuple(PARTS) if args.part == "all" else (args.part,)
    reg, clf = [], []
    with ProcessPoolExecutor(args.jobs) as pool:  # each fit's CPU time is counted in its own process
        for r, c in pool.map(run_seed, seeds, [parts] * len(seeds)):
            reg += r
            clf += c
    import sklearn
    command = " ".join(["python benchmarks/bench_beyond_linear.py", f"--seeds {args.seeds}", f"--jobs {args.jobs}"]
                       + ([f"--part {args.part}"] if args.part != "all" else []))
    run_line = (f"`{command}`; scikit-learn {sklearn.__version__}; load average {os.getloadavg()[0]:.1f} at the end "
                f"of the run.")
    sections = kept_sections(args.out)
    if "regression" in parts:
        sections["regression"] = "\n".join([
            f"{PARTS['regression']} (noise SD 1)", "", run_line, "", table(reg, "RMSE"), "",
            head_to_head(reg, "skmlm MixedEffectsRegressor", ["MERF (HGB inside)", "gpboost (intercept + slope)"],
                         "RMSE"),
            head_to_head(reg, "skmlm MixedEffectsRegressor, cv=5", ["MERF (HGB inside)"], "RMSE"),
        ])
    if "classification" in parts:
        sections["classification"] = "\n".join([
            PARTS["classification"], "", run_line, "", table(clf, "log-loss"), "",
            head_to_head(clf, "skmlm MixedEffectsClassifier",
                         ["HistGradientBoosting alone", "HistGradientBoosting alone, early stopping",
                          "gpboost bernoulli (intercept + slope)", "gpboost bernoulli (intercept)"], "log-loss"),
        ])
    text = [
        "# Random effects on top of gradient boosting: side by side",
        "",
        "One thread per library, each seed in one process. Figures are means over the seeds (times: medians), "
        "then per-seed comparisons (head to head); each part (regression, binary outcome) names the run it "
        "comes from. See the script's docstring for the simulation.",
        "",
        *[sections[part] for part in PARTS if part in sections],
    ]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
