"""Centring helpers for formulas: ``within(x, g)`` and ``between(x, g)``.

The between/within split of a level-1 predictor (Enders & Tofighi 2007; the seminar's
``x - ave(x, g)`` and ``ave(x, g)``) written in the formula, e.g.
``stflife ~ within(eduyrs, cntry) + between(eduyrs, cntry) + (1 | cntry)``. Both are
stateful, as formulaic's ``center`` and ``scale``: the group means are those of the
training data, and new data of a group seen in fit use them; a group not seen in fit
uses its own mean in the new data. formulaic's ``center(x)`` (grand-mean centring) and
``scale(x)`` are there as well, and R's ``factor(x)`` (formulaic's ``C(x)``).
"""

from functools import lru_cache

import numpy as np
import pandas as pd


def _label_keys(g):
    return pd.Series(np.asarray(g)).astype(str).to_numpy()


def _group_means(x, g, state):
    """Each row's group mean of ``x``: from the fit's means (kept in ``state``) for groups
    seen in fit, from the rows given for the others."""
    x = np.asarray(x, dtype=float)
    keys = _label_keys(g)
    if len(keys) != len(x):
        raise ValueError("within/between: x and the grouping factor have different lengths")
    frame = pd.DataFrame({"x": x, "g": keys})
    own = frame.groupby("g", sort=False)["x"].transform("mean").to_numpy()
    if "means" not in state:
        state["means"] = frame.groupby("g", sort=True)["x"].mean().to_dict()
        return own
    fitted = pd.Series(keys).map(state["means"]).to_numpy(dtype=float)
    return np.where(np.isnan(fitted), own, fitted)


@lru_cache(maxsize=None)
def context():
    """The names formulas may call beyond formulaic's own (built on first use, so that
    importing skmlm does not need formulaic)."""
    from formulaic.transforms.contrasts import C
    from formulaic.utils.stateful_transforms import stateful_transform

    @stateful_transform
    def within(x, g, _state={}):  # noqa: B006  (formulaic replaces the state)
        """``x`` minus its group mean (group-mean centring: the within-group part)."""
        return np.asarray(x, dtype=float) - _group_means(x, g, _state)

    @stateful_transform
    def between(x, g, _state={}):  # noqa: B006
        """The group mean of ``x`` on every row of the group (the between-group part)."""
        return _group_means(x, g, _state)

    # R's factor(x): a categorical predictor (formulaic's C(x)), named factor(x)2 as R names it
    return {"within": within, "between": between, "factor": C}
