"""What a fitted model says about its own training rows and groups, as lme4's ``coef``,
``fitted`` and ``residuals``."""

import numpy as np
import pandas as pd

#: lme4's ``residuals(type = ...)`` that skmlm gives.
RESIDUAL_TYPES = ("response", "pearson", "deviance")


def coef_per_group(model):
    """lme4's ``coef``: per grouping factor, one row per level, the fixed effects plus the
    level's random effects (a term with a random effect but no fixed effect: the random
    effect alone)."""
    beta = pd.Series(model._beta(), index=list(model._fixed_names), dtype=float)
    out = {}
    for f, re in model.random_effects_.items():
        columns = list(beta.index) + [t for t in re.columns if t not in beta.index]
        base = beta.reindex(columns).fillna(0.0).to_numpy()
        table = pd.DataFrame(np.tile(base, (len(re), 1)), index=re.index, columns=columns)
        table[list(re.columns)] += re.to_numpy()
        out[f] = table
    return out


def fitted_values(model):
    """The training rows' fitted values on the response scale, conditional on the random
    effects (lme4's ``fitted``): the mean ``g^-1(offset + X beta + Z b)`` of a GLMM."""
    d = model._inference_data
    eta = model._training_linear_predictor()
    family = d.get("family")
    if family is None:
        return eta
    offset = d.get("offset")
    return family.mean(eta if offset is None else eta + offset)


def residuals(model, type="response"):  # noqa: A002  (lme4's name)
    """lme4's ``residuals``: ``"response"`` (y minus fitted), ``"pearson"`` (over the square
    root of the variance function, times the prior weight's root), ``"deviance"`` (signed
    roots of the unit deviances). For a linear model all three are ``sqrt(w) (y - fitted)``
    but ``"response"``, which is ``y - fitted``, as lme4's."""
    if type not in RESIDUAL_TYPES:
        raise ValueError(f"type must be one of {RESIDUAL_TYPES}; got {type!r}")
    d = model._inference_data
    y, w = d["y"], d["w"]
    mu = fitted_values(model)
    r = y - mu
    if type == "response":
        return r
    family = d.get("family")
    if family is None:
        return r * np.sqrt(w)
    if type == "pearson":
        return r * np.sqrt(w / family.variance(mu, model.dispersion_))
    return np.sign(r) * np.sqrt(np.maximum(w * family.unit_deviance(y, mu, model.dispersion_), 0.0))
