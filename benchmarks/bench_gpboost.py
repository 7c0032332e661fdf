"""GPBoost ``GPModel`` adapter (binomial problems only).

``GPModel(group_data=..., likelihood="bernoulli_logit")`` fitted with its
default optimiser; the reported log-likelihood is minus
``get_current_neg_log_likelihood()``, GPBoost's Laplace approximation of the
marginal likelihood (comparable to lme4 ``glmer(nAGQ=1)``).

Not applicable:
* gaussian problems (out of scope for this comparison);
* nAGQ > 1 (GPBoost has no adaptive Gauss-Hermite quadrature);
* correlated random slopes (GPBoost random coefficients are independent of
  the random intercept, i.e. only lme4 ``(x || g)``);
* several grouping factors with slopes.
"""

from __future__ import annotations

import numpy as np

from common import NotApplicable, reps_for, summary, time_fit

NAME = "gpboost"


def available():
    try:
        import gpboost  # noqa: F401

        return True
    except Exception:
        return False


def unavailable_reason():
    return "gpboost not installed"


def fit(problem, reps=7, budget=90.0):
    import gpboost as gpb

    if problem.family != "binomial":
        raise NotApplicable("binomial problems only in this comparison")
    if problem.nAGQ > 1:
        raise NotApplicable("no adaptive Gauss-Hermite quadrature (Laplace only)")
    df = problem.data
    gcols = problem.group_columns
    slope_terms = [t for t in problem.random_terms if t.slopes]
    if any(t.intercept and t.slopes for t in problem.random_terms):
        raise NotApplicable("no correlated random slopes (independent only)")
    if any(not t.intercept for t in problem.random_terms):
        # (x || g): intercept term + independent slope term on the same factor
        if len(gcols) > 1:
            raise NotApplicable("slopes with several grouping factors")
    y = df[problem.y].to_numpy(dtype=float)
    cols = [df[c].to_numpy(dtype=float) for c in problem.fixed]
    if problem.fit_intercept:
        cols = [np.ones(len(df))] + cols
    X = np.column_stack(cols) if cols else None
    group_data = df[gcols].to_numpy()
    kwargs = {}
    if slope_terms:
        slopes = [s for t in slope_terms for s in t.slopes]
        kwargs["group_rand_coef_data"] = df[slopes].to_numpy(dtype=float)
        kwargs["ind_effect_group_rand_coef"] = [1] * len(slopes)

    def fit_once():
        m = gpb.GPModel(group_data=group_data, likelihood="bernoulli_logit", **kwargs)
        if X is None:
            raise NotApplicable("model without fixed effects")
        m.fit(y=y, X=X)
        return m

    reps, warmup = reps_for(problem, reps)
    m, times = time_fit(fit_once, reps, warmup, budget)
    return summary(-float(m.get_current_neg_log_likelihood()), times)
