"""mixedlm (PyPI, Rust-backed port of lme4) adapter.

Uses the lme4 formula interface, ``mixedlm.lmer(formula, data, REML=...)``
and ``mixedlm.glmer(formula, data, family=Binomial(), nAGQ=...)``.  The
grouping columns are strings in the DataFrame, as in lme4.  ``logLik()``
returns a float subclass (REML log-likelihood for REML fits, like lme4; for
GLMMs the Laplace / AGQ log-likelihood with the density's constants).

Families: ``Binomial`` (with trials: ``y`` a proportion and ``weights=`` the
trials, as lme4's glmer) and ``Poisson``, an offset as ``offset=`` (an
array).  Not applicable: negative binomial (``glmer_nb`` / ``NegativeBinomial``
hold theta fixed at a given value, 1 by default: no ML estimate of theta) and
Gamma (the GLMM's dispersion is fixed at 1, ``sigma`` = 1, so the fit and its
logLik are not the ML Gamma GLMM).
"""

from __future__ import annotations

from common import NotApplicable, reps_for, summary, time_fit

NAME = "mixedlm"


def available():
    try:
        import mixedlm  # noqa: F401

        return True
    except Exception:
        return False


def unavailable_reason():
    return "mixedlm not installed (pip install mixedlm)"


def fit(problem, reps=7, budget=90.0):
    import mixedlm as mlm

    reps, warmup = reps_for(problem, reps)
    df = problem.data
    formula = problem.lme4_formula()
    if problem.family == "gaussian":
        def fit_once():
            return mlm.lmer(formula, df, REML=bool(problem.reml))
    elif problem.family in ("binomial", "poisson"):
        link = getattr(problem, "link", None)
        fam = (mlm.families.Binomial if problem.family == "binomial" else mlm.families.Poisson)(link)
        kwargs = {}
        if getattr(problem, "offset", None):
            kwargs["offset"] = df[problem.offset].to_numpy(dtype=float)
        if getattr(problem, "trials", None):
            kwargs["weights"] = df[problem.trials].to_numpy(dtype=float)

        def fit_once():
            return mlm.glmer(formula, df, family=fam, nAGQ=int(problem.nAGQ), **kwargs)
    elif problem.family == "negative_binomial":
        raise NotApplicable("glmer_nb holds theta fixed (given, default 1): no ML estimate of theta")
    elif problem.family == "gamma":
        raise NotApplicable("Gamma GLMM with the dispersion fixed at 1 (sigma = 1): not the ML fit")
    else:
        raise NotApplicable(f"family {problem.family}")
    res, times = time_fit(fit_once, reps, warmup, budget)
    note = ""
    try:
        if not res.converged:
            note = "not converged"
        elif res.isSingular():
            note = "singular fit"
    except Exception:
        pass
    return summary(float(res.logLik()), times, note=note)
