"""A GLMM with one scalar random effect per level: Laplace and AGQ.

The commonest GLMM (cbpp: ``y ~ period + (1 | herd)``) has one grouping factor and one
random term. Then ``Lambda' Z' W Z Lambda + I`` is diagonal, every level's
conditional mode solves its own one-dimensional problem, and the deviance (Laplace, or
adaptive Gauss-Hermite quadrature around the modes) and its derivatives in
``(theta, beta)`` are sums over levels. With the rows sorted by level, each sum is one
``numpy.add.reduceat``: no sparse matrices, no batched factorisations. The general code
(:mod:`.pirls`, :mod:`.glmm`) gives the same numbers at several times the cost.

Notation as :mod:`.glmm`: ``eta = offset + X beta + theta z u_j``, ``h_j = theta^2 sum_j
z^2 W + 1`` (the level's ``L_j^2``), and the Laplace deviance ``sum dev.resid + sum u_j^2 +
sum log h_j``. ``W``, its derivatives ``W1 = dW/deta``, ``W2`` and the score ``r`` are the
family's (:mod:`.family`). A family with a dispersion parameter adds ``s = log(dispersion)``
as the last coordinate of ``x``.
"""

import math
from types import SimpleNamespace

import numpy as np
from scipy.linalg import lapack
from scipy.special import logsumexp

from .dense_gradient import solve_positive_definite
from .family import dispersion_from_log


#: Below this predicted decrease (per level) a Newton step for the mode is taken without
#: checking that it lowers the level's penalised deviance: so close to the mode of a
#: convex problem it does.
SAFE_DECREASE = 1e-3


def _cholesky(H):
    """The lower Cholesky factor of the symmetric ``H``, or None where ``H`` is not finite
    and positive definite."""
    if not np.isfinite(H).all():
        return None
    L, info = lapack.dpotrf(H, lower=1)
    return L if info == 0 else None


class ScalarGLMM:
    """Deviance, gradient and Hessian of ``x = [theta, beta]`` for one scalar random term.

    Parameters
    ----------
    factor : RandomFactor
        The grouping factor, with ``q = 1`` (an intercept or a single slope).
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,)
    weights : ndarray of shape (n,)
    family : Family
    offset : ndarray of shape (n,)
    constant : callable
        ``constant(dispersion)``: ``-2 x`` the log-likelihood's terms free of ``eta``.
    constant_slopes : callable
        ``constant_slopes(dispersion)``: its first and second derivatives in ``log(dispersion)``.
    nodes, node_weights : ndarray, optional
        A Gauss-Hermite rule for N(0, 1): the adaptive quadrature deviance (lme4's
        ``nAGQ``); None for the Laplace approximation. The exact Hessian is the Laplace
        deviance's either way (with quadrature, a close stand-in for Newton steps).

    Each evaluation starts its Newton iterations for the modes from the last evaluation's
    modes moved along their derivative (known from the gradient): nearby evaluations,
    those of a finite-difference Hessian above all, need one step. The deviance is even
    in ``theta`` (``u -> -u``), so a search may cross 0 freely.
    """

    def __init__(self, factor, X, y, weights, family, offset, constant, constant_slopes, nodes=None,
                 node_weights=None):
        if factor.q != 1:
            raise ValueError("ScalarGLMM needs one random term per level")
        self.nodes, self.node_weights = nodes, node_weights  # None: the Laplace approximation
        order = np.argsort(factor.codes, kind="stable")
        self.order = order
        counts = np.bincount(factor.codes, minlength=factor.n_levels)
        if (counts == 0).any():
            raise ValueError("every level needs at least one row")
        self.counts = counts
        self.starts = np.zeros_like(counts)  # each level's first row
        np.cumsum(counts[:-1], out=self.starts[1:])
        self.z = factor.z[order, 0]
        self.zz = self.z * self.z
        self.X = np.asarray(X, dtype=float)[order]
        self.XT = np.ascontiguousarray(self.X.T)
        self.y = np.asarray(y, dtype=float)[order]
        self.w = np.asarray(weights, dtype=float)[order]
        self.offset = np.asarray(offset, dtype=float)[order]
        self.family, self.constant, self.constant_slopes = family, constant, constant_slopes
        self.n_dispersion = int(family.has_dispersion)
        self.dispersion = 1.0
        self.n, self.p = self.X.shape
        self.u = np.zeros(factor.n_levels)
        # the covariate products the level sums of :meth:`_laplace_parts` weigh by W and W1
        self._zW_rows = np.empty((1 + self.p, self.n))  # [z^2, X z]
        self._zW_rows[0] = self.zz
        np.multiply(self.XT, self.z, out=self._zW_rows[1:])
        self._zW1_rows = self._zW_rows * self.z  # [z^3, X z^2]
        self._rows = np.empty((2 * (1 + self.p) + 1 + 2 * self.n_dispersion, self.n))
        self._E = np.zeros((1 + self.p + self.n_dispersion, self.n))  # the rows' d eta / dx, modes held
        self._E[1 : 1 + self.p] = self.XT
        self._tangent = None  # (x, modes, their derivative in x) of the last evaluation
        self._last_exact = None  # (x, exact Hessian) of the last one computed
        self._last_value = None  # (x, deviance) of the last evaluation

    def _level_sums(self, a):
        """Sums over each level's rows (the rows are sorted by level)."""
        return np.add.reduceat(a, self.starts, axis=0)

    def _on_rows(self, a):
        """Each level's value (the last axis of ``a``) repeated on its rows."""
        return a.repeat(self.counts, axis=-1)

    def _level_sums_of_rows(self, rows):
        """:meth:`_level_sums` of each row of ``rows`` (terms by rows): terms by levels."""
        return np.add.reduceat(rows, self.starts, axis=1)

    def _deviance_rows(self, eta):
        """Per-row ``-2 log-likelihood`` less its constant terms."""
        return -2.0 * self.family.kernel(self.y, eta, self.w, self.dispersion)

    def _penalised(self, offset, v, u):
        """Per-level penalised deviance ``sum dev.resid + u^2`` and the rows' ``eta``."""
        eta = offset + v * self._on_rows(u)
        return self._level_sums(self._deviance_rows(eta)) + u**2, eta

    def mode(self, theta, beta, tol=1e-9, max_iter=100):
        """Conditional modes ``u`` at ``(theta, beta)`` by Newton's method, level by level.

        Each level's problem is convex. Far from the mode (a predicted decrease above
        ``SAFE_DECREASE``) a step must lower its level's penalised deviance, else it is
        halved; once every level's predicted decrease is below ``tol``, the step is taken
        and, Newton converging quadratically, is the last (what remains is of order
        ``tol^2``, below rounding). Returns ``(u, eta)``.
        """
        offset = self.X.dot(beta)
        offset += self.offset
        v = theta * self.z
        vv = v * v
        u = self.u
        eta = offset + v * self._on_rows(u)
        bounded = self.family.eta_lower is not None
        if bounded and not np.all(eta > self.family.eta_lower):  # a warm start outside the link's range
            u = np.zeros_like(u)
            eta = offset.copy()
        pdev = None
        rows = self._rows[:2]  # the level sums of one step, as one reduceat
        for _ in range(max_iter):
            r, W = self.family.derivatives(self.y, eta, self.w, self.dispersion)
            np.multiply(v, r, out=rows[0])
            np.multiply(vv, W, out=rows[1])
            sums = self._level_sums_of_rows(rows)
            grad = sums[0] - u
            curv = sums[1] + 1.0
            step = grad / curv
            decrease = grad * step
            largest = decrease.max()
            # near the mode: full steps, no check (not where a step may leave the link's range)
            if largest <= SAFE_DECREASE and not bounded:
                u = u + step
                eta = offset + v * self._on_rows(u)
                pdev = None
                if largest <= tol:
                    break
                continue
            if pdev is None:
                pdev, _ = self._penalised(offset, v, u)
            t = np.ones_like(u)
            while True:
                cand = u + t * step
                cdev, ceta = self._penalised(offset, v, cand)
                worse = cdev > pdev + 1e-12 * np.abs(pdev)
                if not worse.any() or t.min() < 1e-10:
                    break
                t = np.where(worse, 0.5 * t, t)
            u, pdev, eta = cand, cdev, ceta
        self.u = u
        return u, eta

    def value_and_gradient(self, x):
        """The deviance at ``x = [theta, beta]`` (Laplace, or AGQ with quadrature nodes) and
        its gradient (the total derivative, the modes moving with ``x``: implicit
        differentiation of their equation)."""
        return self._evaluate(x, hessian=None)[:2]

    def value_gradient_exact_hessian(self, x):
        """:meth:`value_and_gradient` and the exact Hessian of the Laplace deviance (for
        the optimum's check and the standard errors: what a finite-difference Hessian
        gives, without its ``d`` gradient evaluations)."""
        return self._evaluate(x, hessian="exact")

    def exact_hessian(self, x):
        """The exact Hessian at ``x``; no evaluation when the last exact one was at ``x`` or
        at its mirror ``-theta`` (where it is ``M H M``, ``M = diag(-1, 1, ...)``)."""
        if self._last_exact is not None:
            x0, H = self._last_exact
            if np.array_equal(x, x0):
                return H
            mirror = np.ones(len(x))
            mirror[0] = -1.0
            if np.array_equal(x, x0 * mirror):
                return H * np.outer(mirror, mirror)
        return self.value_gradient_exact_hessian(x)[2]

    def value_gradient_convex_hessian(self, x):
        """:meth:`value_and_gradient`, for Newton steps a positive definite Hessian (the
        exact one where it is: steps on it converge quadratically; else the approximate one
        of :meth:`value_gradient_hessian` where that is, else None), and its lower Cholesky
        factor (the step's solve)."""
        return self._evaluate(x, hessian="convex")

    def value_gradient_hessian(self, x):
        """:meth:`value_and_gradient` and an approximate Hessian: that of the penalised part
        ``sum dev.resid + ||u||^2``, ``2 (E' W E - R' diag(1/h) R)`` (the Schur complement
        of the joint PIRLS system), plus the curvature of ``sum log h_j`` in theta at fixed
        weights. What it leaves out (the weights' movement in ``log det``) is a sum over
        levels where the rest sums over rows: Newton steps on it converge fast, at the
        cost of one product."""
        return self._evaluate(x, hessian="approximate")

    def _evaluate(self, x, hessian):
        """Value, gradient and a Hessian at ``x`` (``hessian``: None, ``"approximate"``,
        ``"exact"`` or ``"convex"``, see the public methods): the Laplace deviance's, or
        with quadrature nodes the AGQ deviance's value and gradient, the Laplace Hessian
        standing in for theirs; ``"convex"`` adds the Hessian's Cholesky factor)."""
        P = self._laplace_parts(x, order=3 if hessian is None else 4)
        value, grad = self._agq(P) if self.nodes is not None else (P.value, P.grad)
        self._last_value = (P.x, value)
        if hessian is None:
            return value, grad, None
        if hessian in ("exact", "convex"):
            H = self._exact_hessian(P)
            self._last_exact = (P.x, H)
            if hessian == "exact":
                return value, grad, H
            L = _cholesky(H)
            if L is not None:
                return value, grad, H, L
        # the penalised part's Hessian, and the curvature of sum log h_j in theta at fixed weights
        H = 2.0 * ((P.E * P.W) @ P.E.T - (P.R / P.h) @ P.R.T)
        H[0, 0] += float(np.sum(2.0 * P.a * (1.0 - P.theta**2 * P.a) / P.h**2))
        if hessian == "convex":
            L = _cholesky(H)
            return (value, grad, H, L) if L is not None else (value, grad, None, None)
        return value, grad, H

    def _laplace_parts(self, x, order=3):
        """The modes at ``x`` and the Laplace deviance's value, gradient and the pieces
        its Hessian and the AGQ deviance are built from (``order=4``: also those only the
        exact Hessian needs).

        Every level sum the gradient and the Hessian need is one of ``a_j = sum z^2 W``,
        ``C_j = sum X z W``, ``b_j = sum z^3 W1``, ``D_j = sum X z^2 W1``, ``c_j = sum z r``
        (and with a dispersion ``sum z dr_s``, ``sum z^2 dW_s``): the modes are constant
        within a level, so the sums along their path (``Da``, ``q``) follow from these
        without a pass over the rows. All are one ``reduceat`` over the stacked rows. The
        rows' ``d eta / dx``, ``E`` with the modes held and ``deta`` with them moving, are
        formed only where the Hessian or quadrature needs them."""
        p, nd = self.p, self.n_dispersion
        k, d = 1 + p, 1 + p + nd  # the (theta, beta) block; all coordinates
        theta, beta = float(x[0]), x[1:k]
        theta2 = theta * theta
        self.dispersion = dispersion_from_log(x[k]) if nd else 1.0
        if self._tangent is not None:  # start the modes on the last evaluation's tangent
            x0, u0, dU0 = self._tangent
            self.u = u0 + (x - x0).dot(dU0)
        u, eta = self.mode(theta, beta)
        z = self.z
        r, W, W1, *W2 = self.family.derivatives(self.y, eta, self.w, self.dispersion, order)
        kernel = self.family.kernel(self.y, eta, self.w, self.dispersion)
        value = -2.0 * float(kernel.sum()) + float(u.dot(u)) + self.constant(self.dispersion)
        if nd:  # the score and the weights move with the dispersion
            dl_s, dr_s, dW_s = self.family.dispersion_derivatives(self.y, eta, self.w, self.dispersion)
        # the level sums: [a, C] from W, [b, D] from W1, c from r [, the dispersion's two]
        rows = self._rows
        np.multiply(self._zW_rows, W, out=rows[:k])
        np.multiply(self._zW1_rows, W1, out=rows[k : 2 * k])
        np.multiply(z, r, out=rows[2 * k])
        if nd:
            np.multiply(z, dr_s, out=rows[2 * k + 1])
            np.multiply(self.zz, dW_s, out=rows[2 * k + 2])
        sums = self._level_sums_of_rows(rows)
        a, b, c = sums[0], sums[k], sums[2 * k]
        h = theta2 * a + 1.0
        value += float(np.log(h).sum())
        # the modes' derivative: h_j du_j = d/dx (sum v r) at fixed u = [c - theta a u, -theta C, theta sum z dr_s]
        R = sums[:d] * -theta
        R[0] *= u
        R[0] += c
        if nd:
            R[k] = sums[2 * k + 1] * theta
        inv_h = 1.0 / h
        dU = R * inv_h
        x = np.array(x, dtype=float)
        if math.isfinite(value):  # the next evaluation's warm start (not from a failed one)
            self._tangent = (x, u, dU)
        # d a_j / dx along the modes' path: theta b dU + [u b, D, sum z^2 dW_s]
        Da = dU * (theta * b)
        Da[0] += u * b
        Da[1:k] += sums[k + 1 : 2 * k]
        if nd:
            Da[k] += sums[2 * k + 2]
        dh = theta2 * Da
        dh[0] += (2.0 * theta) * a
        grad = dh.dot(inv_h)
        grad[0] -= 2.0 * u.dot(c)
        grad[1:k] -= 2.0 * self.XT.dot(r)
        if nd:
            grad[-1] += -2.0 * dl_s.sum() + self.constant_slopes(self.dispersion)[0]
        else:
            dr_s = dW_s = None
        v = E = deta = q = None
        if order >= 4 or self.nodes is not None:  # the rows' d eta / dx: E (modes held), deta (moving)
            v = theta * z
            E = self._E  # [z u, X', 0]: only the first row moves
            np.multiply(z, self._on_rows(u), out=E[0])
            deta = E + v * self._on_rows(dU)
        if order >= 4:  # q = sum z W deta[:k] + theta a dU = [u a, C] + 2 theta a dU
            q = dU[:k] * ((2.0 * theta) * a)
            q[0] += u * a
            q[1:] += sums[1:k]
        return SimpleNamespace(x=x, theta=theta, u=u, eta=eta, W=W, W1=W1, W2=W2, r=r, v=v, a=a, b=b, c=c, q=q, h=h,
                               inv_h=inv_h, E=E, R=R, dU=dU, deta=deta, Da=Da, dh=dh, value=value, grad=grad, dr_s=dr_s, dW_s=dW_s)

    def _agq(self, P):
        """The adaptive Gauss-Hermite deviance and its gradient around the modes of ``P``.

        Level ``j``'s integral is taken at ``u_jk = u_j + z_k / sqrt(h_j)``::

            D = sum_j [ log h_j - 2 log sum_k w_k exp(z_k^2 / 2 - devc_j(u_jk) / 2) ]

        with ``devc_j(u)`` the level's deviance residuals plus ``u^2`` (one node at 0 is the
        Laplace approximation). The nodes move with the modes and with ``h_j``; the
        gradient follows both, and with a dispersion parameter also its direct effect on
        each node's likelihood. A loop over the nodes (a few), not over levels or rows.
        """
        z, starts = self.z, self.starts
        offset = P.eta - P.v * self._on_rows(P.u)  # offset + X beta
        root_h = np.sqrt(P.h)
        K, (d, m) = len(self.nodes), P.dU.shape
        ell = np.empty((K, m))
        dell = np.empty((K, d, m))  # d ell_jk / dx
        Ek = P.E.copy()
        for k, (zk, wk) in enumerate(zip(self.nodes, self.node_weights)):
            uk = P.u + zk / root_h
            duk = P.dU - (0.5 * zk / (root_h * P.h)) * P.dh
            etak = offset + P.v * self._on_rows(uk)
            devc = self._level_sums(self._deviance_rows(etak)) + uk * uk
            ell[k] = np.log(wk) + 0.5 * zk * zk - 0.5 * devc
            rk = self.family.derivatives(self.y, etak, self.w, self.dispersion, order=1)[0]
            np.multiply(z, self._on_rows(uk), out=Ek[0])
            detak = Ek + P.v * self._on_rows(duk)
            dell[k] = np.add.reduceat(detak * rk, starts, axis=1) - uk * duk
            if self.n_dispersion:  # the likelihood's own slope in log(dispersion) at the node
                dl_s = self.family.dispersion_derivatives(self.y, etak, self.w, self.dispersion)[0]
                dell[k, -1] += self._level_sums(dl_s)
        lse = logsumexp(ell, axis=0)
        pi = np.exp(ell - lse)
        value = float(np.log(P.h).sum() - 2.0 * lse.sum()) + self.constant(self.dispersion)
        grad = (P.dh / P.h).sum(axis=1) - 2.0 * np.einsum("km,kdm->d", pi, dell)
        if self.n_dispersion:
            grad[-1] += self.constant_slopes(self.dispersion)[0]
        return value, grad

    def _exact_hessian(self, P):
        """The Hessian of the Laplace deviance: the derivative of the gradient's two terms,
        ``-2 sum r E`` and ``sum_j Dh_j / h_j``, with the modes moving.

        Differentiating the mode's equation twice gives the modes' second derivative,
        ``h_j D2u_j = -(e q_j' + q_j e' + sum_j v W' deta deta')`` (``e``: theta's unit
        vector, ``W'`` = dW/deta). Every product of two row derivatives ends up in one
        weighted sum ``deta diag(omega) deta'``; the rest are per-level vectors along ``e``.
        ``P``: the Laplace parts at the point (``Da``, ``dh``: the derivatives of ``a_j``
        and ``h_j``, terms by levels). With a dispersion parameter the ``(theta, beta)``
        block is this (the dispersion held), and the dispersion's row and column are
        :meth:`_dispersion_column`'s.
        """
        k = 1 + self.p  # the (theta, beta) block
        z = self.z
        theta, W, s1, a, inv_h = P.theta, P.W, P.W1, P.a, P.inv_h
        (s2,) = P.W2  # dW1/deta (the Hessian's evaluations ask the family for order 4)
        E, dU, deta, Da, dh = P.E[:k], P.dU[:k], P.deta[:k], P.Da[:k], P.dh[:k]
        b, c, q = P.b, P.c, P.q  # sum z^3 W1, sum z r, sum z W deta + theta a dU
        theta2 = theta * theta
        # the products of row derivatives: from D2a (W'' deta deta') and from D2u (W' deta deta'),
        # omega = theta^2 z^2 s2 / h_j - theta^4 z s1 b_j / h_j^2
        b_h = b * inv_h
        b_h2 = b_h * inv_h
        omega = self.zz * s2 * self._on_rows(theta2 * inv_h)
        omega -= z * s1 * self._on_rows((theta2 * theta2) * b_h2)
        # with the first derivatives' product from the gradient's -2 sum r E term
        A = deta * omega
        A += E * (W + W)
        H = A.dot(deta.T)
        dh_h = dh * inv_h
        H -= dh_h.dot(dh_h.T)
        # the terms along theta's unit vector: e t' + t e'
        t = Da.dot((2.0 * theta) * inv_h) + dU.dot(theta2 * b_h - c) - q.dot((theta2 * theta) * b_h2)
        H[0] += t
        H[:, 0] += t
        H[0, 0] += 2.0 * float(a.dot(inv_h))
        H += H.T
        H *= 0.5
        if self.n_dispersion:  # bordered by the dispersion's row and column
            column = self._dispersion_column(P)
            full = np.empty((k + 1, k + 1))
            full[:k, :k] = H
            full[:, k] = full[k, :] = column
            H = full
        return H

    def _dispersion_column(self, P):
        """The exact Hessian's column of ``s = log(dispersion)``, the derivative in ``s`` of
        the gradient's three terms (``-2 sum r E``, ``sum_j Dh_j / h_j``, ``-2 sum dl/ds``)
        with the modes moving. ``D2u[i]``, the modes' derivative in ``x_i`` and ``s``,
        solves the mode equation differentiated twice,
        ``h D2u_i = -Dh_s Du_i - sum v (W1 deta_s + W_s) E_i + [theta] (sum z r_s -
        2 theta a Du_s) + [s] sum v (r_ss - W_s deta_s)`` (the brackets: only for that
        coordinate; ``_s`` a partial derivative in ``s``, the family's)."""
        z, starts = self.z, self.starts
        theta, v, W, W1, (W2,), a, h = P.theta, P.v, P.W, P.W1, P.W2, P.a, P.h
        r_s, W_s = P.dr_s, P.dW_s
        l_ss, r_ss, W_ss, W1_s = self.family.dispersion_second_derivatives(self.y, P.eta, self.w, self.dispersion)
        E, dU, deta, Da, dh = P.E, P.dU, P.deta, P.Da, P.dh
        dU_s, deta_s, dh_s = dU[-1], deta[-1], dh[-1]
        dU_s_rows = self._on_rows(dU_s)
        rhs = -dh_s * dU - np.add.reduceat(E * (v * (W1 * deta_s + W_s)), starts, axis=1)
        rhs[0] += self._level_sums(z * r_s) - 2.0 * theta * a * dU_s
        rhs[-1] += self._level_sums(v * (r_ss - W_s * deta_s))
        ddeta = v * self._on_rows(rhs / h)  # d(deta_i)/ds
        ddeta[0] += z * dU_s_rows
        dDa = np.add.reduceat((z * z) * ((W2 * deta_s + W1_s) * deta + W1 * ddeta), starts, axis=1)
        dDa[-1] += self._level_sums(z * z * (W1_s * deta_s + W_ss))
        column = theta * theta * (dDa @ (1.0 / h)) - (dh / h**2) @ dh_s - 2.0 * (E @ (r_s - W * deta_s))
        column[0] += 2.0 * theta * (Da[-1] @ (1.0 / h)) - 2.0 * (P.c @ dU_s)
        column[-1] += self.constant_slopes(self.dispersion)[1] - 2.0 * float(np.sum(r_s * deta_s + l_ss))
        return column

    def joint_mode(self, theta, beta0, tol=1e-1, max_iter=100):
        """``beta`` maximising the penalised likelihood jointly with the modes at ``theta``
        (lme4's ``nAGQ = 0`` estimate, its start for the Laplace search, so to a loose
        ``tol`` on the predicted decrease of the penalised deviance): Newton's method
        on ``(u, beta)``, the ``u`` block diagonal, so each step solves a ``p x p`` system
        (the Schur complement). From ``beta0``, ``u = 0``; leaves the modes in place.
        The problem is convex: steps are halved until the penalised deviance falls, a
        check skipped once the predicted decrease is below ``SAFE_DECREASE``. Where the
        system turns singular (weights vanishing under separation) it stops there: this
        is a start, and the search that follows reports what it finds."""
        X, XT = self.X, self.XT
        v = theta * self.z
        u, beta = np.zeros_like(self.u), np.array(beta0, dtype=float)
        eta = X.dot(beta)
        eta += self.offset
        pdev = None
        rows = self._rows[: 2 + self.p]  # the level sums of one step, as one reduceat
        for _ in range(max_iter):
            r, W = self.family.derivatives(self.y, eta, self.w, self.dispersion)
            vW = v * W
            np.multiply(v, r, out=rows[0])
            np.multiply(v, vW, out=rows[1])
            np.multiply(XT, vW, out=rows[2:])
            sums = self._level_sums_of_rows(rows)
            g_u, h, C = sums[0] - u, sums[1] + 1.0, sums[2:]  # C: (p, levels)
            C_h = C / h
            S = (XT * W).dot(X) - C_h.dot(C.T)
            g_b = XT.dot(r)
            try:
                db = solve_positive_definite(S, g_b - C_h.dot(g_u))
            except np.linalg.LinAlgError:  # weights vanishing (separation): keep the start so far
                break
            du = (g_u - db.dot(C)) / h
            decrease = 0.5 * float(g_u.dot(du) + g_b.dot(db))
            t = 1.0
            while True:
                cand_u, cand_b = u + t * du, beta + t * db
                cand_eta = X.dot(cand_b) + self.offset + v * self._on_rows(cand_u)
                if decrease <= SAFE_DECREASE or t < 1e-10:
                    pdev = None  # not computed at the new point
                    break
                if pdev is None:
                    pdev = float(self._deviance_rows(eta).sum() + u.dot(u))
                cdev = float(self._deviance_rows(cand_eta).sum() + cand_u.dot(cand_u))
                if cdev <= pdev:
                    pdev = cdev
                    break
                t *= 0.5
            u, beta, eta = cand_u, cand_b, cand_eta
            if decrease <= tol:
                break
        self.u = u
        return beta

    def conditional_dispersion(self, theta, beta):
        """The family's moment estimate of the dispersion at the conditional means (the
        modes left by :meth:`joint_mode`), set as the model's dispersion: a start near the
        optimum, where the fixed-effects-only GLM's estimate counts the levels' variance
        as dispersion."""
        eta = self.offset + self.X @ beta + theta * self.z * self._on_rows(self.u)
        self.dispersion = self.family.start_dispersion(self.y, self.family.mean(eta), self.w)
        return self.dispersion

    def em_theta(self, theta, eta):
        """One EM step for theta: the root mean square of the levels' random effects under
        their Laplace posteriors, ``sqrt(mean(theta^2 (u_j^2 + 1 / h_j)))``, at the modes
        ``u`` and their linear predictor ``eta`` (a start: no mode of its own). Returns the
        new theta and the levels' ``a_j = sum z^2 W`` (``h_j = theta^2 a_j + 1``)."""
        u = self.u
        a = self._level_sums(self.zz * self.family.derivatives(self.y, eta, self.w, self.dispersion)[1])
        h = theta * theta * a + 1.0
        return abs(theta) * math.sqrt((float(u.dot(u)) + float(np.sum(1.0 / h))) / len(u)), a

    def _move_modes(self, theta, new, a):
        """The modes at theta moved to ``new`` under the Gaussian approximation at the
        curvatures ``a`` (``u_j`` proportional to ``theta / (theta^2 a_j + 1)``): a start
        for the modes there."""
        self.u = self.u * (new / theta) * (theta * theta * a + 1.0) / (new * new * a + 1.0)

    def em_start(self, theta, beta):
        """The search's start for theta from the modes :meth:`joint_mode` left at ``theta``:
        two EM steps (:meth:`em_theta`; the modes moved by one Newton step at the first
        one's value) and Aitken's extrapolation of the three values where they converge
        linearly. EM's rate (the fraction of missing information) is often 0.3-0.9, so one
        step leaves much of the way; the extrapolation lands near its fixed point, and the
        search needs a Newton step less. Where the steps do not shrink in one direction,
        the second step's value. The modes are left moved to the value returned."""
        eta = self.offset + self.X.dot(beta) + theta * self.z * self._on_rows(self.u)
        first, a = self.em_theta(theta, eta)
        if not (first > 0 and math.isfinite(first)):
            return first
        self._move_modes(theta, first, a)
        _, eta = self.mode(first, beta, tol=1e-2, max_iter=1)
        second, a = self.em_theta(first, eta)
        if not (second > 0 and math.isfinite(second)):
            return first
        ratio = (second - first) / (first - theta) if first != theta else 0.0
        new = second
        if 0.0 < ratio < 1.0:
            extrapolated = first + (second - first) / (1.0 - ratio)
            new = extrapolated if extrapolated > 0 else second
        self._move_modes(first, new, a)
        return new

    def fixed_information(self, x):
        """``X'WX - C diag(1/h) C'`` at the modes of ``x``: the Schur complement of ``X`` in
        the joint PIRLS system for ``(u, beta)`` (lme4's ``RX'RX``), whose inverse is lme4's
        fallback covariance of ``beta`` where the Hessian of the deviance is not positive
        definite."""
        x = np.asarray(x, dtype=float)
        if self._last_value is None or not np.array_equal(self._last_value[0], x):
            self.value_and_gradient(x)  # the modes at x
        p = self.p
        self.dispersion = dispersion_from_log(x[1 + p]) if self.n_dispersion else 1.0
        theta, beta, u = float(x[0]), x[1 : 1 + p], self._tangent[1]
        v = theta * self.z
        eta = self.offset + self.X @ beta + v * self._on_rows(u)
        W = self.family.derivatives(self.y, eta, self.w, self.dispersion)[1]
        h = self._level_sums(v * v * W) + 1.0
        C = np.add.reduceat(self.XT * (v * W), self.starts, axis=1)  # (p, levels)
        return (self.XT * W) @ self.X - (C / h) @ C.T

    def estimates(self, x):
        """Modes ``u`` (level order), ``eta`` (the caller's row order) and the deviance at
        ``x = [theta, beta, log(dispersion)]``."""
        x = np.asarray(x, dtype=float)
        if self._last_value is None or not np.array_equal(self._last_value[0], x):
            self.value_and_gradient(x)  # else the search's last evaluation was at x
        deviance = self._last_value[1]
        u = self._tangent[1]  # the modes at x
        theta, beta = float(x[0]), x[1 : 1 + self.p]
        eta = self.offset + self.X.dot(beta) + theta * self.z * self._on_rows(u)
        out = np.empty_like(eta)
        out[self.order] = eta
        return u, out, deviance
