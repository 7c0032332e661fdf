"""statsmodels ``MixedLM`` adapter (gaussian only).

Mapping of the problem's random terms onto statsmodels:

* one grouping factor, one term: ``groups=g``, ``exog_re = [1, slopes]``
  (unstructured covariance, like lme4 ``(1 + x | g)``);
* one grouping factor with several terms (lme4 ``(x || g)``): the first
  term goes to ``exog_re``, every other term becomes an independent variance
  component per slope column (``exog_vc``), i.e. a diagonal covariance;
* several intercept-only factors, all nested in one outer factor (Pastes):
  ``groups=outer``, random intercept plus one variance component per inner
  factor;
* crossed intercept-only factors (Penicillin): one all-ones group with one
  variance component per factor, the documented statsmodels recipe.  This
  builds dense per-group design blocks, so it is capped: crossed problems with
  more than ``MAX_CROSSED_LEVELS`` levels, or any problem over ``MAX_ROWS``
  rows, are recorded as "n/a (too slow)".

``result.llf`` is the REML log-likelihood for REML fits.  Each fit uses
statsmodels' default optimiser cascade (``method=['bfgs', 'lbfgs', 'cg']``).
Binomial and the other GLMM family problems are n/a (statsmodels'
``BinomialBayesMixedGLM`` / ``PoissonBayesMixedGLM`` are variational Bayes /
posterior-mode fits, not marginal-likelihood fits; it has no negative
binomial or Gamma GLMM).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from common import NotApplicable, reps_for, summary, time_fit

NAME = "statsmodels"
MAX_ROWS = 100_000
MAX_CROSSED_LEVELS = 500


def available():
    try:
        import statsmodels.api  # noqa: F401

        return True
    except Exception:
        return False


def unavailable_reason():
    return "statsmodels not installed"


def _exog(problem, df):
    cols = list(problem.fixed)
    X = df[cols].to_numpy(dtype=float) if cols else np.empty((len(df), 0))
    if problem.fit_intercept:
        X = np.column_stack([np.ones(len(df)), X])
    if X.shape[1] == 0:
        raise NotApplicable("no fixed effects at all")
    return X


def _vc_blocks(df, group_codes, n_groups, cols_by_name):
    """exog_vc dict: {name: {group_label: (n_i x q) array}}."""
    out = {}
    order = np.argsort(group_codes, kind="stable")
    bounds = np.searchsorted(group_codes[order], np.arange(n_groups + 1))
    for name, mat in cols_by_name.items():
        blocks = {}
        for k in range(n_groups):
            idx = order[bounds[k]:bounds[k + 1]]
            blocks[k] = mat[idx]
        out[name] = blocks
    return out


def build(problem):
    """Return a callable that constructs and fits the statsmodels model."""
    import statsmodels.api as sm

    if problem.family != "gaussian":
        if getattr(problem, "is_family", False):
            raise NotApplicable("no maximum-likelihood GLMM in statsmodels (Poisson/BinomialBayesMixedGLM "
                                "are variational Bayes)")
        raise NotApplicable("no marginal-likelihood binomial GLMM in statsmodels")
    df = problem.data
    if len(df) > MAX_ROWS:
        raise NotApplicable(f"too slow (> {MAX_ROWS:,} rows)")
    y = df[problem.y].to_numpy(dtype=float)
    X = _exog(problem, df)
    gcols = problem.group_columns
    terms = problem.random_terms

    def term_matrix(t):
        cols = ([np.ones(len(df))] if t.intercept else []) + [df[s].to_numpy(dtype=float) for s in t.slopes]
        return np.column_stack(cols)

    if len(gcols) == 1:
        g = gcols[0]
        groups = df[g].to_numpy()
        if len(terms) == 1:
            Z = term_matrix(terms[0])
            return lambda: sm.MixedLM(y, X, groups=groups, exog_re=Z).fit(reml=problem.reml)
        # diagonal: first term in exog_re, each further column a variance component
        Z = term_matrix(terms[0])
        codes, uniq = pd.factorize(df[g])
        vc_cols = {}
        for t in terms[1:]:
            if t.intercept:
                vc_cols[f"{t.group}_int{len(vc_cols)}"] = np.ones((len(df), 1))
            for s in t.slopes:
                vc_cols[s] = df[[s]].to_numpy(dtype=float)
        exog_vc = _vc_blocks(df, codes, len(uniq), vc_cols)
        return lambda: sm.MixedLM(y, X, groups=codes, exog_re=Z, exog_vc=exog_vc).fit(reml=problem.reml)

    if any(t.slopes or not t.intercept for t in terms):
        raise NotApplicable("random slopes on several grouping factors")
    outer = problem.outer_factor()
    if outer is None:
        levels = sum(problem.n_levels().values())
        if levels > MAX_CROSSED_LEVELS:
            raise NotApplicable(f"too slow (crossed, {levels:,} levels > {MAX_CROSSED_LEVELS})")
        outer_codes = np.zeros(len(df), dtype=int)
        n_outer = 1
        inner = gcols
        Z = None
    else:
        outer_codes, u = pd.factorize(df[outer])
        n_outer = len(u)
        inner = [g for g in gcols if g != outer]
        Z = np.ones((len(df), 1))
    vc_cols = {}
    for g in inner:
        codes, uniq = pd.factorize(df[g])
        vc_cols[g] = (codes, len(uniq))
    order = np.argsort(outer_codes, kind="stable")
    bounds = np.searchsorted(outer_codes[order], np.arange(n_outer + 1))
    exog_vc = {}
    for g, (codes, _) in vc_cols.items():
        blocks = {}
        for k in range(n_outer):
            idx = order[bounds[k]:bounds[k + 1]]
            c = codes[idx]
            lv = np.unique(c)
            blocks[k] = (c[:, None] == lv[None, :]).astype(float)
        exog_vc[g] = blocks
    if Z is None:
        return lambda: sm.MixedLM(y, X, groups=outer_codes, exog_vc=exog_vc).fit(reml=problem.reml)
    return lambda: sm.MixedLM(y, X, groups=outer_codes, exog_re=Z, exog_vc=exog_vc).fit(reml=problem.reml)


def fit(problem, reps=7, budget=90.0):
    fit_once = build(problem)
    reps, warmup = reps_for(problem, reps)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res, times = time_fit(fit_once, reps, warmup, budget)
    note = ""
    if not getattr(res, "converged", True):
        note = "not converged"
    elif any("boundary" in str(x.message).lower() for x in w):
        note = "boundary warning"
    return summary(float(res.llf), times, note=note)
