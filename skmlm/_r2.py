"""Explained variance of mixed models: Nakagawa's R^2, the ICC and the reduction in variance.

* :func:`r2_nakagawa`: marginal and conditional R^2 of Nakagawa, Johnson & Schielzeth
  (2017), computed as R's ``performance::r2_nakagawa`` (insight's ``get_variance``);
* :func:`variance_reduction`: the proportional reduction in the variance at level 1, at
  level 2 and overall against a null model (Raudenbush & Bryk; Snijders & Bosker).
"""

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ._base import choose_factor
from ._input import INTERCEPT
from ._threads import single_blas_thread

#: Variance of the standard logistic distribution: the level-1 variance on the latent scale.
LOGISTIC_VARIANCE = np.pi**2 / 3
#: The latent-scale level-1 variance of the binomial links (the variance of the link's
#: standard distribution: logistic, normal, Gumbel).
BINOMIAL_LINK_VARIANCE = {"logit": LOGISTIC_VARIANCE, "probit": 1.0, "cloglog": np.pi**2 / 6}


def _is_generalized(model):
    return hasattr(model, "family_")


def _check_model(model):
    from ._generalized import GeneralizedMixin
    from ._linear import MixedLinearRegressor

    if not isinstance(model, (MixedLinearRegressor, GeneralizedMixin)):
        raise TypeError(
            "expected a fitted MixedLinearRegressor, MixedLogisticClassifier or MixedGLMRegressor; got "
            f"{type(model).__name__}"
        )
    check_is_fitted(model)
    if not hasattr(model, "_var_fixed"):
        raise ValueError(
            "this model was fitted by a version of skmlm that did not record the variance of its fixed "
            "part; fit it again"
        )


def _null_model_mean(model):
    """``exp(intercept)`` of the null model: the same random effects, offset and weights,
    the fixed part an intercept alone (insight's ``null_model``); refitted on first use."""
    from ._core.glmm import GeneralizedMixedModel, fit_glmm

    cache = model._cache()
    if "null_mean" not in cache:
        d = model._inference_data
        ones = np.ones((len(d["y"]), 1))
        null = GeneralizedMixedModel(d["factors"], ones, d["y"], d["w"], d["family"], d["offset"])
        with single_blas_thread():
            opt = fit_glmm(null)
        cache["null_mean"] = float(np.exp(null.split(opt.x)[1][0]))
    return cache["null_mean"]


def _observation_level(model):
    """The random-intercept factors with one level per row (observation-level effects)."""
    n = model._fit_info["n_obs"]
    return {f for f, k in model.n_groups_.items() if k == n and list(model.random_covariance_[f].index) == [INTERCEPT]}


def distribution_variance(model):
    """The level-1 variance on the link scale of a GLMM (Nakagawa et al. 2017), as R's
    ``insight::get_variance`` computes it: the binomial link's standard distribution
    (``pi^2 / 3`` for the logit); for the log link of counts, the lognormal approximation
    ``log(1 + V(mu) / mu^2)`` at ``mu = exp(intercept of the null model)``; for the
    Gamma, ``phi`` (the squared coefficient of variation)."""
    family = model.family_
    if family.name == "binomial":
        return BINOMIAL_LINK_VARIANCE[family.link.name]
    if family.name == "gamma":
        return float(model.dispersion_)
    mu = _null_model_mean(model)
    return float(np.log1p(family.variance(mu, model.dispersion_) / mu**2))


def variance_components(model):
    """The three variances that Nakagawa's R^2 and the ICC are made of.

    Parameters
    ----------
    model : fitted MixedLinearRegressor or MixedLogisticClassifier

    Returns
    -------
    dict
        ``var_fixed``: the variance (``ddof=1``) over the training rows of the fixed part of
        the linear predictor ``X beta``; ``var_random``: the random-effect variance
        ``z_i' Sigma z_i`` averaged over the training rows and summed over grouping
        factors (for a random-intercept model, the sum of the intercept variances);
        ``var_residual``: the residual variance ``sigma^2``, or ``pi^2 / 3`` on the latent
        scale of a logistic model. The same as R's ``insight::get_variance``.
    """
    _check_model(model)
    if not _is_generalized(model):
        resid = float(model.residual_variance_)
        return {"var_fixed": float(model._var_fixed), "var_random": float(model._var_random), "var_residual": resid}
    # a random intercept with one level per row is overdispersion: level 1, not level 2
    obs = _observation_level(model)
    dispersion = sum(float(model.random_covariance_[f].iloc[0, 0]) for f in obs)
    return {
        "var_fixed": float(model._var_fixed), "var_random": float(model._var_random) - dispersion,
        "var_residual": distribution_variance(model) + dispersion,
    }


def r2_nakagawa(model):
    """Nakagawa's marginal and conditional R^2, and the adjusted and conditional ICC.

    With the variances of :func:`variance_components`::

        R2_marginal    = var_fixed / (var_fixed + var_random + var_residual)
        R2_conditional = (var_fixed + var_random) / (var_fixed + var_random + var_residual)
        ICC_adjusted   = var_random / (var_random + var_residual)
        ICC_conditional = var_random / (var_fixed + var_random + var_residual)

    as R's ``performance::r2_nakagawa`` and ``performance::icc`` compute them: for a
    random-slope model the random-effect variance is the mean of ``z_i' Sigma z_i`` over
    the training rows (Johnson 2014), and for a logistic model the residual variance is
    that of the logistic distribution, ``pi^2 / 3`` (the latent scale).

    Parameters
    ----------
    model : fitted MixedLinearRegressor or MixedLogisticClassifier

    Returns
    -------
    dict
        ``r2_marginal``, ``r2_conditional``, ``icc_adjusted``, ``icc_conditional`` and the
        three variances.

    See Also
    --------
    variance_reduction : the proportional reduction in variance against a null model.

    Examples
    --------
    >>> from skmlm import MixedLinearRegressor, r2_nakagawa
    >>> from skmlm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    >>> r2 = r2_nakagawa(m)
    >>> round(r2["r2_marginal"], 3), round(r2["r2_conditional"], 3)
    (0.279, 0.799)
    """
    v = variance_components(model)
    total = v["var_fixed"] + v["var_random"] + v["var_residual"]
    return {
        "r2_marginal": v["var_fixed"] / total,
        "r2_conditional": (v["var_fixed"] + v["var_random"]) / total,
        "icc_adjusted": v["var_random"] / (v["var_random"] + v["var_residual"]),
        "icc_conditional": v["var_random"] / total,
        **v,
    }


def _intercept_variance(model, factor):
    """tau_00 of one grouping factor (the only one when ``factor`` is None)."""
    covs = model.random_covariance_
    factor = choose_factor(covs, factor, "name one")
    cov = covs[factor]
    if INTERCEPT not in cov.index:
        raise ValueError(f"grouping factor {factor!r} has no random intercept: tau_00 is not defined")
    return factor, float(cov.loc[INTERCEPT, INTERCEPT])


def variance_reduction(model, null_model, factor=None):
    """Proportional reduction in the variance at level 1, level 2 and overall.

    The explained variance of the multilevel seminar (Raudenbush & Bryk 2002;
    Snijders & Bosker 2012, section 7.1), against a null (intercept-only) model::

        R2_level1 = (sigma2_null - sigma2) / sigma2_null
        R2_level2 = (tau00_null - tau00) / tau00_null
        R2_total  = ((sigma2_null + tau00_null) - (sigma2 + tau00)) / (sigma2_null + tau00_null)

    with ``sigma2`` the residual variance and ``tau00`` the random-intercept variance of
    the grouping factor. The reductions can be negative (adding a level-1 predictor that
    varies mostly within groups can raise tau00), and for a random-slope model tau00 is
    the intercept variance at x = 0, so centre x for it to mean something.

    Parameters
    ----------
    model, null_model : fitted MixedLinearRegressor
        The model and its null model, fitted to the same rows.
    factor : str, default=None
        The grouping factor whose intercept variance is level 2; None: the only one.

    Returns
    -------
    DataFrame
        Rows ``level 1``, ``level 2`` and ``total``; columns ``null`` (the null model's
        variance), ``model`` (the model's) and ``reduction`` (the proportion explained).

    See Also
    --------
    r2_nakagawa : explained variance without a null model.
    """
    from ._linear import MixedLinearRegressor

    for m in (model, null_model):
        if not isinstance(m, MixedLinearRegressor):
            raise TypeError(
                "variance_reduction needs two fitted MixedLinearRegressor models; for a logistic model the "
                f"level-1 variance is fixed at pi^2/3, so use r2_nakagawa instead (got {type(m).__name__})"
            )
        check_is_fitted(m)
    if model._fit_info["n_obs"] != null_model._fit_info["n_obs"]:
        raise ValueError("the model and the null model were fitted to different numbers of rows")
    factor, tau = _intercept_variance(model, factor)
    _, tau0 = _intercept_variance(null_model, factor)
    s2, s20 = float(model.residual_variance_), float(null_model.residual_variance_)
    null = np.array([s20, tau0, s20 + tau0])
    mod = np.array([s2, tau, s2 + tau])
    with np.errstate(divide="ignore", invalid="ignore"):
        red = (null - mod) / null
    return pd.DataFrame(
        {"null": null, "model": mod, "reduction": red},
        index=pd.Index(["level 1", "level 2", "total"], name=f"variance ({factor})"),
    )
