"""lme4 (R) adapter: runs a generated R script through ``Rscript``.

The data are written to a CSV in /tmp (not timed); R reads them, converts
the grouping columns to factors and then times ``lmer()`` / ``glmer()``
with ``system.time`` (elapsed), reporting the median over the repetitions and
R's ``logLik()`` of the fitted model.  R start-up and data loading are not
part of the figure.

Families: gaussian ``lmer(REML=)``; binomial ``glmer(family=binomial,
nAGQ=)`` (with trials: ``y`` a proportion, ``weights=`` the trials); poisson
``glmer(family=poisson)``; negative binomial ``glmer.nb()`` (theta by lme4's
outer search).  An offset goes into the formula as ``+ offset(col)``.
Gamma is n/a: glmer's Gamma fit does not estimate the dispersion by maximum
likelihood and its ``logLik()`` is not the ML criterion (above glmmTMB's
maximum on ``gamma_log_ri``); ``bench_glmmtmb.py`` fits it.

``run_r_script`` is shared with ``bench_glmmtmb.py``.
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

# %(libraries)s, %(fit_body)s (the body of fit_once(), using df, form, wts and
# args) and %(extras)s (a list() expression evaluated on the last fit) are
# filled in per package.
_R_TEMPLATE = r"""
suppressMessages({%(libraries)s; library(jsonlite)})
args <- fromJSON("%(spec)s")
df <- read.csv(args$csv, colClasses = unlist(args$col_classes))
for (g in args$groups) df[[g]] <- factor(df[[g]])
form <- as.formula(args$formula)
# binomial trials (NULL otherwise); a top-level variable, where model.frame looks for it
wts <- if (is.null(args$trials)) NULL else df[[args$trials]]
fit_once <- function() {
%(fit_body)s
}
if (args$warmup) invisible(fit_once())
times <- c()
fit <- NULL
for (i in seq_len(args$reps)) {
  tt <- system.time(fit <- fit_once(), gcFirst = FALSE)[["elapsed"]]
  times <- c(times, tt)
  if (sum(times) > args$budget) break
}
out <- c(list(
  loglik = as.numeric(logLik(fit)),
  seconds = median(times),
  all_seconds = times
), %(extras)s)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), args$out)
"""

_LME4_BODY = r"""
  if (args$family == "gaussian") {
    lmer(form, data = df, REML = args$reml)
  } else if (args$family == "binomial") {
    glmer(form, data = df, family = binomial(link = args$link), nAGQ = args$nAGQ, weights = wts)
  } else if (args$family == "poisson") {
    glmer(form, data = df, family = poisson(link = args$link), nAGQ = args$nAGQ)
  } else if (args$family == "negative_binomial") {
    glmer.nb(form, data = df, nAGQ = args$nAGQ)
  } else stop("family not supported: ", args$family)
"""

_LME4_EXTRAS = r"""list(
  singular = isSingular(fit),
  dispersion = if (args$family == "negative_binomial") getME(fit, "glmer.nb.theta") else NULL,
  warnings = as.character(unlist(fit@optinfo$conv$lme4$messages))
)"""

_AVAILABLE = {}
_WRITTEN = set()


def r_available(packages):
    """True when Rscript can load the R packages (and jsonlite)."""
    key = tuple(packages)
    if key not in _AVAILABLE:
        ok = False
        if shutil.which("Rscript"):
            libs = "; ".join(f"library({p})" for p in list(packages) + ["jsonlite"])
            try:
                r = subprocess.run(["Rscript", "-e", f"suppressMessages({{{libs}}}); cat('ok')"],
                                   capture_output=True, text=True, timeout=120)
                ok = r.returncode == 0 and "ok" in r.stdout
            except Exception:
                ok = False
        _AVAILABLE[key] = ok
    return _AVAILABLE[key]


def available():
    """True when Rscript with lme4 and jsonlite can be run."""
    return r_available(["lme4"])


def unavailable_reason():
    return "Rscript or the R packages lme4/jsonlite not installed"


def write_csv(problem):
    """The problem's columns as a CSV in TMP_DIR (once per process); returns
    (path, {column: R class})."""
    os.makedirs(TMP_DIR, exist_ok=True)
    df = problem.data
    cols = [problem.y] + list(problem.fixed) + problem.group_columns
    cols += [s for t in problem.random_terms for s in t.slopes]
    cols += [c for c in (getattr(problem, "offset", None), getattr(problem, "trials", None)) if c]
    cols = list(dict.fromkeys(cols))
    csv = os.path.join(TMP_DIR, f"{problem.name}.csv")
    if csv not in _WRITTEN:  # written once per process, never reused across runs
        df[cols].to_csv(csv, index=False)
        _WRITTEN.add(csv)
    return csv, {c: ("character" if c in problem.group_columns else "numeric") for c in cols}


def run_r_script(problem, reps, budget, libraries, fit_body, extras):
    """Write the data and a generated R script, run it with Rscript and return
    its JSON output (loglik, seconds, all_seconds and the ``extras``)."""
    reps, warmup = reps_for(problem, reps)
    csv, col_classes = write_csv(problem)
    formula = problem.r_formula() if hasattr(problem, "r_formula") else problem.lme4_formula()
    with tempfile.TemporaryDirectory(dir=TMP_DIR) as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        out_path = os.path.join(tmp, "out.json")
        script_path = os.path.join(tmp, "fit.R")
        spec = {
            "csv": csv,
            "col_classes": col_classes,
            "groups": problem.group_columns,
            "formula": formula,
            "family": problem.family,
            "link": getattr(problem, "link_name", None),
            "trials": getattr(problem, "trials", None),
            "reml": bool(problem.reml),
            "nAGQ": int(problem.nAGQ),
            "reps": int(reps),
            "warmup": bool(warmup),
            "budget": float(budget),
            "out": out_path,
        }
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        libs = "; ".join(f"library({p})" for p in libraries)
        with open(script_path, "w") as fh:
            fh.write(_R_TEMPLATE % {"spec": spec_path, "libraries": libs, "fit_body": fit_body, "extras": extras})
        r = subprocess.run(["Rscript", script_path], capture_output=True, text=True, timeout=3600)
        if r.returncode != 0 or not os.path.exists(out_path):
            msg = (r.stderr or r.stdout).strip().splitlines()
            err = [m for m in msg if m.startswith("Error")] or msg[-1:]
            raise RuntimeError("Rscript failed: " + (" ".join(err)[:300] if err else f"exit code {r.returncode}"))
        with open(out_path) as fh:
            out = json.load(fh)
    times = out["all_seconds"]
    if not isinstance(times, list):
        times = [times]
    out["all_seconds"] = [float(t) for t in times]
    return out


def result(out, note=""):
    times = out["all_seconds"]
    res = {
        "loglik": float(out["loglik"]),
        "seconds": float(out["seconds"]),
        "min_seconds": min(times),
        "reps": len(times),
        "all_seconds": times,
        "note": note,
    }
    if out.get("dispersion") not in (None, [], {}):
        res["dispersion"] = float(out["dispersion"])
    return res


def fit(problem, reps=7, budget=90.0):
    if problem.family == "gamma":
        raise NotApplicable("glmer's Gamma fit: dispersion not estimated by ML, logLik() not the ML criterion "
                            "(see glmmTMB)")
    if problem.family not in ("gaussian", "binomial", "poisson", "negative_binomial"):
        raise NotApplicable(f"family {problem.family}")
    out = run_r_script(problem, reps, budget, ["lme4"], _LME4_BODY, _LME4_EXTRAS)
    notes = []
    if problem.family == "negative_binomial":
        notes.append("glmer.nb: Laplace with expected (Fisher) weights for the non-canonical log link, "
                     "a different approximation from the exact-Hessian one of glmmTMB/gpboost")
    if out.get("singular"):
        notes.append("singular fit")
    return result(out, "; ".join(notes))
