"""Gradient and Hessian of the profiled deviance for two crossed scalar factors held packed.

``(1 | a) + (1 | b)`` with thousands of levels each: the second factor's block is dense
and held in packed storage (:attr:`~.coupling.CouplingBlock.packed`), and an evaluation
is one factorisation of it. With ``t1, t2`` the two thetas, ``D1``, ``D2`` the levels'
sums of weights, ``C = Z2'W Z1`` and ``D = I + t1^2 D1``, the Schur complement that
``L22`` factorises is ``S = I + t2^2 (D2 - t1^2 C D^-1 C')``. The deviance is

    log det M + alpha log det R + gamma log det R_x  (+ constants)

with ``M = Lambda' Z'W Z Lambda + I``, ``R = [X y]'W[X y] - B' M^-1 B``
(``B = Lambda' Z'W [X y]``), ``R_x`` its fixed-effect block, and ``(alpha, gamma)``
``(n, -n)`` under ML, ``(n - p, -(n - p - 1))`` under REML (``log det R`` is
``log det R_x + log pwrss``).

* ``R``'s first and second derivatives need solves with ``M`` on a few columns
  (:class:`_RTerms`).
* ``log det M``'s need, per level ``a`` of the first factor, ``G_a = c_a' S^-1 c_a``
  (``c_a`` the column of ``C``: one sparse product over the pairs the factorisation
  lists already, :meth:`~.coupling.PairExpansion.adjoint`), the diagonal of ``S^-1`` and
  ``||S^-1||_F^2``: one inversion of the packed factor. The Hessian needs two more terms
  that couple the factors, ``P = ||S^-1 C D^-1||_F^2`` and
  ``Q = ||D^-1 C' S^-1 C D^-1||_F^2``; computed exactly they would take ``C' S^-1 C``
  whole (dearer than the inversion), so they are estimated by randomised trace
  estimation with the dominant directions deflated (:class:`CouplingNorms`, in the
  same solves; the generator's seed is fixed). They enter only the Hessian's cross term and
  the first factor's curvature, and little: the gradient is exact, and the Hessian
  serves Newton steps and the convergence test (the Newton decrement).

A value, the gradient and the Hessian then cost about three factorisations (the
inversion two), where the finite differences of a Newton step cost five more values.
"""

import numpy as np

from .packed import packed_diagonal, packed_frobenius2

#: Directions of ``D^-1 C' S^-1 C D^-1`` found by a power iteration and taken exactly in
#: :class:`CouplingNorms` (the constant direction dominates it), and random probes of
#: the rest.
DEFLATED, PROBES = 4, 16


class CouplingNorms:
    """Estimates of ``P = ||K||_F^2`` and ``Q = ||J||_F^2`` for ``K = S^-1 C D^-1`` and
    ``J = D^-1 C' K`` (symmetric, positive semi-definite, of order ``m1``).

    ``J``'s few large eigenvalues dominate it: their directions ``V`` (one power
    iteration from random columns) are taken exactly, and the rest is estimated from
    Gaussian probes ``z`` projected off them (Hutchinson's estimator on ``I - V V'``):
    ``||K||^2 = ||K V||^2 + E ||K (I - V V') z||^2``, and likewise ``J``. ``K`` is applied
    twice, to :meth:`first_columns` and to :meth:`second_columns`, by the caller (with
    its own solves, in the same calls). The generator's seed is fixed: a fit is
    reproducible.

    Parameters
    ----------
    c_t : sparse matrix (m1, Q2)
        ``C'``.
    d_inv : ndarray (m1,)
        The diagonal of ``D^-1``.
    """

    def __init__(self, c_t, d_inv, seed=0):
        self.c_t, self.d_inv = c_t, d_inv
        self.rng = np.random.default_rng(seed)

    def first_columns(self):
        """Random columns whose images under ``J`` span its dominant directions."""
        return self.rng.standard_normal((len(self.d_inv), DEFLATED))

    def second_columns(self, k_first):
        """The dominant directions (orthonormal, from ``K`` of :meth:`first_columns`),
        then the probes projected off them."""
        v = np.linalg.qr(self.d_inv[:, None] * (self.c_t @ k_first))[0]
        z = self.rng.standard_normal((len(self.d_inv), PROBES))
        return np.hstack([v, z - v @ (v.T @ z)])

    def estimate(self, k_second):
        """``(P, Q)`` from ``K`` of :meth:`second_columns`."""
        j_second = self.d_inv[:, None] * (self.c_t @ k_second)
        exact, probes = np.s_[:, :DEFLATED], np.s_[:, DEFLATED:]
        p = float((k_second[exact] ** 2).sum() + (k_second[probes] ** 2).sum() / PROBES)
        q = float((j_second[exact] ** 2).sum() + (j_second[probes] ** 2).sum() / PROBES)
        return p, q


def _logdet_derivatives(r, dr, ddr):
    """Gradient and Hessian of ``log det R(theta)`` from ``R``, its first derivatives
    ``dr`` (k, m, m) and second ``ddr`` (k, k, m, m)."""
    k = len(dr)
    if r.shape[0] == 0:
        return np.zeros(k), np.zeros((k, k))
    r_inv = np.linalg.inv(r)
    rd = r_inv @ dr  # R^-1 dR_k
    g = np.trace(rd, axis1=1, axis2=2)
    h = np.einsum("ij,klji->kl", r_inv, ddr) - np.einsum("kij,lji->kl", rd, rd)
    return g, h


class CrossedDerivatives:
    """The gradient and Hessian of a :class:`~.lmm.LinearMixedModel` of two scalar
    factors whose second block is packed. Holds nothing of the model: each call reads
    the model it is given (the derived models of :mod:`.derived` share this object)."""

    def __call__(self, model, theta, single=False):
        """``(gradient, Hessian)`` at ``theta``; NaN where the factorisation fails.

        The factor is inverted in place: the model's kept decomposition is let go.
        ``single``: the inversion in single precision (half its cost; the traces it gives
        then carry its rounding), for a Newton step that no convergence test reads.
        """
        theta = np.asarray(theta, dtype=float)
        try:
            dec = model.decompose(theta)
            model._last_decomposition = None  # its L22 is about to become S^-1
            return self._derivatives(model, theta, dec, single)
        except np.linalg.LinAlgError:
            k = len(theta)
            return np.full(k, np.nan), np.full((k, k), np.nan)

    @staticmethod
    def _parts(model, theta):
        cp = model.cp
        second = cp.second
        t1, t2 = float(theta[cp.order[0]]), float(theta[cp.order[1]])
        d1 = cp.a11[:, 0, 0]
        d = 1.0 + t1 * t1 * d1
        return cp, second, t1, t2, d1, second.a22.diagonal(), d

    def _derivatives(self, model, theta, dec, single):
        """With ``G_a = c_a' S^-1 c_a``, ``s = diag(S^-1)``, ``t_k`` the trace of factor
        ``k``'s block of ``M^-1`` and ``F_kj`` the squared Frobenius norm of block
        ``(k, j)``, ``d log det M / dt_k = 2 (q_k - t_k) / t_k`` and
        ``d2 / dt_k dt_j = -2 [k = j] (q_k - t_k) / t_k^2 + 4 ([k = j] t_k - F_kj) / (t_k t_j)``;
        written out, without the divisions (a theta may be 0):

        * ``b1 = sum D1 / D - t2^2 sum G / D^2`` (``(q_1 - t_1) / t1^2``), gradient ``2 t1 b1``;
        * ``b2 = s' D2 - t1^2 sum G / D`` (``(q_2 - t_2) / t2^2``), gradient ``2 t2 b2``;
        * ``H_11 = -2 b1 + 4 (sum D1 / D^2 + t2^2 sum G (1 / D^2 - 2 / D^3) - t1^2 t2^4 Q)``;
        * ``H_22 = -2 b2 + 4 (tr S^-1 - ||S^-1||_F^2) / t2^2``; ``H_12 = -4 t1 t2 P``.
        """
        cp, second, t1, t2, d1, d2, d = self._parts(model, theta)
        c, c_t, l22 = second.a21, second.a21_t, dec.L22
        coupling, d_inv = t1 * t2, 1.0 / d
        a1x, a2x = cp.a1x[:, 0, :], second.a2x
        norms = CouplingNorms(c_t, d_inv)

        def solve_s(v1, v2, extra):
            """``M^-1 [v1; v2]`` by the Schur complement on the second factor, and
            ``K extra`` in the same solves (each reads the whole packed factor)."""
            k = v2.shape[1]
            w2 = l22.solve_matrix(np.hstack([v2 - coupling * (c @ (d_inv[:, None] * v1)), c @ (d_inv[:, None] * extra)]))
            w2, k_extra = w2[:, :k], w2[:, k:]
            return d_inv[:, None] * (v1 - coupling * (c_t @ w2)), w2, k_extra

        u1, u2, k_first = solve_s(t1 * a1x, t2 * a2x, norms.first_columns())
        r_terms = _RTerms(model, cp, second, t1, t2, d1, d2, u1, u2)
        e1, e2 = r_terms.rhs()
        v1, v2, k_second = solve_s(e1, e2, norms.second_columns(k_first))
        g_r, h_r = r_terms.derivatives(v1, v2)
        p_norm, q_norm = norms.estimate(k_second)

        s_inv = l22.invert(single)
        diag = s_inv[packed_diagonal(second.size)]
        frobenius = packed_frobenius2(s_inv, second.size)
        g_a = second.pairs.adjoint(s_inv)[:, 0, 0]  # c_a' S^-1 c_a
        del s_inv
        b1 = float(d1 @ d_inv) - t2 * t2 * float(g_a @ d_inv**2)
        b2 = float(diag @ d2) - t1 * t1 * float(g_a @ d_inv)
        grad = np.array([2.0 * t1 * b1, 2.0 * t2 * b2])
        curv1 = float(d1 @ d_inv**2) + t2 * t2 * float(g_a @ (d_inv**2 - 2.0 * d_inv**3)) - t1 * t1 * t2**4 * q_norm
        # (tr S^-1 - ||S^-1||^2) / t2^2, which is b2 where t2 = 0 (S = I)
        curv2 = (float(diag.sum(dtype=float)) - frobenius) / (t2 * t2) if t2 != 0.0 else b2
        hess = np.array([[-2.0 * b1 + 4.0 * curv1, -4.0 * coupling * p_norm],
                         [-4.0 * coupling * p_norm, -2.0 * b2 + 4.0 * curv2]])
        grad, hess = grad + g_r, hess + h_r
        # from (first, second) to the factors' order
        order = np.argsort(cp.order)
        return grad[order], hess[np.ix_(order, order)]


class _RTerms:
    """Gradient and Hessian of ``alpha log det R + gamma log det R_x`` in ``(t1, t2)``.

    With ``U = M^-1 B``, ``B_k = dB / dt_k`` (``Z_k'W [X y]`` on factor ``k``'s rows),
    ``E_k = B_k - (dM / dt_k) U`` and ``V_k = M^-1 E_k``:
    ``dR_k = U' (dM / dt_k) U - U' B_k - B_k' U`` and
    ``d2R_kj = -(E_k' V_j + V_j' E_k) + X_kj + X_kj'``, ``X_kj = U_k' A_kj U_j``.
    :meth:`rhs` gives both ``E_k`` side by side, and :meth:`derivatives` takes their
    solves ``V``.
    """

    def __init__(self, model, cp, second, t1, t2, d1, d2, u1, u2):
        self.model = model
        c, c_t = second.a21, second.a21_t
        a1x, a2x = cp.a1x[:, 0, :], second.a2x
        self.r = cp.a_xx - (t1 * a1x).T @ u1 - (t2 * a2x).T @ u2
        cu2, cu1 = c_t @ u2, c @ u1  # C' U2, C U1
        dm_u = [(2.0 * t1 * d1[:, None] * u1 + t2 * cu2, t2 * cu1),  # (dM / dt_k) U
                (t1 * cu2, t1 * cu1 + 2.0 * t2 * d2[:, None] * u2)]
        self.dr, self.e = [], []
        for k, (m1_, m2_) in enumerate(dm_u):
            ub = u1.T @ a1x if k == 0 else u2.T @ a2x  # U' B_k
            self.dr.append(u1.T @ m1_ + u2.T @ m2_ - ub - ub.T)
            self.e.append((a1x - m1_, -m2_) if k == 0 else (-m1_, a2x - m2_))
        self.x = [[u1.T @ (d1[:, None] * u1), u1.T @ cu2], [u2.T @ cu1, u2.T @ (d2[:, None] * u2)]]

    def rhs(self):
        """``[E_1 E_2]`` by blocks: the first factor's rows, the second's."""
        return np.hstack([self.e[0][0], self.e[1][0]]), np.hstack([self.e[0][1], self.e[1][1]])

    def derivatives(self, v1, v2):
        """The gradient and Hessian from ``V = M^-1 [E_1 E_2]`` (by blocks)."""
        r, e, x, model = self.r, self.e, self.x, self.model
        k1 = r.shape[0]
        v = [(v1[:, :k1], v2[:, :k1]), (v1[:, k1:], v2[:, k1:])]
        ddr = np.empty((2, 2) + r.shape)
        for k in range(2):
            for j in range(2):
                ev = e[k][0].T @ v[j][0] + e[k][1].T @ v[j][1]
                ddr[k, j] = -(ev + ev.T) + x[k][j] + x[k][j].T
        dr = np.array(self.dr)
        n, p = model.n, model.p
        alpha, gamma = (n - p, -(n - p - 1)) if model.reml else (n, -n)
        g, h = _logdet_derivatives(r, dr, ddr)
        gx, hx = _logdet_derivatives(r[:p, :p], dr[:, :p, :p], ddr[:, :, :p, :p])
        return alpha * g + gamma * gx, alpha * h + gamma * hx
