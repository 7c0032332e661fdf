"""skmlm adapter.

Gaussian problems: ``MixedLinearRegressor(random_slopes={group: slopes},
covariance=..., reml=..., fit_intercept=...).fit(X, y, groups=...)`` with
``X = df[fixed]`` (possibly zero columns) and ``groups = df[grouping
columns]``.  A grouping column carrying several terms (lme4 ``(x || g)``)
maps to ``covariance="diagonal"``.  Binomial problems use
``MixedLogisticClassifier`` when the installed skmlm has it (its quadrature
argument is looked up by name), otherwise they are n/a.
"""

from __future__ import annotations

import inspect

from common import NotApplicable, reps_for, summary, time_fit

NAME = "skmlm"


def available():
    try:
        import skmlm  # noqa: F401
        from skmlm import MixedLinearRegressor  # noqa: F401

        return True
    except Exception:
        return False


def unavailable_reason():
    return "skmlm not importable (pip install -e .)"


def estimator_kwargs(problem):
    """Constructor arguments shared by the linear and logistic estimators."""
    gcols = problem.group_columns
    intercept_by_group = {g: any(t.intercept for t in problem.random_terms if t.group == g) for g in gcols}
    if len(set(intercept_by_group.values())) > 1:
        raise NotApplicable("random intercept on some factors only")
    covariance = "unstructured"
    if problem.is_diagonal:
        for g in gcols:
            ts = [t for t in problem.random_terms if t.group == g]
            if len(ts) > 1 and any(int(t.intercept) + len(t.slopes) != 1 for t in ts):
                raise NotApplicable("partly correlated terms on one factor")
        if len(gcols) > 1:
            # skmlm's covariance applies to every factor: only OK if the other
            # factors have a single column each (diagonal == unstructured there)
            for g in gcols:
                ts = [t for t in problem.random_terms if t.group == g]
                if len(ts) == 1 and int(ts[0].intercept) + len(ts[0].slopes) > 1:
                    raise NotApplicable("diagonal and unstructured factors mixed")
        covariance = "diagonal"
    slopes = {g: s for g, s in problem.slopes_by_group().items() if s}
    return dict(
        random_slopes=slopes or None,
        random_intercept=all(intercept_by_group.values()),
        covariance=covariance,
        fit_intercept=problem.fit_intercept,
    )



def build(problem):
    import skmlm

    df = problem.data
    X = df[list(problem.fixed)]
    y = df[problem.y]
    gcols = problem.group_columns
    groups = df[gcols[0]] if len(gcols) == 1 else df[gcols]
    kwargs = estimator_kwargs(problem)
    if problem.family == "gaussian":
        cls = skmlm.MixedLinearRegressor
        kwargs["reml"] = bool(problem.reml)
    elif problem.family == "binomial":
        cls = getattr(skmlm, "MixedLogisticClassifier", None)
        if cls is None:
            raise NotApplicable("MixedLogisticClassifier not in this skmlm yet")
        params = inspect.signature(cls.__init__).parameters
        agq = [p for p in params if p.lower() in ("nagq", "n_agq", "agq", "n_quadrature_points", "quadrature_points")]
        if agq:
            kwargs[agq[0]] = int(problem.nAGQ)
        elif problem.nAGQ > 1:
            raise NotApplicable("no nAGQ argument (Laplace only)")
    else:
        raise NotApplicable(f"family {problem.family}")
    kwargs = {k: v for k, v in kwargs.items() if k in inspect.signature(cls.__init__).parameters}

    def fit_once():
        return cls(**kwargs).fit(X, y, groups=groups)

    return fit_once


def fit(problem, reps=7, budget=90.0):
    fit_once = build(problem)
    reps, warmup = reps_for(problem, reps)
    m, times = time_fit(fit_once, reps, warmup, budget)
    note = ""
    if not getattr(m, "converged_", True):
        note = "not converged"
    elif getattr(m, "singular_", False):
        note = "singular fit"
    return summary(float(m.log_likelihood_), times, note=note)
