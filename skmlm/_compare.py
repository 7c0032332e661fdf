"""Likelihood-ratio comparison of fitted mixed models, as lme4's ``anova``."""

import copy
import warnings

import numpy as np
import pandas as pd
from scipy.stats import chi2
from sklearn.utils.validation import check_is_fitted

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)", "method"]


def _method(model):
    if hasattr(model, "family_"):
        k = model.n_quadrature_points
        return "Laplace" if k == 1 else f"AGQ({k})"
    return "REML" if model.reml else "ML"


def _refit_ml(model, name):
    """A copy of a REML fit refitted by ML on the statistics it was fitted to (lme4's
    ``refitML``): no rows needed, so it works after unpickling too."""
    statistics = getattr(model, "statistics_", None)
    if statistics is None:
        raise ValueError(
            f"model {name!r} was fitted by REML and compare_models must refit it by ML (REML likelihoods "
            "of models with different fixed effects are not comparable), but it has no statistics_ (a model "
            "fitted by an older version). Refit it yourself with model.set_params(reml=False).fit(X, y, "
            "groups=...), or pass refit=False when all models have the same fixed effects"
        )
    ml = copy.copy(model)
    ml.reml = False
    return ml._fit_statistics(statistics)


def compare_models(*models, names=None, refit=True):
    """Compare fitted mixed models by likelihood-ratio tests and information criteria.

    The table of lme4's ``anova(m1, m2, ...)``: for every model its number of
    parameters, AIC, BIC, log-likelihood and deviance, and for every model after the
    first a likelihood-ratio test against the model in the row before it:
    ``Chisq = 2 * (logLik - logLik_before)`` (the larger model minus the smaller, at
    least 0) on ``Df`` = the difference in the number of parameters, with the
    chi-square upper-tail probability. The test is meaningful for nested models only.

    Parameters
    ----------
    *models : fitted MixedLinearRegressor, MixedLogisticClassifier or MixedGLMRegressor
        All linear mixed models, or all GLMMs (of any families: Poisson against NB2 is
        a likelihood-ratio test of overdispersion), fitted to the same rows. Rows of
        the table are ordered by the number of parameters, as lme4's ``anova``.
    names : list of str, default=None
        Row labels; default ``model1``, ``model2``, ...
    refit : bool, default=True
        As lme4's ``anova(..., refit=TRUE)``: every model fitted by REML is refitted by
        ML before comparing (REML likelihoods of models that differ in their fixed
        effects are not comparable). The refit uses a copy of the estimator with
        ``reml=False`` on the statistics the model was fitted to (``statistics_``: no rows
        needed, so it works on unpickled models); the models passed are not changed. The ``method``
        column then reads ``ML (refit)``. With ``refit=False`` the likelihoods are used
        as fitted, with a warning when REML fits differ in fixed effects or REML and ML
        fits are mixed (compare random-effect structures of REML fits with the same
        fixed effects this way).

    Returns
    -------
    DataFrame
        Columns ``npar``, ``AIC``, ``BIC``, ``logLik``, ``deviance``, ``Chisq``, ``Df``,
        ``Pr(>Chisq)`` (as lme4) and ``method`` (``ML``, ``ML (refit)``, ``REML``,
        ``Laplace`` or ``AGQ(k)``); one row per model, ordered by the number of
        parameters as lme4's ``anova`` (ties in the order given), so ``Df`` is never
        negative. ``Pr(>Chisq)`` is NaN when ``Df`` is 0. ``attrs["notes"]`` lists what was done
        (refits).

    See Also
    --------
    tab_models : the estimates of several models side by side.

    Notes
    -----
    The p-value of a test that a variance is zero (a random slope, say) is
    conservative: the null value lies on the boundary of the parameter space, and the
    statistic follows a mixture of chi-squares rather than a chi-square (Self & Liang
    1987); halving the p-value of a one-variance test is a common correction. lme4 does
    not correct it either.

    Examples
    --------
    >>> from skmlm import MixedLinearRegressor, compare_models
    >>> from skmlm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    >>> m0 = MixedLinearRegressor().fit(X, y, groups=g)
    >>> m1 = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    >>> table = compare_models(m0, m1, names=["intercept", "slope"])
    >>> table[["npar", "Chisq", "Df"]].round(2)
               npar  Chisq   Df
    intercept     4    NaN  NaN
    slope         6  42.14  2.0
    """
    models, names = fitted_models(models, names, "compare_models")
    # GLMMs of any family compare (full log-likelihoods of the same response, constants
    # included, as glmmTMB's); a linear model's criterion only with linear models
    if len({hasattr(m, "family_") for m in models}) > 1:
        raise ValueError("compare_models: the models mix linear mixed models with GLMMs; compare models of one "
                         "kind (linear with linear, GLMMs of any family with GLMMs)")
    if len(names) != len(models):
        raise ValueError(f"{len(names)} names for {len(models)} models")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be unique; got {names}")
    n_obs = [m._fit_info["n_obs"] for m in models]
    if len(set(n_obs)) > 1:
        raise ValueError(f"models were not all fitted to the same number of rows: {n_obs}")

    methods = [_method(m) for m in models]
    notes = []
    reml = [mth == "REML" for mth in methods]
    if any(reml):
        if refit:
            models = list(models)
            for i in np.flatnonzero(reml):
                models[i] = _refit_ml(models[i], names[i])
                methods[i] = "ML (refit)"
            notes.append("refitted model(s) " + ", ".join(names[i] for i in np.flatnonzero(reml))
                         + " by ML (instead of REML)")
        else:
            if not all(reml):
                warnings.warn("some models were fitted by REML and some by ML: their likelihoods are not "
                              "comparable; use refit=True", UserWarning, stacklevel=2)
            fixed = {tuple(m._fixed_names) for m, r in zip(models, reml) if r}
            if len(fixed) > 1:
                warnings.warn("REML fits with different fixed effects: their REML likelihoods are not "
                              "comparable; use refit=True", UserWarning, stacklevel=2)

    # lme4's anova: rows by the number of parameters (ties in the order given), so every
    # test compares a model with the smaller one before it
    order = np.argsort([m.n_params_ for m in models], kind="stable")
    if np.any(order != np.arange(len(models))):
        notes.append("models ordered by their number of parameters (as lme4's anova)")
    models, names, methods = [models[i] for i in order], [names[i] for i in order], [methods[i] for i in order]
    npar = np.array([m.n_params_ for m in models], dtype=int)
    llk = np.array([m.log_likelihood_ for m in models], dtype=float)
    n = n_obs[0]
    dev = -2.0 * llk
    df = pd.DataFrame(
        {"npar": npar, "AIC": dev + 2 * npar, "BIC": dev + np.log(n) * npar, "logLik": llk, "deviance": dev},
        index=pd.Index(names),
    )
    dpar = np.r_[np.nan, np.diff(npar)].astype(float)
    dllk = np.r_[np.nan, np.diff(llk)]
    stat = 2.0 * np.maximum(0.0, dllk)  # the larger model minus the smaller, at least 0
    stat[0] = np.nan
    with np.errstate(invalid="ignore"):
        p = np.where(dpar == 0, np.nan, chi2.sf(stat, dpar))
    p[0] = np.nan
    df["Chisq"] = stat
    df["Df"] = dpar
    df["Pr(>Chisq)"] = p
    df["method"] = methods
    df.attrs["notes"] = notes
    return df[COLUMNS]


def fitted_models(models, names, caller):
    """The fitted skmlm estimators among ``models`` (or one list of them), and their names."""
    from ._generalized import GeneralizedMixin
    from ._linear import MixedLinearRegressor

    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if not models:
        raise ValueError(f"{caller} needs at least one fitted model")
    for m in models:
        if not isinstance(m, (MixedLinearRegressor, GeneralizedMixin)):
            raise TypeError(
                "expected fitted MixedLinearRegressor, MixedLogisticClassifier or MixedGLMRegressor models; got "
                f"{type(m).__name__}"
            )
        check_is_fitted(m)
    if names is None:
        names = [f"model{i + 1}" for i in range(len(models))]
    return tuple(models), [str(n) for n in names]
