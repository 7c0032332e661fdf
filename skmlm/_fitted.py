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


def _kept_rows(model):
    """The training rows a fitted model keeps (a GLMM's), or a clear error (a linear model
    keeps statistics, not rows)."""
    d = model._inference_data
    if "X" not in d:
        raise ValueError(
            f"{type(model).__name__} keeps statistics, not its training rows: pass the rows again, "
            "e.g. fitted(X, groups) or residuals(X, y, groups) (a formula model: fitted(data), residuals(data))"
        )
    return d


def fitted_values(model, X=None, groups=None, **predict_params):
    """The rows' fitted values on the response scale, conditional on the random effects
    (lme4's ``fitted``): the mean ``g^-1(offset + X beta + Z b)`` of a GLMM. ``X=None``:
    the training rows, where the model keeps them."""
    if X is not None:
        if hasattr(model, "predict_proba"):
            return model.predict_proba(X, groups=groups, **predict_params)[:, 1]
        return model.predict(X, groups=groups, **predict_params)
    d = _kept_rows(model)
    eta = model._training_linear_predictor()
    family = d.get("family")
    if family is None:
        return eta
    offset = d.get("offset")
    return family.mean(eta if offset is None else eta + offset)


def residuals(model, X=None, y=None, groups=None, sample_weight=None, type="response", scaled=False,  # noqa: A002
              **predict_params):
    """lme4's ``residuals``: ``"response"`` (y minus fitted), ``"pearson"`` (over the square
    root of the variance function, times the prior weight's root), ``"deviance"`` (signed
    roots of the unit deviances). For a linear model ``"pearson"`` and ``"deviance"`` are
    ``sqrt(w) (y - fitted)``; ``scaled`` divides a linear model's by sigma (lme4's scaled
    residuals). ``X=None``: the training rows, where the model keeps them."""
    if type not in RESIDUAL_TYPES:
        raise ValueError(f"type must be one of {RESIDUAL_TYPES}; got {type!r}")
    family = model._inference_data.get("family")
    if scaled and family is not None:
        raise ValueError("scaled residuals are the linear model's (over sigma); for a GLMM use type='pearson'")
    if X is None:
        d = _kept_rows(model)
        y, w = d["y"], d["w"]
    else:
        respond = getattr(model, "_response_of", None)
        y, w = respond(X, y, sample_weight) if respond is not None else (y, sample_weight)
        if y is None:
            raise ValueError("residuals of new rows need their y: residuals(X, y, groups)")
        y = np.asarray(y, dtype=float)
        w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    mu = fitted_values(model, X, groups, **predict_params)
    r = y - mu
    if family is None:
        if scaled:
            return r * np.sqrt(w / model.residual_variance_)
        return r if type == "response" else r * np.sqrt(w)
    if type == "response":
        return r
    if type == "pearson":
        return r * np.sqrt(w / family.variance(mu, model.dispersion_))
    return np.sign(r) * np.sqrt(np.maximum(w * family.unit_deviance(y, mu, model.dispersion_), 0.0))
