"""The physical floor of a linear mixed model: one pass over the rows that forms
skmlm's statistics (validating the input, coding the groups, the cross-products of
``[Z X y]``), with no fit. Every fit must make this pass; the ratio of a fit's time to
it says how much the search costs on top. Gaussian and Bernoulli problems (for a
Bernoulli GLMM the same pass over the same rows: its 0/1 y taken as a number).
"""

from __future__ import annotations

from common import NotApplicable, reps_for, summary, time_fit

NAME = "floor"


def available():
    try:
        from skmlm import MixedLinearRegressor  # noqa: F401

        return True
    except Exception:
        return False


def unavailable_reason():
    return "skmlm not importable"


def fit(problem, reps=7, budget=90.0):
    import skmlm
    from bench_skmlm import estimator_kwargs

    if problem.family not in ("gaussian", "binomial") or problem.trials or problem.offset:
        raise NotApplicable("the floor is measured for linear and Bernoulli models only")
    df = problem.data
    X, y = df[list(problem.fixed)], df[problem.y]
    gcols = problem.group_columns
    groups = df[gcols[0]] if len(gcols) == 1 else df[gcols]
    est = skmlm.MixedLinearRegressor(reml=bool(problem.reml), **estimator_kwargs(problem))

    def one_pass():
        return est._statistics_of(est._prepare_fit(X, y, groups, None))

    reps, warmup = reps_for(problem, reps)
    _, times = time_fit(one_pass, reps, warmup, budget)
    return summary(float("nan"), times, note="one pass forming the statistics (no fit)")
