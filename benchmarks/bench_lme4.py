"""lme4 (R) adapter: runs a generated R script through ``Rscript``.

The data are written to a CSV in /tmp (not timed); R reads them, converts
the grouping columns to factors and then times ``lmer()`` / ``glmer()``
with ``system.time`` (elapsed), reporting the median over the repetitions and
R's ``logLik()`` of the fitted model.  R start-up and data loading are not
part of the figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from common import NotApplicable, reps_for

NAME = "lme4"
TMP_DIR = os.environ.get("SKMLM_BENCH_TMP", "/tmp/skmlm_bench")

_R_TEMPLATE = r"""
suppressMessages({library(lme4); library(jsonlite)})
args <- fromJSON("%(spec)s")
df <- read.csv(args$csv, colClasses = unlist(args$col_classes))
for (g in args$groups) df[[g]] <- factor(df[[g]])
form <- as.formula(args$formula)
fit_once <- function() {
  if (args$family == "gaussian") {
    lmer(form, data = df, REML = args$reml)
  } else {
    glmer(form, data = df, family = binomial, nAGQ = args$nAGQ)
  }
}
if (args$warmup) invisible(fit_once())
times <- c()
fit <- NULL
for (i in seq_len(args$reps)) {
  tt <- system.time(fit <- fit_once(), gcFirst = FALSE)[["elapsed"]]
  times <- c(times, tt)
  if (sum(times) > args$budget) break
}
out <- list(
  loglik = as.numeric(logLik(fit)),
  seconds = median(times),
  all_seconds = times,
  singular = isSingular(fit),
  lme4_version = as.character(packageVersion("lme4")),
  warnings = as.character(unlist(fit@optinfo$conv$lme4$messages))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), args$out)
"""

_AVAILABLE = None
_WRITTEN = set()


def available():
    """True when Rscript with lme4 and jsonlite can be run."""
    global _AVAILABLE
    if _AVAILABLE is None:
        if not shutil.which("Rscript"):
            _AVAILABLE = False
        else:
            try:
                r = subprocess.run(
                    ["Rscript", "-e", "suppressMessages({library(lme4); library(jsonlite)}); cat('ok')"],
                    capture_output=True, text=True, timeout=120,
                )
                _AVAILABLE = r.returncode == 0 and "ok" in r.stdout
            except Exception:
                _AVAILABLE = False
    return _AVAILABLE


def unavailable_reason():
    return "Rscript or the R packages lme4/jsonlite not installed"


def fit(problem, reps=7, budget=90.0):
    reps, warmup = reps_for(problem, reps)
    os.makedirs(TMP_DIR, exist_ok=True)
    df = problem.data
    cols = [problem.y] + list(problem.fixed) + problem.group_columns
    cols = list(dict.fromkeys(cols + [s for t in problem.random_terms for s in t.slopes]))
    csv = os.path.join(TMP_DIR, f"{problem.name}.csv")
    if csv not in _WRITTEN:  # written once per process, never reused across runs
        df[cols].to_csv(csv, index=False)
        _WRITTEN.add(csv)
    col_classes = {c: ("character" if c in problem.group_columns else "numeric") for c in cols}
    with tempfile.TemporaryDirectory(dir=TMP_DIR) as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        out_path = os.path.join(tmp, "out.json")
        script_path = os.path.join(tmp, "fit.R")
        spec = {
            "csv": csv,
            "col_classes": col_classes,
            "groups": problem.group_columns,
            "formula": problem.lme4_formula(),
            "family": problem.family,
            "reml": bool(problem.reml),
            "nAGQ": int(problem.nAGQ),
            "reps": int(reps),
            "warmup": bool(warmup),
            "budget": float(budget),
            "out": out_path,
        }
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        with open(script_path, "w") as fh:
            fh.write(_R_TEMPLATE % {"spec": spec_path})
        r = subprocess.run(["Rscript", script_path], capture_output=True, text=True, timeout=3600)
        if r.returncode != 0 or not os.path.exists(out_path):
            raise RuntimeError("Rscript failed: " + (r.stderr or r.stdout).strip().splitlines()[-1][:300])
        with open(out_path) as fh:
            out = json.load(fh)
    times = out["all_seconds"]
    if not isinstance(times, list):
        times = [times]
    return {
        "loglik": float(out["loglik"]),
        "seconds": float(out["seconds"]),
        "min_seconds": min(float(t) for t in times),
        "reps": len(times),
        "all_seconds": [float(t) for t in times],
        "note": "singular fit" if out.get("singular") else "",
    }
