"""The gradient of the profiled deviance on the blocked factorisation (several factors).

The same three formulas as :mod:`.dense_gradient`, for ``M = Lambda' A Lambda + I``
(``A = Z'WZ``) held in the blocks of :mod:`.lmm`:

* ``d log det M / d Lambda[r, c] = 2 (M^-1 Lambda' A)[c, r]``;
* ``d pwrss / d Lambda[r, c] = -2 s[r] u[c]``, ``s = Z'W (y - X beta - Z Lambda u)``;
* REML: ``d log det S_x / d Lambda[r, c] = -2 (a_x[r] . DS[c] - DS[c] . (A Lambda D)[r])``
  with ``D = M^-1 Lambda' Z'W X`` and ``DS = D S_x^-1``.

Only the blocks of ``M^-1 Lambda' A`` where ``Lambda`` has entries are needed. With
``P_g = T1 (L11_g L11_g')^-1`` per level ``g`` of the largest factor,
``S22 = (L22 L22')^-1``, ``C = Lambda2 S22 Lambda2'`` and ``H_g = A21_g' C A21_g`` (one
sparse product over the pairs the factorisation lists already,
:meth:`~.coupling.PairExpansion.adjoint`)::

    (M^-1 Lambda' A)_gg = ((L11_g L11_g')^-1 + P_g' H_g P_g) T1' A11_g - P_g' H_g
    (M^-1 Lambda' A)_22 = S22 Lambda2' (A22 - A21 K1 K1' A21')

so a gradient costs one inverse of the order of block 2 and a few batched products
over the levels: no finite differences over theta.
"""

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from .blocks import batched_solve_upper_t, left_multiply_t
from .design import lambda_pattern


def inverse_from_cholesky(L):
    """``(L L')^-1`` (whole, symmetric) from a lower Cholesky factor, by LAPACK's potri."""
    inv, info = lapack.dpotri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("singular Cholesky factor")
    return np.tril(inv) + np.tril(inv, -1).T


class BlockedGradient:
    """The gradient of a :class:`~.lmm.LinearMixedModel` on its blocked factorisation.

    Needs the model's second block to list its pairs (:class:`~.coupling.PairExpansion`)
    and its decompositions to keep ``A22 - A21 K1 K1' A21'``.
    """

    def __init__(self, model):
        self.model = model
        cp = model.cp
        self.rows2, self.cols2, self.src2, _ = lambda_pattern(cp.rest)
        self.n_theta2 = [f.n_theta for f in cp.rest]

    def __call__(self, theta):
        """The gradient at ``theta``; NaN where the factorisation fails."""
        theta = np.asarray(theta, dtype=float)
        try:
            return self._gradient(theta)
        except np.linalg.LinAlgError:
            return np.full(len(theta), np.nan)

    def _back_solve(self, dec, W1, W2):
        """``L'^-1 [W1; W2]`` for the blocked ``L`` (columns of ``W`` at once)."""
        cp, second = self.model.cp, self.model.cp.second
        m1, q1 = cp.first.n_levels, cp.first.q
        Y2 = dec.solve_l22_t(W2)
        rhs = W1 - second.l21t_times(dec.pieces2, dec.K1, Y2)
        Y1 = batched_solve_upper_t(dec.L11, rhs.reshape(m1, q1, -1))
        return Y1, Y2

    def _gradient(self, theta):
        model = self.model
        cp, second = model.cp, model.cp.second
        dec = model.decompose(theta)
        f1 = cp.first
        m1, q1, p = f1.n_levels, f1.q, model.p
        T1 = dec.T1
        lam2 = second.lambda2_at(dec.pieces2)

        # log det M: the blocks of M^-1 Lambda' A on Lambda's pattern
        linv = dec.L11_inv
        m11 = np.swapaxes(linv, 1, 2) @ linv  # (L11_g L11_g')^-1
        P = T1 @ m11
        S22 = inverse_from_cholesky(dec.dense_L22)
        C = lam2 @ np.asarray(lam2 @ S22).T  # Lambda2 S22 Lambda2'
        H = second.pairs.adjoint(C)
        PH = np.swapaxes(P, 1, 2) @ H
        G1 = (m11 + PH @ P) @ left_multiply_t(T1, cp.a11) - PH
        grad1 = 2.0 * G1.sum(axis=0).T  # [r, c] = 2 sum_g G1_g[c, r]
        rows2, cols2 = self.rows2, self.cols2
        LD = np.asarray(second.lambda2_t_at(dec.pieces2) @ dec.inner)  # Lambda2' (A22 - A21 K1 K1' A21')
        grad2 = 2.0 * np.einsum("ek,ke->e", S22[cols2], LD[:, rows2])

        # pwrss (and REML's log det S_x): the modes u and D = M^-1 Lambda' Z'W X together
        beta = model._beta(dec)
        resid = np.append(-beta, 1.0)
        reml = model.reml and p > 0
        W1 = np.column_stack([dec.B1 @ resid, dec.B1[:, :p]]) if reml else (dec.B1 @ resid)[:, None]
        W2 = np.column_stack([dec.B2 @ resid, dec.B2[:, :p]]) if reml else (dec.B2 @ resid)[:, None]
        Y1, Y2 = self._back_solve(dec, W1, W2)  # (m1, q1, 1 + p), (Q2, 1 + p); ML: u alone
        lY1, lY2 = T1 @ Y1, lam2 @ Y2  # Lambda [u D]
        k = W1.shape[1]
        AY1 = cp.a11 @ lY1 + np.asarray(second.a21_t @ lY2).reshape(m1, q1, k)
        AY2 = np.asarray(second.a21 @ lY1.reshape(m1 * q1, k)) + second.a22 @ lY2
        u1, u2 = Y1[:, :, 0], Y2[:, 0]
        s1 = cp.a1x @ resid - AY1[:, :, 0]
        s2 = second.a2x @ resid - AY2[:, 0]
        dof = model.n - p if model.reml else model.n
        factor = 2.0 * dof / dec.pwrss
        grad1 -= factor * (s1.T @ u1)
        grad2 -= factor * (s2[rows2] * u2[cols2])
        if reml:
            lx_inv = sla.solve_triangular(dec.Lx, np.eye(p), lower=True, check_finite=False)
            sx_inv = lx_inv.T @ lx_inv
            DS1, DS2 = Y1[:, :, 1:] @ sx_inv, Y2[:, 1:] @ sx_inv
            ax1, ax2 = cp.a1x[:, :, :p], second.a2x[:, :p]
            grad1 -= 2.0 * (np.einsum("grp,gcp->rc", ax1, DS1) - np.einsum("gcp,grp->rc", DS1, AY1[:, :, 1:]))
            grad2 -= 2.0 * (np.einsum("ep,ep->e", ax2[rows2], DS2[cols2])
                            - np.einsum("ep,ep->e", DS2[cols2], AY2[rows2, 1:]))

        # onto theta, in the factors' order
        pieces = {cp.order[0]: grad1[f1._tri]}
        rest = np.bincount(self.src2, weights=grad2, minlength=sum(self.n_theta2))
        for k_f, part in zip(cp.order[1:], np.split(rest, np.cumsum(self.n_theta2)[:-1])):
            pieces[k_f] = part
        return np.concatenate([pieces[k] for k in range(len(model.factors))])
