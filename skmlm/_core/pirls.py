"""Penalised iteratively reweighted least squares (PIRLS) for a GLMM of any family.

Model: ``y_i`` from the response distribution of a :class:`~.family.Family` with prior
weight ``w_i``, ``g(mu) = eta = offset + X beta + Z b``, ``b = Lambda(theta) u``,
``u ~ N(0, I)``. At a given ``theta`` (and ``beta``, and dispersion) the conditional
mode of ``u`` maximises the penalised log-likelihood ``sum_i l_i(eta_i) - ||u||^2 / 2``;
Newton's method on it is PIRLS (Bates et al. 2015; lme4's ``pwrssUpdate``). Each Newton
step solves with the matrix ``Lambda' Z' W Z Lambda + I`` (``W`` the family's weights,
``-d^2 l / d eta^2``): the linear mixed model's, at weights that change every
iteration. So the cross-products are re-formed on their fixed pattern
(:class:`~.lmm.ReweightedCrossProducts`) and factorised by the linear model's code
(:func:`~.lmm.decompose`), as MixedModels.jl's GLMM reweights its linear model.

The same factorisation, augmented by ``X``, gives the joint modes of ``(u, beta)``
(lme4's ``nAGQ = 0`` stage).
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .blocks import batched_inverse_lower, batched_solve_lower, batched_solve_upper_t
from .lmm import ReweightedCrossProducts, decompose, ordered_pieces

#: :meth:`PIRLS.own_inverse` holds the block ``L21' (L22 L22')^-1`` (the largest
#: factor's effects by the others') dense: up to this many entries.
MAX_DENSE_L21 = 4_000_000
#: Below this Newton decrement of the penalised deviance a full step is taken unchecked.
SAFE_DECREMENT = 1e-8
#: Below this decrement the step is the last: what remains is of the order of its square.
FINAL_DECREMENT = 1e-11


class Factorization:
    """Blocked Cholesky factor of ``[[M11, ., .], [M21, M22, .], [Mx1, Mx2, Mxx]]``, read
    from the linear model's :class:`~.lmm.Decomposition`.

    ``M = Lambda' Z' W Z Lambda + I`` in blocks 1 and 2; the ``x`` rows are present only
    for the joint ``(u, beta)`` system.
    """

    def __init__(self, dec, cross):
        self.dec = dec
        self.L11 = dec.L11  # (m1, q1, q1)
        self.Lx = dec.Lxy  # (p, p), or (0, 0) without the x rows
        self._cross, self._generation = cross, cross.generation

    def check_current(self):
        """Raise where the cross-products were reweighted since this factorisation: its
        ``L21`` is read through them (:class:`~.coupling.CouplingBlock`), so it is valid
        until the next :meth:`PIRLS.factorize` only."""
        if self.dec.second is not None and self._cross.generation != self._generation:
            raise RuntimeError("this factorisation's cross-products were reweighted since: factorise again")

    @property
    def logdet(self):
        """``log det(M)`` of the random-effects part (lme4's ``ldL2``)."""
        return self.dec.logdet_z

    @property
    def L21(self):
        """``L21``, sparse or dense (see :meth:`~.lmm.Decomposition.L21`); None with one factor."""
        self.check_current()
        return self.dec.L21

    @property
    def L22(self):
        """``L22`` as a dense lower triangle; None with one factor."""
        return self.dec.dense_L22

    def solve(self, r1, r2, rx=None):
        """Solve the (augmented) system for right-hand sides ``r1 (m1, q1)``, ``r2``, ``rx``."""
        self.check_current()
        dec, second = self.dec, self.dec.second
        m1, q1 = r1.shape
        c1 = batched_solve_lower(self.L11, r1[:, :, None])[:, :, 0].ravel()
        c2 = None
        if second is not None:
            c2 = dec.solve_l22(r2 - second.l21_times(dec.pieces2, dec.K1, c1[:, None])[:, 0])
        bx = None
        if rx is not None:
            cx = rx - dec.B1.T @ c1 - (dec.B2.T @ c2 if c2 is not None else 0.0)
            cx = sla.solve_triangular(self.Lx, cx, lower=True, check_finite=False)
            bx = sla.solve_triangular(self.Lx, cx, lower=True, trans="T", check_finite=False)
            c1 = c1 - dec.B1 @ bx
            if c2 is not None:
                c2 = c2 - dec.B2 @ bx
        x2 = np.empty(0)
        if c2 is not None:
            x2 = dec.solve_l22_t(c2)
            c1 = c1 - second.l21t_times(dec.pieces2, dec.K1, x2)
        x1 = batched_solve_upper_t(self.L11, c1.reshape(m1, q1, 1))[:, :, 0]
        return x1, x2, bx


@dataclass
class Mode:
    """The conditional mode at one ``(theta, beta)`` and what the deviance needs there."""

    u1: np.ndarray  # (m1, q1) spherical modes of the largest factor
    u2: np.ndarray  # (q2,) the other factors, stacked
    beta: np.ndarray
    eta: np.ndarray
    dev_resid: np.ndarray  # per-row -2 log-likelihood at the mode, less its constant terms
    factor: Factorization  # of M at the weights of the mode
    n_iter: int
    derivatives: tuple = None  # the family's (score, W, dW/deta) at the mode

    @property
    def penalty(self):
        return float((self.u1**2).sum() + (self.u2**2).sum())

    @property
    def laplace_deviance(self):
        """lme4's Laplace deviance, ``sum dev.resid + ||u||^2 + log det(L)^2``, less the
        log-likelihood's constant terms (the family's ``constant``)."""
        return float(self.dev_resid.sum()) + self.penalty + self.factor.logdet


class PIRLS:
    """Conditional modes of the spherical random effects of a GLMM.

    Parameters
    ----------
    factors : list of RandomFactor
    X : ndarray of shape (n, p)
        Fixed-effects design.
    y : ndarray of shape (n,)
        Outcomes.
    weights : ndarray of shape (n,)
        Prior weights.
    family : Family
    offset : ndarray of shape (n,) or None
        A known term of the linear predictor.

    The life cycle: :meth:`set_theta` once per ``theta``, then :meth:`mode` (``beta``
    fixed) or :meth:`joint_mode` (``beta`` estimated too) as often as needed; each call
    starts from the previous modes, so nearby evaluations take one or two Newton steps.
    """

    def __init__(self, factors, X, y, weights, family, offset=None):
        self.factors = list(factors)
        self.X = np.asarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.w = np.asarray(weights, dtype=float)
        self.family = family
        self.offset = np.zeros(len(self.y)) if offset is None else np.asarray(offset, dtype=float)
        self.dispersion = 1.0
        self.n, self.p = self.X.shape
        self.cross = cross = ReweightedCrossProducts(self.factors, self.X)
        self.order = cross.order
        self.first, self.rest = cross.first, cross.rest
        f1 = self.first
        self.m1, self.q1 = f1.n_levels, f1.q
        self.codes1 = f1.codes
        self._z1T = np.ascontiguousarray(f1.z.T)
        self.q2 = cross.second_size
        if self.rest:
            self._cols2 = cross.cols2
        self.theta = None
        self.u1 = np.zeros((self.m1, self.q1))
        self.u2 = np.zeros(self.q2)

    # -- theta -------------------------------------------------------------------
    def set_theta(self, theta):
        """Fix ``Lambda(theta)``: ``v1 = Z1 Lambda1`` row by row and the values of ``Z2 Lambda2``."""
        theta = np.asarray(theta, dtype=float)
        if self.theta is not None and np.array_equal(theta, self.theta):
            return
        self.theta = theta.copy()
        self._pieces, self.T1 = ordered_pieces(self.cross, theta)
        # (n, q1): row i of Z1 Lambda1 within its level's block; each column contiguous
        self.v1 = (self.T1.T @ self._z1T).T
        if self.rest:
            # values of Z2 Lambda2 in the columns cols2 of each row
            self._vals2 = np.hstack([f.z @ f.cholesky_factor(th) for f, th in zip(self.rest, self._pieces[1:])])

    # -- pieces of one Newton step -------------------------------------------------
    def level_sums(self, a):
        """Sums over the levels of the largest factor of ``a`` ((n,) or (n, k), by rows)."""
        return self.cross.level_sums(a)

    def random_part(self, u1, u2):
        """``Z Lambda u`` on the rows."""
        out = self.v1[:, 0] * u1[:, 0][self.codes1]
        for a in range(1, self.q1):
            out += self.v1[:, a] * u1[:, a][self.codes1]
        if self.rest:
            out = out + np.einsum("ij,ij->i", self._vals2, u2[self._cols2])
        return out

    def _gradient_u(self, r):
        """``Lambda' Z' r`` split into block 1 (m1, q1) and block 2."""
        g1 = np.empty((self.m1, self.q1))
        for a in range(self.q1):
            g1[:, a] = self.level_sums(r * self.v1[:, a])
        g2 = np.empty(0)
        if self.rest:
            g2 = np.bincount(self._cols2.ravel(), weights=(r[:, None] * self._vals2).ravel(), minlength=self.q2)
        return g1, g2

    def factorize(self, W, joint=False):
        """Factor ``Lambda' Z' W Z Lambda + I`` (augmented by ``X`` when ``joint``): the
        linear model's factorisation of the cross-products at the weights ``W``."""
        self.cross.reweight(W, joint)
        return Factorization(decompose(self.cross, self._pieces, self.T1), self.cross)

    # -- Newton iterations ---------------------------------------------------------
    def mode(self, beta, tol=1e-20, max_iter=100, start=None):
        """Conditional modes of ``u`` at the current ``theta`` and the given ``beta``;
        ``start``: a prediction ``(u1, u2)`` of them to begin from where it is better
        than the last modes."""
        return self._newton(np.asarray(beta, dtype=float), joint=False, tol=tol, max_iter=max_iter, start=start)

    def joint_mode(self, beta0, tol=1e-20, max_iter=100):
        """Joint modes of ``(u, beta)`` at the current ``theta`` (lme4's ``nAGQ = 0``)."""
        return self._newton(np.asarray(beta0, dtype=float), joint=True, tol=tol, max_iter=max_iter)

    def deviance_rows(self, eta):
        """Per-row ``-2 log-likelihood`` less its constant terms."""
        return -2.0 * self.family.kernel(self.y, eta, self.w, self.dispersion)

    def _newton(self, beta, joint, tol, max_iter, start=None):
        """Newton's method on the penalised deviance from the last modes, or from ``start``
        (a caller's prediction ``(u1, u2)`` of the new ones) unless its first step needs a
        line search and the last modes are better.

        Far from the mode a step is halved until it lowers the penalised deviance; close to
        it (a decrement below ``SAFE_DECREMENT``) full steps are taken unchecked (the
        objective is convex), and once the decrement is below ``FINAL_DECREMENT`` the step
        is the last: Newton's quadratic convergence leaves an error of the order of its
        square, below ``tol``. The weights and the factorisation are then formed at the
        final modes (the Laplace deviance needs them there) with no further solve."""
        X = self.X
        offset = self.offset + X @ beta
        last_modes = (self.u1, self.u2)
        u1, u2 = last_modes
        if start is not None:  # the caller's prediction, where it is inside the link's range
            eta = offset + self.random_part(*start)
            if self._valid(eta):
                u1, u2 = start
            else:
                start = None
        if start is None:
            eta = offset + self.random_part(u1, u2)
        dres = pdev = None  # the deviance at the current modes, formed when needed
        last, final = np.inf, False
        for it in range(1, max_iter + 1):
            derivs = self.family.derivatives(self.y, eta, self.w, self.dispersion, order=3)
            r, W = derivs[0], derivs[1]
            fac = self.factorize(W, joint)
            if final:
                break
            g1, g2 = self._gradient_u(r)
            g1 -= u1
            g2 = g2 - u2
            gx = X.T @ r if joint else None
            d1, d2, dx = fac.solve(g1, g2, gx)
            decrement = float((g1 * d1).sum() + g2 @ d2 + (gx @ dx if joint else 0.0))
            if decrement <= tol or it == max_iter or (it > 1 and decrement > 0.5 * last and decrement < 1e-16):
                break
            last = decrement
            final = decrement <= FINAL_DECREMENT
            if decrement < SAFE_DECREMENT:
                start = None  # a good prediction
            t = 1.0
            while True:
                nu1, nu2 = u1 + t * d1, u2 + t * d2
                nbeta = beta + t * dx if joint else beta
                noff = self.offset + X @ nbeta if joint else offset
                neta = noff + self.random_part(nu1, nu2)
                if decrement < SAFE_DECREMENT:  # close to the mode a full Newton step is safe
                    ndres = npdev = None
                    break
                if pdev is None:
                    dres = self.deviance_rows(eta)
                    pdev = dres.sum() + (u1**2).sum() + (u2**2).sum()
                if start is not None:  # a prediction far from the mode: is it worse than the last modes?
                    start = None
                    leta = offset + self.random_part(*last_modes)
                    ldres = self.deviance_rows(leta)
                    lpdev = ldres.sum() + (last_modes[0] ** 2).sum() + (last_modes[1] ** 2).sum()
                    if lpdev < pdev:  # back to the last modes, no step taken
                        (nu1, nu2), nbeta, noff, neta, ndres, npdev = last_modes, beta, offset, leta, ldres, lpdev
                        final = False
                        break
                ndres = self.deviance_rows(neta)
                npdev = ndres.sum() + (nu1**2).sum() + (nu2**2).sum()
                if npdev <= pdev + 1e-10 * abs(pdev) or t < 1e-10:
                    break
                t *= 0.5
            if t < 1e-10:  # no progress possible: at the mode up to rounding
                final = False
                break
            u1, u2, beta, offset, eta, dres, pdev = nu1, nu2, nbeta, noff, neta, ndres, npdev
        if dres is None:
            dres = self.deviance_rows(eta)
        self.u1, self.u2 = u1, u2
        return Mode(u1, u2, beta, eta, dres, fac, it, derivs)

    def _valid(self, eta):
        """Whether the linear predictor is finite and inside the link's range."""
        lower = self.family.eta_lower
        return bool(np.isfinite(eta).all()) and (lower is None or bool((eta > lower).all()))

    # -- derivatives of the Laplace deviance -----------------------------------------
    def own_inverse(self, fac):
        """``M^-1 v_i`` on row ``i``'s own coordinates, ``v_i`` the row of ``Z Lambda``:
        ``(s1 (n, q1), s2 (n, Q2))`` (its level of the first factor, then its columns
        ``cols2`` of block 2). ``v_i' M^-1 v_i`` is the row's leverage, the derivative of
        ``log det M`` in its weight.

        With ``A = L11^-1`` (per level) and ``S22 = M22.1^-1 = (L22 L22')^-1``::

            M^-1 = [[A'A + A' L21' S22 L21 A,  -A' L21' S22],
                    [-S22 L21 A,                S22        ]]

        of which only the diagonal blocks of the first factor's levels and the entries
        of the pairs (level, column of block 2) that share a row are formed.
        """
        fac.check_current()
        codes1, v1, dec = self.codes1, self.v1, fac.dec
        A = dec.L11_inv if dec.L11_inv is not None else batched_inverse_lower(fac.L11)  # (m1, q1, q1)
        M11 = np.swapaxes(A, 1, 2) @ A
        if not self.rest:
            return np.einsum("iab,ib->ia", M11[codes1], v1), None
        m1, q1, q2 = self.m1, self.q1, self.q2
        S22 = sla.cho_solve((fac.L22, True), np.eye(q2), check_finite=False)
        G = dec.second.l21t_times(dec.pieces2, dec.K1, S22).reshape(m1, q1, q2)  # L21' S22 by level
        coo = sp.coo_matrix(fac.L21)  # G_j L21_j over the nonzeros of L21
        level, b = np.divmod(coo.col, q1)
        GL = np.zeros((m1, q1, q1))
        for a in range(q1):
            GL[:, a, :] = np.bincount(level * q1 + b, weights=G[level, a, coo.row] * coo.data,
                                      minlength=m1 * q1).reshape(m1, q1)
        M11 += np.swapaxes(A, 1, 2) @ GL @ A
        M12 = -np.swapaxes(A, 1, 2) @ G  # (m1, q1, q2)
        cols2, vals2 = self._cols2, self._vals2
        M12_rows = M12.transpose(0, 2, 1)[codes1[:, None], cols2]  # (n, Q2, q1)
        S22_rows = S22[cols2[:, :, None], cols2[:, None, :]]  # (n, Q2, Q2)
        s1 = np.einsum("iab,ib->ia", M11[codes1], v1) + np.einsum("ita,it->ia", M12_rows, vals2)
        s2 = np.einsum("ita,ia->it", M12_rows, v1) + np.einsum("itu,iu->it", S22_rows, vals2)
        return s1, s2

    def term_positions(self):
        """Per factor (input order): where its random effects sit, ``(block, start)``:
        block 1 for the first factor (start 0), else block 2 at ``start`` in ``u2`` and at
        ``column`` in ``cols2`` (``(2, start, column)``)."""
        out = {self.order[0]: (1, 0, 0)}
        start = column = 0
        for k, f in zip(self.order[1:], self.rest):
            out[k] = (2, start, column)
            start += f.n_levels * f.q
            column += f.q
        return [out[k] for k in range(len(self.factors))]

    # -- results -------------------------------------------------------------------
    def modes_by_factor(self, u1, u2):
        """Spherical modes cut into one ``(n_levels, q)`` array per factor, in input order."""
        out = {self.order[0]: u1}
        start = 0
        for k, f in zip(self.order[1:], self.rest):
            size = f.n_levels * f.q
            out[k] = u2[start : start + size].reshape(f.n_levels, f.q)
            start += size
        return [out[k] for k in range(len(self.factors))]
