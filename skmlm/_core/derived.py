"""Models derived from a fitted :class:`~.lmm.LinearMixedModel` without touching the rows.

Inference refits variants of the fitted model: by ML instead of REML (profiling), with
one fixed effect moved into an offset (profiling a fixed effect), or with a simulated
response (the parametric bootstrap). Each variant differs only in the cross-products
involving ``[X y]``, so it is a shallow copy of the model whose ``[X y]`` parts are
replaced, and the shared ``Z'WZ`` parts are reused as they are.

The helper knows where the model keeps cross-products of ``[X y]``: the blocked
factorisation's :class:`~.lmm.CrossProducts` (``a_xx``, ``a1x`` and the second
block's ``a2x``) and, where present, the dense path's ``_dense_gradient`` (``a_xx``,
``a_zx``). A dense path of a form it does not know is switched off (the blocked path
gives the same values).
"""

import copy

import numpy as np

_DENSE_FIELDS = ("a_xx", "a_zx", "p", "reml", "_last")


def _dense_copy(model):
    dg = getattr(model, "_dense_gradient", None)
    if dg is None:
        return None
    if not all(hasattr(dg, k) for k in _DENSE_FIELDS):
        return False
    dg = copy.copy(dg)
    dg._last = None
    return dg


def derived_model(model, reml=None, xy_map=None):
    """A shallow copy of ``model`` with another criterion and/or a linear map of ``[X y]``.

    Parameters
    ----------
    model : LinearMixedModel
    reml : bool or None
        The criterion of the copy (None: unchanged).
    xy_map : ndarray of shape (p + 1, p' + 1) or None
        New columns ``[X' y'] = [X y] xy_map`` (the last column is the response).
    """
    m = copy.copy(model)
    cp = m.cp = copy.copy(model.cp)
    dg = _dense_copy(model)
    if dg is not None:
        m._dense_gradient = dg or None
        dg = dg or None
    if reml is not None:
        m.reml = bool(reml)
        if dg is not None:
            dg.reml = bool(reml)
    if xy_map is not None:
        M = np.asarray(xy_map, dtype=float)
        p_new = M.shape[1] - 1
        cp.a_xx = M.T @ model.cp.a_xx @ M
        cp.a1x = model.cp.a1x @ M
        if model.cp.second is not None:
            cp.second = copy.copy(model.cp.second)
            cp.second.a2x = model.cp.second.a2x @ M
        cp.p = m.p = p_new
        if dg is not None:
            dg.a_xx = M.T @ dg.a_xx @ M
            dg.a_zx = dg.a_zx @ M
            dg.p = p_new
    return m


def with_response(model, xy, yy, zy):
    """A shallow copy of ``model`` whose response has other cross-products: ``X'Wy`` (p,),
    ``y'Wy`` and ``Z'Wy`` (all factors, in the model's order of factors); what does not
    involve the response is shared."""
    p = model.p
    m = copy.copy(model)
    cp = m.cp = copy.copy(model.cp)
    cp.a_xx = model.cp.a_xx.copy()
    cp.a_xx[:p, p] = cp.a_xx[p, :p] = xy
    cp.a_xx[p, p] = yy
    sizes = [f.n_levels * f.q for f in model.factors]
    pieces = np.split(zy, np.cumsum(sizes)[:-1])
    cp.a1x = model.cp.a1x.copy()
    cp.a1x[:, :, p] = pieces[cp.order[0]].reshape(cp.a1x.shape[:2])
    if len(cp.order) > 1 and "second" in model.cp.__dict__ and model.cp.second is not None:
        cp.second = copy.copy(model.cp.second)
        cp.second.a2x = model.cp.second.a2x.copy()
        cp.second.a2x[:, p] = np.concatenate([pieces[k] for k in cp.order[1:]])
    elif len(cp.order) > 1:  # not built yet: built from these statistics when needed
        cp.__dict__.pop("second", None)
        stats = model.statistics
        factors = [f._replace(a_zx=f.a_zx.copy()) for f in stats.factors]
        for f, piece in zip(factors, pieces):
            f.a_zx[:, :, p] = piece.reshape(f.n_levels, f.q)
        cp.statistics = stats._replace(factors=factors)
    dg = _dense_copy(model)
    if dg is not None:
        m._dense_gradient = dg or None
        if dg:
            dg.a_xx = cp.a_xx
            dg.a_zx = dg.a_zx.copy()
            dg.a_zx[:, p] = zy
    return m
