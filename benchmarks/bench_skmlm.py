"""skmlm adapter.

Gaussian problems: ``MixedLinearRegressor(random_slopes={group: slopes},
covariance=..., reml=..., fit_intercept=...).fit(X, y, groups=...)`` with
``X = df[fixed]`` (possibly zero columns) and ``groups = df[grouping
columns]``.  A grouping column carrying several terms (lme4 ``(x || g)``)
maps to ``covariance="diagonal"``.  Binomial problems use
``MixedLogisticClassifier`` when the installed skmlm has it (its quadrature
argument is looked up by name), otherwise they are n/a.

GLMM family problems (``problem.is_family``: Poisson, negative binomial,
Gamma, binomial with trials or with an offset) use ``MixedGLMRegressor(
family=..., link=..., n_quadrature_points=nAGQ, random_slopes=...)`` and
``fit(X, y, groups=..., sample_weight=trials, offset=offset)`` (binomial with
trials: ``y`` the proportion, ``sample_weight`` the trials); ``dispersion_``
(NB2 theta, Gamma phi) is reported next to the logLik.  An skmlm without
``MixedGLMRegressor`` is an error for these problems (the run goes on).
"""

from __future__ import annotations

import inspect

from common import NotApplicable, reps_for, summary, time_fit

NAME = "skmlm"


_IMPORT_ERROR = []


def available():
    try:
        import skmlm  # noqa: F401
        from skmlm import MixedLinearRegressor  # noqa: F401

        return True
    except Exception as e:
        _IMPORT_ERROR[:] = [f"{type(e).__name__}: {str(e)[:150]}"]
        return False


def unavailable_reason():
    return "skmlm not importable (pip install -e .)" + (f": {_IMPORT_ERROR[0]}" if _IMPORT_ERROR else "")


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
    fit_kwargs = {}
    if getattr(problem, "is_family", False):
        cls = getattr(skmlm, "MixedGLMRegressor", None)
        if cls is None:
            raise RuntimeError("skmlm has no MixedGLMRegressor (GLMM families not in this skmlm yet)")
        kwargs.update(family=problem.family, link=problem.link, n_quadrature_points=int(problem.nAGQ))
        if problem.trials:
            fit_kwargs["sample_weight"] = df[problem.trials]
        if problem.offset:
            fit_kwargs["offset"] = df[problem.offset]
    elif problem.family == "gaussian":
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
    init_params = inspect.signature(cls.__init__).parameters
    if "family" in kwargs and "family" not in init_params:
        raise RuntimeError(f"{cls.__name__} takes no family argument")
    kwargs = {k: v for k, v in kwargs.items() if k in init_params}

    if fit_kwargs:
        params = inspect.signature(cls.fit).parameters
        missing = [k for k in fit_kwargs if k not in params
                   and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())]
        if missing:
            raise RuntimeError(f"{cls.__name__}.fit takes no {missing}")

    def fit_once():
        return cls(**kwargs).fit(X, y, groups=groups, **fit_kwargs)

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
    extra = {}
    if problem.family in ("negative_binomial", "gamma") and getattr(m, "dispersion_", None) is not None:
        extra["dispersion"] = float(m.dispersion_)
    return summary(float(m.log_likelihood_), times, note=note, **extra)
