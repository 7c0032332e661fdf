"""mixedlm (PyPI, Rust-backed port of lme4) adapter.

Uses the lme4 formula interface, ``mixedlm.lmer(formula, data, REML=...)``
and ``mixedlm.glmer(formula, data, family=Binomial(), nAGQ=...)``.  The
grouping columns are strings in the DataFrame, as in lme4.  ``logLik()``
returns a float subclass (REML log-likelihood for REML fits, like lme4).
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
    elif problem.family == "binomial":
        fam = mlm.families.Binomial()

        def fit_once():
            return mlm.glmer(formula, df, family=fam, nAGQ=int(problem.nAGQ))
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
