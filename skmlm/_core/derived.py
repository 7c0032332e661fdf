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
import scipy.sparse as sp

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


class ResponseCrossProducts:
    """The response's part of the cross-products of ``[Z X y]``, for many responses at once.

    Parameters
    ----------
    model : LinearMixedModel
    X : ndarray (n, p)
        The fixed-effects design the model was built from.
    weights : ndarray (n,)
    """

    def __init__(self, model, X, weights):
        cp = model.cp
        self.model = model
        self.X = np.asarray(X, dtype=float)
        self.w = np.asarray(weights, dtype=float)
        self.z1 = cp.first.design_matrix().T.tocsr()  # (m1 q1, n)
        self.z2 = None
        if cp.rest:
            self.z2 = sp.hstack([f.design_matrix() for f in cp.rest], format="csr").T.tocsr()
        self.dense = _dense_copy(model) is not None
        self.z = sp.hstack([f.design_matrix() for f in model.factors], format="csr").T.tocsr() if self.dense else None

    def compute(self, Y):
        """``(X'WY, diag(Y'WY), Z1'WY, Z2'WY, Z'WY)`` for responses in the columns of ``Y``."""
        WY = Y * self.w[:, None]
        xy = self.X.T @ WY
        yy = np.einsum("ib,ib->b", Y, WY)
        z1y = np.asarray(self.z1 @ WY)
        z2y = None if self.z2 is None else np.asarray(self.z2 @ WY)
        zy = None if self.z is None else np.asarray(self.z @ WY)
        return xy, yy, z1y, z2y, zy

    def model_for(self, parts, b):
        """A shallow copy of the model whose response is replicate ``b`` of ``parts``."""
        xy, yy, z1y, z2y, zy = parts
        base = self.model
        p = base.p
        m = copy.copy(base)
        cp = m.cp = copy.copy(base.cp)
        cp.a_xx = base.cp.a_xx.copy()
        cp.a_xx[:p, p] = cp.a_xx[p, :p] = xy[:, b]
        cp.a_xx[p, p] = yy[b]
        cp.a1x = base.cp.a1x.copy()
        cp.a1x[:, :, p] = z1y[:, b].reshape(cp.a1x.shape[:2])
        if z2y is not None:
            cp.second = copy.copy(base.cp.second)
            cp.second.a2x = base.cp.second.a2x.copy()
            cp.second.a2x[:, p] = z2y[:, b]
        dg = _dense_copy(base)
        if dg is not None:
            m._dense_gradient = dg or None
            if dg:
                dg.a_xx = cp.a_xx
                dg.a_zx = dg.a_zx.copy()
                dg.a_zx[:, p] = zy[:, b]
        return m
