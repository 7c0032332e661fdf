"""Plots of fitted mixed models (needs matplotlib: ``pip install skmlm[plot]``).

* :func:`caterpillar`: conditional modes of the random effects with intervals, sorted,
  as lme4's ``dotplot(ranef(m, condVar = TRUE))``.
"""

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ._base import choose_factor

__all__ = ["caterpillar"]

def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skmlm.plotting needs matplotlib, an optional dependency: pip install 'skmlm[plot]' "
            "(or pip install matplotlib)"
        ) from exc
    return plt


def _as_sd(value, modes):
    """Conditional SDs shaped as ``modes`` from SDs (DataFrame or (m, q) array) or
    covariances ((m, q, q) array); None when ``value`` is neither."""
    m, q = modes.shape
    if isinstance(value, pd.DataFrame):
        if value.index.equals(modes.index) and list(value.columns) == list(modes.columns):
            return value
        return None
    arr = np.asarray(value) if isinstance(value, np.ndarray) else None
    if arr is None or arr.dtype.kind != "f":
        return None
    if arr.shape == (m, q, q):
        arr = np.sqrt(np.maximum(np.diagonal(arr, axis1=1, axis2=2), 0.0))
    if arr.shape == (m, q):
        return pd.DataFrame(arr, index=modes.index, columns=modes.columns)
    return None


def _conditional_sd(model, factor, sd):
    """Conditional SDs of one factor's random effects: given, kept by the model, or None."""
    modes = model.random_effects_[factor]
    if sd is not None:
        if isinstance(sd, dict):
            sd = sd[factor]
        if isinstance(sd, pd.DataFrame):
            return sd.reindex(index=modes.index, columns=modes.columns)
        found = _as_sd(np.asarray(sd, dtype=float), modes)
        if found is None:
            raise ValueError(f"sd must be shaped as random_effects_[{factor!r}] {modes.shape} (standard "
                             "deviations) or (n_levels, q, q) (covariances)")
        return found
    # the estimator's conditional variances (lme4's condVar), when it computes them
    method = getattr(model, "random_effects_variance", None)
    if callable(method):
        found = method(kind="sd")
        if isinstance(found, dict) and factor in found:
            return _as_sd(found[factor], modes)
    return None


def caterpillar(model, factor=None, ax=None, *, terms=None, sd=None, z=1.959963984540054, sort=True):
    """Caterpillar plot: the conditional modes of one grouping factor, sorted, with intervals.

    One panel per random-effect term (intercept, slopes); one row per level, sorted by
    the first term's conditional mode; a bar of ``mode +- z * conditional SD`` when the
    conditional standard deviations are known, a point only otherwise.

    Parameters
    ----------
    model : fitted MixedLinearRegressor or MixedLogisticClassifier
    factor : str, default=None
        Grouping factor to plot; None: the only one.
    ax : matplotlib Axes or sequence of Axes, default=None
        Where to draw, one per term; None: a new figure.
    terms : list of str, default=None
        Terms to plot (columns of ``model.random_effects_[factor]``); None: all.
    sd : DataFrame, ndarray or dict of those, default=None
        Conditional standard deviations of the random effects (lme4's
        ``sqrt(attr(ranef(m, condVar = TRUE)[[f]], "postVar"))``), shaped as
        ``model.random_effects_[factor]``, or conditional covariances of shape
        ``(n_levels, q, q)``; or a dict of those by factor. None: the model's
        ``random_effects_variance(kind="sd")`` (lme4's ``condVar``) when it has that
        method; without conditional SDs the plot shows points only.
    z : float, default=1.96
        Half-width of the intervals in conditional SDs.
    sort : bool, default=True
        Sort the levels by the first term's conditional mode.

    Returns
    -------
    ndarray of Axes
        One per term.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skmlm import MixedLinearRegressor
    >>> from skmlm.plotting import caterpillar
    >>> from skmlm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor().fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    >>> axes = caterpillar(m)
    >>> len(axes)
    1
    """
    check_is_fitted(model)
    plt = _pyplot()
    re_all = model.random_effects_
    factor = choose_factor(re_all, factor, "choose one")
    modes = re_all[factor]
    terms = list(modes.columns) if terms is None else list(terms)
    missing = [t for t in terms if t not in modes.columns]
    if missing:
        raise ValueError(f"terms {missing} are not random effects of {factor!r}: {list(modes.columns)}")
    sds = _conditional_sd(model, factor, sd)

    order = np.argsort(modes[terms[0]].to_numpy(), kind="stable") if sort else np.arange(len(modes))
    levels = modes.index.to_numpy()[order]
    pos = np.arange(len(levels))

    if ax is None:
        height = max(2.5, 0.22 * len(levels) + 1.0)
        fig, axes = plt.subplots(1, len(terms), sharey=True, figsize=(3.6 * len(terms) + 0.8, height),
                                 squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object))
        if len(axes) != len(terms):
            raise ValueError(f"{len(axes)} Axes for {len(terms)} terms {terms}: pass one per term, or terms=")
    for a, term in zip(axes, terms):
        x = modes[term].to_numpy()[order]
        if sds is not None and sds[term].notna().all():
            half = z * sds[term].to_numpy()[order]
            a.errorbar(x, pos, xerr=half, fmt="o", ms=3.5, color="C0", ecolor="C0", elinewidth=1, capsize=0)
        else:
            a.plot(x, pos, "o", ms=3.5, color="C0")
        a.axvline(0.0, color="0.5", lw=0.8, ls="--")
        a.set_title(f"{term} | {factor}", fontsize=10)
        a.set_yticks(pos)
        a.set_yticklabels([str(v) for v in levels], fontsize=7)
        a.grid(axis="x", color="0.9")
        a.set_ylim(-0.7, len(levels) - 0.3)
    axes[0].set_ylabel(factor)
    return axes
