"""Laplace and adaptive Gauss-Hermite deviance of a GLMM, as lme4's glmer and glmmTMB.

The response distribution is a :class:`~.family.Family`; families with a dispersion
parameter (NB2's size, Gamma's phi) carry its logarithm as a last coordinate of the
search, estimated jointly by maximum likelihood (glmmTMB's approach).

At ``(theta, beta)`` PIRLS (:mod:`.pirls`) finds the conditional modes ``u`` of the
spherical random effects and the Cholesky factor ``L`` of
``Lambda' Z' W Z Lambda + I`` at the mode. Then, as lme4 (Bates et al. 2015)::

    Laplace:  -2 log L  ~=  sum(dev.resid) + ||u||^2 + log det(L)^2

    AGQ (one grouping factor):  -2 log L  ~=  sum_j [ devc_j(u_j) + log det(L_j)^2
                                   - 2 log sum_k w_k exp(|z_k|^2 / 2 - (devc_j(u_j + L_j^-T z_k) - devc_j(u_j)) / 2) ]

where ``devc_j(u) = -2 log-likelihood of level j's rows + ||u_j||^2`` and
``(z_k, w_k)`` is the Gauss-Hermite rule for the standard normal. With one scalar random
effect per level this is lme4's ``nAGQ``; with ``q`` terms per level (intercept and
slopes) it uses the product rule of ``k^q`` points.

:func:`fit_glmm` is lme4's two-stage optimisation: ``theta`` alone with ``beta`` in PIRLS
(``nAGQ = 0``), then ``(theta, beta)`` jointly on the chosen deviance.
"""

import dataclasses
import itertools
from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import logsumexp

from .blocks import batched_inverse_lower, batched_solve_lower, batched_solve_upper_t
from .design import lower_bounds, split_theta, start_theta
from .optimize import (
    MAX_RESTARTS, OptimizeResult, finite_difference_gradient, finite_difference_hessian, free_block, free_coordinates,
    gradient_jacobian, leave_bound, minimize_bounded, newton_decrement,
)
from .dense_gradient import solve_positive_definite
from .family import MAX_LOG_DISPERSION, dispersion_from_log, get_family
from .pirls import MAX_DENSE_L21, PIRLS
from .scalar_glmm import ScalarGLMM
from .units import StandardUnits

#: Iterations of lme4's first stage (theta with beta in PIRLS, nAGQ = 0) before the joint
#: search: its optimum is not the Laplace one, so polishing it costs PIRLS solves that
#: the joint search then repeats.
STAGE1_ITERATIONS = 4

#: Largest number of points of a product quadrature rule (``n_points ** q``).
MAX_PRODUCT_POINTS = 20000


def gauss_hermite_normal(k):
    """Nodes, weights and ``|z|^2`` of the ``k``-point Gauss-Hermite rule for N(0, 1)."""
    x, w = np.polynomial.hermite.hermgauss(k)
    return np.sqrt(2.0) * x, w / np.sqrt(np.pi)


def product_rule(k, q):
    """The ``k^q``-point product rule for N(0, I_q): nodes (K, q) and weights (K,)."""
    z, w = gauss_hermite_normal(k)
    nodes = np.array(list(itertools.product(z, repeat=q))).reshape(-1, q)
    weights = np.prod(np.array(list(itertools.product(w, repeat=q))).reshape(-1, q), axis=1)
    return nodes, weights


def deviance_constants(family, y, weights):
    """``(constant, slopes)``: ``constant(dispersion)``, ``-2 x`` the log-likelihood's terms
    free of ``eta``, and ``slopes(dispersion)``, its first and second derivatives in
    ``log(dispersion)``."""
    value, derivatives = family.constant_function(y, weights), family.constant_slopes_function(y, weights)

    def constant(dispersion):
        return -2.0 * value(dispersion)

    def slopes(dispersion):
        d1, d2 = derivatives(dispersion)
        return -2.0 * d1, -2.0 * d2

    return constant, slopes


class GeneralizedMixedModel:
    """Deviance of a GLMM as a function of ``x = [theta, beta, log(dispersion)]``.

    The model speaks the user's units (``x``, ``factors``, ``X``) and computes in the
    standard ones of :class:`~.units.StandardUnits` (``units``), so the search's
    coordinates ``xs = units.to_search(x)`` are of similar size and well conditioned
    whatever the units of the data, and the fit does not depend on them (rescaling a
    column rescales its estimates and nothing else). The search (:func:`fit_glmm`) runs
    on :meth:`search_objective` and :meth:`search_value_and_gradient`.

    Parameters
    ----------
    factors : list of RandomFactor
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,)
    weights : ndarray of shape (n,)
    family : Family or None
        The response distribution (None: binomial with the logit link).
    offset : ndarray of shape (n,) or None
        A known term of the linear predictor.
    n_agq : int
        1 for the Laplace approximation, ``k > 1`` for adaptive Gauss-Hermite quadrature
        with ``k`` points per dimension (one grouping factor only).
    scalar_path : bool
        Use :class:`~.scalar_glmm.ScalarGLMM` where it applies (one factor, one
        random term); False forces the general path (for tests).
    """

    def __init__(self, factors, X, y, weights, family=None, offset=None, n_agq=1, scalar_path=True):
        self.factors = list(factors)
        self.n, self.p = X.shape
        self.n_agq = int(n_agq)
        self.family = family = get_family("binomial") if family is None else family
        self.offset = offset = np.zeros(self.n) if offset is None else np.asarray(offset, dtype=float)
        self.X, self.y, self.w = X, y, weights
        self.theta_lower = lower_bounds(self.factors)
        self.theta_start = start_theta(self.factors)
        self.n_theta = len(self.theta_start)
        self.n_dispersion = int(family.has_dispersion)
        # one grouping factor with several terms: the computations see the rows sorted by
        # level, so that a level's sums are over a contiguous slice (the scalar path sorts
        # its own); ``rows`` maps back to the given order (the public ``factors``, ``X``,
        # ``y``, ``w``, ``offset`` stay in it)
        self.rows, computed = None, self.factors
        scalar = scalar_path and len(self.factors) == 1 and self.factors[0].q == 1
        if len(self.factors) == 1 and not scalar and np.any(self.factors[0].codes[1:] < self.factors[0].codes[:-1]):
            f = self.factors[0]
            self.rows = order = np.argsort(f.codes, kind="stable")
            computed = [dataclasses.replace(f, codes=f.codes[order], z=f.z[order])]
            X, y, weights, offset = X[order], y[order], weights[order], offset[order]
        self.units = StandardUnits(computed, X, self.n_dispersion)
        self._factors, X = self.units.factors, self.units.X
        self._data = (X, y, weights, family, offset)
        # functions of the data, not methods: the scalar path holds them, and a bound method
        # would make the model and its scalar path a reference cycle (freed only by the
        # garbage collector, with the model's arrays)
        self.constant, self.constant_slopes = deviance_constants(family, y, weights)
        if self.n_dispersion and self.n_agq > 1 and not scalar:
            raise ValueError(
                f"adaptive Gauss-Hermite quadrature for the {family.name} family needs one grouping factor with "
                f"one random term (lme4's condition for nAGQ > 1); use n_quadrature_points=1 (Laplace)"
            )
        if self.n_agq > 1:
            if len(self.factors) != 1:
                raise ValueError(
                    f"adaptive Gauss-Hermite quadrature (n_quadrature_points={self.n_agq}) needs a single "
                    f"grouping factor; the model has {len(self.factors)}. Use n_quadrature_points=1 (Laplace)"
                )
            q = self.factors[0].q
            if self.n_agq**q > MAX_PRODUCT_POINTS:
                raise ValueError(
                    f"n_quadrature_points={self.n_agq} with {q} random terms per level needs "
                    f"{self.n_agq}**{q} = {self.n_agq ** q} points per level; at most {MAX_PRODUCT_POINTS} "
                    "are supported. Use fewer points"
                )
            self.nodes, self.node_weights = product_rule(self.n_agq, q)
        self.beta_start, self.dispersion_start = glm_start(family, X, y, weights, offset)  # standard units
        # one scalar random term: the level-by-level path
        self.scalar = None
        if scalar:
            rule = (self.nodes[:, 0], self.node_weights) if self.n_agq > 1 else (None, None)
            self.scalar = ScalarGLMM(
                self._factors[0], X, y, weights, family, offset, self.constant, self.constant_slopes, *rule
            )
        if self.has_gradient and self.scalar is None:
            f = self._factors[0]
            self._indicator = sp.csr_matrix(
                (np.ones(self.n), f.codes, np.arange(self.n + 1)), shape=(self.n, f.n_levels)
            ).T.tocsr()
            self._pairs = [(a, b) for a in range(f.q) for b in range(a + 1)]
        self._tangent = None  # (x, modes, their derivative in x) of the last one-factor gradient

    @cached_property
    def pirls(self):
        """The general conditional-mode solver (built on first use: the scalar path's
        search does without it)."""
        return PIRLS(self._factors, *self._data)

    # -- the parameters -------------------------------------------------------------
    def split(self, x):
        """``(theta, beta, dispersion)`` from ``x = [theta, beta, log(dispersion)]``."""
        nt, p = self.n_theta, self.p
        dispersion = dispersion_from_log(x[nt + p]) if self.n_dispersion else 1.0
        return x[:nt], x[nt : nt + p], dispersion

    def join(self, theta, beta, dispersion=1.0):
        """``x = [theta, beta, log(dispersion)]``."""
        return np.concatenate([theta, beta, np.log([dispersion] * self.n_dispersion)])

    # -- the objective ------------------------------------------------------------
    def mode(self, theta, beta, dispersion=1.0):
        """The conditional mode at ``(theta, beta, dispersion)`` (user units)."""
        return self._mode(*self.split(self.units.to_search(self.join(theta, beta, dispersion))))

    def _mode(self, theta, beta, dispersion, start=None):
        self.pirls.set_theta(theta)
        self.pirls.dispersion = dispersion
        return self.pirls.mode(beta, start=start)

    def deviance(self, theta, beta, dispersion=1.0):
        """-2 log-likelihood at ``(theta, beta, dispersion)``: Laplace or AGQ."""
        return self.objective(self.join(theta, beta, dispersion))

    def _deviance(self, theta, beta, dispersion):
        """The Laplace deviance in standard units (adaptive quadrature's comes with its
        gradient, :meth:`search_value_and_gradient`: one grouping factor)."""
        return self._mode(theta, beta, dispersion).laplace_deviance + self.constant(dispersion)

    def objective(self, x):
        """Deviance of the stacked ``x = [theta, beta, log(dispersion)]``; +inf where it fails."""
        return self.search_objective(self.units.to_search(x))

    def search_objective(self, xs):
        """:meth:`objective` in the standard coordinates ``xs = units.to_search(x)``."""
        if self.n_agq > 1:
            return self.search_value_and_gradient(xs)[0]
        try:
            d = self._deviance(*self.split(xs))
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError):
            return np.inf
        return d if np.isfinite(d) else np.inf

    # -- the analytic gradient (one grouping factor) ---------------------------------
    @property
    def has_gradient(self):
        """Whether :meth:`value_and_gradient` applies: one grouping factor, or several
        whose inverse's block of :meth:`~.pirls.PIRLS.own_inverse` is small enough to
        hold dense (the Laplace deviance)."""
        if len(self.factors) == 1:
            return True
        sizes = sorted((f.n_levels * f.q for f in self.factors), reverse=True)
        return self.n_agq == 1 and sizes[0] * sum(sizes[1:]) <= MAX_DENSE_L21

    def value_and_gradient(self, x):
        """Deviance and its gradient in ``x = [theta, beta, log(dispersion)]`` (one grouping factor).

        The deviance is, level by level, ``log det M_j - 2 log sum_k w_k e^{|z_k|^2/2}
        e^{-devc_j(u_jk)/2}`` with ``u_jk = u_j + L_j^-T z_k`` (the Laplace approximation
        is the one-point rule ``z = 0``). Its total derivative follows the conditional
        mode ``u_j`` (implicit differentiation of the PIRLS equations) and the Cholesky
        factor ``L_j`` of ``M_j = T' Z_j' W Z_j T + I`` (whose weights move with the mode,
        and with the dispersion). Everything is batched over levels; the cost is a few
        passes over the rows.
        """
        f, g = self.search_value_and_gradient(self.units.to_search(x))
        return f, self.units.jacobian(x).T @ g

    def search_value_and_gradient(self, xs):
        """:meth:`value_and_gradient` in the standard coordinates ``xs = units.to_search(x)``."""
        try:
            if self.scalar is not None:
                return self.scalar.value_and_gradient(xs)
            if len(self.factors) > 1:
                return self._laplace_value_and_gradient(*self.split(xs))
            return self._value_and_gradient(*self.split(xs))
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError):
            return np.inf, np.zeros_like(xs)

    def _value_and_gradient(self, theta, beta, dispersion):
        """:meth:`value_and_gradient` for one grouping factor.

        Every sum over rows that the gradient needs is a per-level statistic of a few
        row vectors: ``A_j = sum W z z'``, ``C_j = sum W z x'``, ``sum r z`` and (Laplace)
        ``sum s h z``, ``h`` the rows' leverages ``v' M_j^-1 v``; the ``(rows, coordinates)``
        derivative of ``eta`` is formed only for adaptive quadrature."""
        pr, family = self.pirls, self.family
        f = self._factors[0]
        xs = self.join(theta, beta, dispersion)
        start = None
        if self._tangent is not None:  # the modes predicted on the last evaluation's tangent
            x0, u_0, dU_0 = self._tangent
            start = (u_0 + dU_0 @ (xs - x0), pr.u2)
        m = self._mode(theta, beta, dispersion, start)
        codes, X, y, w = pr.codes1, pr.X, pr.y, pr.w
        z, v, u0, T = f.z, pr.v1, m.u1, pr.T1
        m1, q = u0.shape
        nt, p = self.n_theta, self.p
        d = nt + p + self.n_dispersion
        rows, cols = f._tri
        L = m.factor.L11
        r, W, s = m.derivatives
        if self.n_dispersion:
            dl_s, dr_s, dW_s = family.dispersion_derivatives(y, m.eta, w, dispersion)
        pairs = self._pairs
        Wz = W[:, None] * z
        A = np.empty((m1, q, q))  # sum W z z' per level
        for a, b in pairs:
            A[:, a, b] = A[:, b, a] = pr.level_sums(Wz[:, a] * z[:, b])
        C = np.stack([pr.level_sums(Wz[:, a, None] * X) for a in range(q)], axis=1)  # (m1, q, p)
        rz = pr.level_sums(r[:, None] * z)  # (m1, q)

        # derivative of the mode: M dU = dT' Z'r - V' W E0 (+ V' dr/ds for the dispersion),
        # E0 = d eta / dx with the modes held: z_r u_c for theta's T[r, c], X for beta
        TA = np.einsum("ea,jef->jaf", T, A)  # T' A_j
        R = np.zeros((m1, q, d))
        for k in range(nt):
            R[:, cols[k], k] += rz[:, rows[k]]
            R[:, :, k] -= TA[:, :, rows[k]] * u0[:, cols[k], None]
        R[:, :, nt : nt + p] = -np.einsum("ea,jek->jak", T, C)
        if self.n_dispersion:
            R[:, :, -1] += pr.level_sums(dr_s[:, None] * v)
        dU = batched_solve_upper_t(L, batched_solve_lower(L, R))
        self._tangent = (xs, u0, dU)
        AT = A @ T
        Linv = batched_inverse_lower(L)
        Minv = np.swapaxes(Linv, 1, 2) @ Linv
        logdet = m.factor.logdet
        constant = self.constant(dispersion)
        if self.n_agq == 1:
            # d log det M_j = tr(M_j^-1 dM_j): through T (dM = dT' A T + T' A dT) and through
            # the weights (sum s h deta over the rows, deta = E0 + v dU)
            h = np.zeros(len(y))
            for a, b in pairs:
                h += (1.0 if a == b else 2.0) * v[:, a] * v[:, b] * Minv[codes, a, b]
            sh = s * h
            Q = pr.level_sums(sh[:, None] * z)  # (m1, q)
            grad = np.einsum("jc,jck->k", Q @ T, dU)
            for k in range(nt):
                grad[k] += 2.0 * float((Minv[:, cols[k], :] * AT[:, rows[k], :]).sum())
                grad[k] += float(u0[:, cols[k]] @ (Q[:, rows[k]] - 2.0 * rz[:, rows[k]]))
            grad[nt : nt + p] += (sh - 2.0 * r) @ X
            if self.n_dispersion:
                grad[-1] += h @ dW_s - 2.0 * dl_s.sum() + self.constant_slopes(dispersion)[0]
            return m.laplace_deviance + constant, grad

        G = self._indicator

        def explicit(u):
            """d eta / d x with the modes held at ``u``: (n, d)."""
            E = np.zeros((len(y), d))
            E[:, :nt] = z[:, rows] * u[codes][:, cols]
            E[:, nt : nt + p] = X
            return E

        E0 = explicit(u0)
        deta = E0 + np.einsum("iq,iqd->id", v, dU[codes])
        # derivative of M_j = T' A_j T + I
        dM = np.zeros((m1, q, q, d))
        for k in range(nt):
            dM[:, cols[k], :, k] += AT[:, rows[k], :]
            dM[:, :, cols[k], k] += AT[:, rows[k], :]
        for a, b in pairs:
            blk = G @ ((s * v[:, a] * v[:, b])[:, None] * deta)
            dM[:, a, b, :] += blk
            if a != b:
                dM[:, b, a, :] += blk
        grad = np.einsum("jab,jabd->d", Minv, dM)
        # adaptive quadrature: nodes u_jk = u_j + L_j^-T z_k (no dispersion: see __init__)
        offset = m.eta - pr.random_part(u0, m.u2)
        nodes, weights = self.nodes, self.node_weights
        K = len(weights)
        ys = [batched_solve_upper_t(L, np.broadcast_to(zk[None, :, None], (m1, q, 1)))[:, :, 0] for zk in nodes]
        logterms = np.empty((K, m1))
        for k in range(K):
            uk = u0 + ys[k]
            eta = offset + np.einsum("ij,ij->i", v, uk[codes])
            devc = G @ pr.deviance_rows(eta) + (uk**2).sum(axis=1)
            logterms[k] = np.log(weights[k]) + 0.5 * float(nodes[k] @ nodes[k]) - 0.5 * devc
        lse = logsumexp(logterms, axis=0)
        pi = np.exp(logterms - lse)  # (K, m1)
        value = float(logdet - 2.0 * lse.sum()) + constant
        # dL = L Phi(L^-1 dM L^-T), Phi: lower triangle with half the diagonal
        P = np.einsum("jab,jbcd,jec->jaed", Linv, dM, Linv)
        P = np.tril(P.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
        idx = np.arange(q)
        P[:, idx, idx, :] *= 0.5
        dL = np.einsum("jab,jbcd->jacd", L, P)
        for k in range(K):
            uk = u0 + ys[k]
            dy = -batched_solve_upper_t(L, np.einsum("jbad,jb->jad", dL, ys[k]))
            duk = dU + dy
            eta = offset + np.einsum("ij,ij->i", v, uk[codes])
            rk = family.derivatives(y, eta, w, dispersion, order=1)[0]
            detak = explicit(uk) + np.einsum("iq,iqd->id", v, duk[codes])
            grad += -2.0 * ((pi[k][codes] * rk) @ detak)
            grad += 2.0 * np.einsum("j,jq,jqd->d", pi[k], uk, duk)
        return value, grad

    def _laplace_value_and_gradient(self, theta, beta, dispersion):
        """The Laplace deviance and its gradient for any number of grouping factors.

        ``D = sum dev.resid + ||u||^2 + log det M`` at the mode ``u``. The penalised part
        moves only explicitly (``u`` is its stationary point); ``log det M`` moves with
        ``Lambda`` (``2 tr(M^-1 Lambda' Z' W Z dLambda)``) and with the weights, which
        follow ``eta`` and the mode (``sum_i h_i dW_i``, ``h_i`` the rows' leverages).
        The mode's derivative solves ``M dU = dLambda' Z' r - Lambda' Z' W E (+ Lambda'
        Z' dr/ds)``, ``E`` the explicit derivative of ``eta``: one solve per coordinate
        with the factorisation PIRLS leaves.
        """
        pr, family = self.pirls, self.family
        m = self._mode(theta, beta, dispersion)
        fac = m.factor
        y, w = pr.y, pr.w
        nt, p, nd = self.n_theta, self.p, self.n_dispersion
        d = nt + p + nd
        r, W, W1 = family.derivatives(y, m.eta, w, dispersion, order=3)
        s1, s2 = pr.own_inverse(fac)
        E = np.zeros((pr.n, d))  # d eta / dx with the modes held
        E[:, nt : nt + p] = pr.X
        rhs = []  # per coordinate, the mode's derivative's right-hand side (blocks 1 and 2)
        term = np.zeros(d)  # 2 tr(M^-1 Lambda' Z' W Z dLambda)
        k = 0
        for f, u, (block, start, column) in zip(self._factors, pr.modes_by_factor(m.u1, m.u2), pr.term_positions()):
            for a, b in zip(*f._tri):
                E[:, k] = f.z[:, a] * u[f.codes, b]
                own = s1[:, b] if block == 1 else s2[:, column + b]
                term[k] = 2.0 * float((W * f.z[:, a]) @ own)
                g1, g2 = pr._gradient_u(-W * E[:, k])
                lam_r = np.bincount(f.codes, weights=f.z[:, a] * r, minlength=f.n_levels)  # dLambda' Z' r
                if block == 1:
                    g1[:, b] += lam_r
                else:
                    g2[start + np.arange(f.n_levels) * f.q + b] += lam_r
                rhs.append((g1, g2))
                k += 1
        rhs += [pr._gradient_u(-W * E[:, k]) for k in range(nt, nt + p)]
        if nd:
            dl_s, dr_s, dW_s = family.dispersion_derivatives(y, m.eta, w, dispersion)
            rhs.append(pr._gradient_u(dr_s))  # E's dispersion column is 0
        deta = E.copy()
        for k, (g1, g2) in enumerate(rhs):
            du1, du2, _ = fac.solve(g1, g2)
            deta[:, k] += pr.random_part(du1, du2)
        h = np.einsum("ia,ia->i", pr.v1, s1)
        if s2 is not None:
            h += np.einsum("it,it->i", pr._vals2, s2)
        grad = -2.0 * (r @ E) + (h * W1) @ deta + term
        if nd:
            grad[-1] += -2.0 * dl_s.sum() + h @ dW_s + self.constant_slopes(dispersion)[0]
        return m.laplace_deviance + self.constant(dispersion), grad

    def objective_stage1(self, theta):
        """lme4's ``nAGQ = 0`` deviance of ``theta`` (standard units): beta estimated jointly
        in PIRLS, at the start's dispersion."""
        try:
            self.pirls.set_theta(theta)
            self.pirls.dispersion = self.dispersion_start
            m = self.pirls.joint_mode(self.beta_start)
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError):
            return np.inf
        self.beta_start = m.beta
        d = m.laplace_deviance
        return d if np.isfinite(d) else np.inf

    def em_theta(self, theta):
        """One EM step for theta (standard units, one grouping factor): the covariance of
        the random effects set to the mean of their Laplace posteriors' second moments,
        ``T (u_j u_j' + M_j^-1) T'``, at the joint modes of ``(u, beta)`` at ``theta``.
        From the start it moves most of the way towards the optimum for the cost of one
        mode (as :meth:`~.scalar_glmm.ScalarGLMM.em_theta` for one scalar term)."""
        pr, f = self.pirls, self._factors[0]
        try:
            pr.set_theta(theta)
            pr.dispersion = self.dispersion_start
            m = pr.joint_mode(self.beta_start)
            Linv = batched_inverse_lower(m.factor.L11)
            second = (m.u1.T @ m.u1 + np.einsum("jab,jac->bc", Linv, Linv)) / len(m.u1)
            T = pr.T1
            S = T @ second @ T.T
            new = np.sqrt(np.diag(S)) if f.diagonal else np.linalg.cholesky(S)[f._tri]
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError):
            return theta
        if not (np.all(np.isfinite(new)) and np.isfinite(m.laplace_deviance)):
            return theta
        self.beta_start = m.beta
        return new

    # -- estimates ------------------------------------------------------------------
    def pirls_covariance(self, x):
        """lme4's fallback covariance of ``beta`` (``vcov`` from ``RX``): the inverse of the
        Schur complement of ``X`` in the joint PIRLS system for ``(u, beta)`` at the modes
        of ``x``, in the user's units; None where that matrix is not positive definite.

        Where the Hessian of the deviance is (at an optimum, with the modes and theta
        held), this is the covariance it gives; it holds away from an optimum too.
        """
        if self.p == 0:
            return np.zeros((0, 0))
        xs = self.units.to_search(x)
        try:
            if self.scalar is not None:
                S = self.scalar.fixed_information(xs)
            else:
                theta, beta, dispersion = self.split(xs)
                m = self._mode(theta, beta, dispersion)
                W = self.family.derivatives(self.pirls.y, m.eta, self.pirls.w, dispersion)[1]
                Lx = self.pirls.factorize(W, joint=True).Lx
                S = Lx @ Lx.T
            cov = solve_positive_definite(S, np.eye(self.p))
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError, ZeroDivisionError):
            return None
        if not np.all(np.isfinite(cov)):
            return None
        scale = self.units.x_scale
        return 0.5 * (cov + cov.T) / np.outer(scale, scale)

    def estimates(self, x):
        """Conditional modes ``b = Lambda u`` per factor, the linear predictor and the deviance at ``x``."""
        theta, beta, dispersion = self.split(x)
        xs = self.units.to_search(x)
        if self.scalar is not None:
            u, eta, dev = self.scalar.estimates(xs)
            f = self.factors[0]
            return {"random_effects": {f.name: (theta[0] * u)[:, None]}, "deviance": dev, "eta": self._in_given_order(eta),
                    "mode": None}
        m = self._mode(*self.split(xs))
        u = self.pirls.modes_by_factor(m.u1, m.u2)
        modes = {}  # b = A^-1 b', b' = T' u in standard units
        for f, th, uf, Ai in zip(self._factors, split_theta(self._factors, xs[: self.n_theta]), u,
                                 self.units.inverse_maps):
            modes[f.name] = uf @ (Ai @ f.cholesky_factor(th)).T
        dev = m.laplace_deviance + self.constant(dispersion) if self.n_agq == 1 else self.search_objective(xs)
        return {"random_effects": modes, "deviance": dev, "eta": self._in_given_order(m.eta), "mode": m}

    def _in_given_order(self, a):
        """A per-row array of the model (sorted by level) in the caller's row order."""
        if self.rows is None:
            return a
        out = np.empty_like(a)
        out[self.rows] = a
        return out


def glm_start(family, X, y, w, offset):
    """The start of the search: the fixed effects of the intercept-only GLM (the other
    coefficients 0) and a moment estimate of the dispersion there. One pass over the
    rows; it puts the linear predictor at the data's level, so that the search does not
    depend on the units of ``y`` (a Gamma's y in cents or in dollars)."""
    n, p = X.shape
    beta = np.zeros(p)
    constant = np.flatnonzero((X == X[0]).all(axis=0)) if n and p else np.zeros(0, dtype=int)
    if len(constant) and X[0, constant[0]] != 0:
        j = constant[0]
        if family.link.name == "log":  # the GLM's intercept: log(sum w y / sum w e^offset)
            level = np.log(max(float(w @ y), 1e-10) / float(w @ np.exp(offset)))
        else:
            mean = float(family.start_mean(y, w).dot(w)) / float(w.sum())
            level = float(family.link(mean)) - float(offset.sum()) / n
        beta[j] = level / X[0, j]
    dispersion = 1.0
    if family.has_dispersion:
        dispersion = family.start_dispersion(y, family.mean(offset + X @ beta), w)
    return beta, dispersion


#: Newton steps of the scalar path's search before the exact check.
SCALAR_NEWTON_STEPS = 30

#: Newton steps of the check that ends a search (while iterations are left).
POLISH_STEPS = 20


def _polish(fg, x, f, g, lower, decrement_tol, max_steps=POLISH_STEPS, hessian=None):
    """Newton steps on the coordinates off their bounds, accepted while they improve, at
    most ``max_steps`` (after the last the point is judged, no step taken).
    ``hessian(x)``: the exact Hessian, where known; else finite differences of the gradient.
    Returns ``(x, f, g, H, decrease, steps)``, ``decrease`` the Newton decrement at ``x``."""
    H, decrease, steps = np.zeros((len(x), len(x))), np.inf, 0
    for _ in range(max_steps + 1):
        free = free_coordinates(x, lower, g)
        if hessian is not None:
            H = free_block(hessian(x), free)
        else:
            H = gradient_jacobian(lambda z: fg(z)[1], x, free, lower, step=1e-5, g0=g)
        decrease, step = newton_decrement(g, H, free)
        if decrease <= decrement_tol or not np.isfinite(decrease) or steps >= max_steps:
            break
        t, improved = 1.0, False
        while t > 1e-4:
            cand = np.maximum(x + t * step, lower)
            fc, gc = fg(cand)
            if fc < f:
                x, f, g, improved, steps = cand, fc, gc, True, steps + 1
                break
            t /= 2
        if not improved:
            break
    return x, f, g, H, decrease, steps




def _scalar_newton(scalar, x0, beta0, record, decrement_tol, max_steps=SCALAR_NEWTON_STEPS):
    """The scalar path's search, from ``x0``'s theta.

    The start is lme4's first stage, beta estimated jointly with the modes
    (:meth:`~.scalar_glmm.ScalarGLMM.joint_mode`), with theta from two EM steps, extrapolated
    (:meth:`~.scalar_glmm.ScalarGLMM.em_start`).
    Then Newton steps, no bounds (the deviance is even in theta), on the exact Hessian
    where it is positive definite, else the approximate one. A step is halved until it
    improves and lands where the Hessian used is positive definite (a step that
    overshoots towards theta = 0, a stationary point, can land where it is not). Stops
    once the predicted decrease is 100 times below ``decrement_tol``, or no step is
    found, or after ``max_steps`` steps.
    Returns ``(x, f, g, steps, H)`` with ``theta >= 0`` (a search that crossed 0 reports
    the mirror); ``H`` is the exact Hessian at ``x`` where the search stopped on it with
    ``theta > 0`` and it is the objective's (Laplace, not quadrature): then the check
    :func:`_polish` would make is the one just made (no bound in reach, the same Hessian);
    else None.
    """

    def evaluate(x):
        """``(f, g, H, L)``, ``H`` a positive definite Hessian and ``L`` its Cholesky factor,
        or None."""
        try:
            f, g, H, L = scalar.value_gradient_convex_hessian(x)
        except (np.linalg.LinAlgError, FloatingPointError):
            f, g, H, L = np.inf, np.full(len(x), np.nan), None, None
        record(x, f)
        return f, g, H, L

    tail = x0[1 + len(beta0) :]  # log(dispersion), if any: held for the start
    if len(tail):
        scalar.dispersion = dispersion_from_log(tail[0])
    beta = scalar.joint_mode(x0[0], beta0)
    if len(tail):  # the dispersion's moment estimate at the joint modes' means
        tail = np.log([scalar.conditional_dispersion(x0[0], beta)])
    x = np.concatenate(([scalar.em_start(x0[0], beta)], beta, tail))
    f, g, H, L = evaluate(x)
    steps, judged = 0, None  # the exact Hessian where the stop was judged on it
    for _ in range(max_steps):
        if H is None:
            break
        step = -sla.lapack.dpotrs(L, g, lower=1)[0]
        decrease = -0.5 * float(g.dot(step))
        if not np.isfinite(decrease) or decrease <= 0.01 * decrement_tol:
            # (x was the last point evaluated: exact_hessian reads that evaluation's, computing nothing)
            exact = scalar.nodes is None and H is scalar.exact_hessian(x)
            if np.isfinite(decrease) and x[0] != 0 and exact:
                judged = H
            break
        t, H = 1.0, None
        while t > 1e-4:
            cand = x + t * step
            fc, gc, Hc, Lc = evaluate(cand)
            if fc < f and Hc is not None:
                x, f, g, H, L, steps = cand, fc, gc, Hc, Lc, steps + 1
                break
            t /= 2
    if x[0] < 0:  # the mirror: the deviance is even in theta
        mirror = np.ones(len(x))
        mirror[0] = -1.0
        x, g = x * mirror, g * mirror
        if judged is not None:
            judged = judged * np.outer(mirror, mirror)
    return x, f, g, steps, judged


def _minimize_with_gradient(fg, x0, lower, max_iter, decrement_tol, verbose, scalar=None):
    """L-BFGS-B on an analytic gradient, then Newton polish; convergence by Newton decrement.

    With ``scalar`` (a :class:`~.scalar_glmm.ScalarGLMM`, whose exact Hessian is written
    out), :func:`_scalar_newton` comes first; L-BFGS-B only where the exact check after it
    finds no optimum.
    """
    log = []

    def record(x, f):
        log.append((np.array(x, dtype=float), f))
        if verbose:
            print(f"[skmlm] eval {len(log):4d}  deviance {f:.10f}  x {np.array2string(np.asarray(x), precision=6)}")

    def logged(x):
        f, g = fg(x)
        record(x, f)
        return f, g

    n_iter, message = 0, "Newton steps"
    x = np.asarray(x0, dtype=float)
    if scalar is not None:
        x, f, g, steps, judged = _scalar_newton(
            scalar, x, x[1 : 1 + scalar.p], record, decrement_tol, max_steps=min(SCALAR_NEWTON_STEPS, max_iter)
        )
        if judged is not None:
            return _result(x, f, True, steps, max_iter, g, judged, message, log)
        x, f, g, H, decrease, more = _polish(  # quadrature: finite differences of its gradient
            logged, x, f, g, lower, decrement_tol, max_steps=min(POLISH_STEPS, max_iter - steps),
            hessian=scalar.exact_hessian if scalar.nodes is None else None,
        )
        n_iter = steps + more
        if decrease <= decrement_tol or n_iter >= max_iter:
            return _result(x, f, decrease <= decrement_tol, n_iter, max_iter, g, H, message, log)
    else:
        f = g = None
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]  # (after a scalar search: rarely)
    for _ in range(MAX_RESTARTS + 1):
        left = max_iter - n_iter
        if left > 0:
            res = minimize(
                logged, x, jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": left, "ftol": 1e-13, "gtol": 1e-7, "maxcor": 20},
            )
            n_iter, message = n_iter + int(res.nit), str(res.message)
            x = np.maximum(res.x, lower)
            if np.array_equal(x, res.x):  # L-BFGS-B's value and gradient are at its x
                f, g = float(res.fun), np.asarray(res.jac, dtype=float)
            else:
                f, g = logged(x)
        elif f is None:  # no iterations left: the point is judged only
            f, g = logged(x)
        x, f, g, H, decrease, steps = _polish(
            logged, x, f, g, lower, decrement_tol, max_steps=min(POLISH_STEPS, max_iter - n_iter)
        )
        n_iter += steps
        # a variance of 0 is a stationary point (the deviance is even in it): probe off it
        off = leave_bound(lambda z: logged(z)[0], x, f, lower)
        if off is None:
            break
        x, f, g = off, None, None
    return _result(x, f, decrease <= decrement_tol, n_iter, max_iter, g, H, message, log)


def _result(x, f, at_optimum, n_iter, max_iter, g, H, message, log):
    """The search's :class:`~.optimize.OptimizeResult`; ``at_optimum``: whether the Newton
    decrement at ``x`` is below tolerance."""
    converged = bool(np.isfinite(f) and at_optimum)
    if not converged and n_iter >= max_iter:
        message = f"iteration limit reached (max_iter={max_iter})"
    return OptimizeResult(x, f, converged, n_iter, len(log), g, H, message, log)


def fit_glmm(model, max_iter=1000, tol=1e-6, verbose=0, two_stage=None):
    """Maximum likelihood fit of ``x = [theta, beta, log(dispersion)]``; returns an
    :class:`~.optimize.OptimizeResult`.

    The search runs in the model's standard units (see :class:`GeneralizedMixedModel`);
    the result is in the user's. The start is lme4's: ``theta`` at its start (or, with ``two_stage``, optimised with
    ``beta`` estimated jointly in PIRLS, lme4's ``nAGQ = 0`` stage) and ``beta`` the
    joint PIRLS estimate there; the dispersion at its moment estimate of the GLM without
    random effects. With an analytic gradient (one grouping factor; several where the
    dense block of :meth:`~.pirls.PIRLS.own_inverse` fits): L-BFGS-B on it, then Newton
    polish; else Newton steps on finite differences from the first stage's estimate,
    COBYQA where they stop short (:func:`~.optimize.minimize_bounded`). ``max_iter`` bounds the
    iterations of both stages together (the result's ``n_iter`` counts them all).

    A family whose dispersion goes to 0 at an exact fit (Gamma) raises a ValueError there:
    the likelihood has no maximum.
    """
    if not model.family.unbounded_at_exact_fit:
        return _fit(model, max_iter, tol, verbose, two_stage)
    # an exact fit runs the dispersion to 0, through overflows that are no news to anyone
    with np.errstate(all="ignore"):
        res = _fit(model, max_iter, tol, verbose, two_stage)
    if np.log(model.split(res.x)[2]) <= -MAX_LOG_DISPERSION + 1.0:  # at the bound of its range
        raise ValueError(exact_fit_message(model.family))
    return res


def exact_fit_message(family):
    return (
        "y is an exact function of X and the grouping factors (e.g. constant within every level of a "
        f"grouping factor): the dispersion of the {family.name} family is 0 there, and the likelihood has no "
        "maximum (it grows without bound as the dispersion goes to 0)"
    )


def _fit(model, max_iter, tol, verbose, two_stage):
    """:func:`fit_glmm`'s search."""
    lower = model.theta_lower
    if two_stage is None:
        two_stage = not model.has_gradient
    theta1, n_iter1 = model.theta_start, 0
    if two_stage:
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]

        def stage1(theta):
            f = model.objective_stage1(theta)
            return f, finite_difference_gradient(model.objective_stage1, theta, f, lower, central=False)

        model.objective_stage1(theta1)
        res1 = minimize(  # only a start for the joint search: forward differences, loose tolerance
            stage1, theta1, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": min(max_iter, STAGE1_ITERATIONS), "ftol": 1e-8, "gtol": 1e-4},
        )
        theta1, n_iter1 = np.maximum(res1.x, lower), int(res1.nit)
    if model.scalar is None and len(model.factors) == 1 and not two_stage:
        theta1 = model.em_theta(theta1)
    if model.scalar is None:  # lme4's start for beta: the joint PIRLS estimate at theta1
        model.objective_stage1(theta1)
    x0 = np.concatenate([theta1, model.beta_start, np.log([model.dispersion_start] * model.n_dispersion)])
    lower2 = np.concatenate([lower, np.full(model.p + model.n_dispersion, -np.inf)])
    if model.has_gradient:
        scalar = model.scalar
        res = _minimize_with_gradient(
            model.search_value_and_gradient, x0, lower2, max_iter - n_iter1, tol, verbose, scalar=scalar
        )
    else:
        # no gradient (crossed factors too large for the dense inverse block), and each
        # evaluation a PIRLS solve; from the first stage's estimate Newton steps on finite
        # differences, COBYQA where they stop short
        res = minimize_bounded(
            model.search_objective, x0, lower2, max_iter=max_iter - n_iter1, decrement_tol=tol, verbose=verbose,
            derivative_free=True, newton_first=True,
        )
        # the search's last Hessian may be a diagonal check or carry older mixed terms: the
        # standard errors need every entry at the optimum (as lme4's deriv12)
        free = ~(res.x <= lower2 + 1e-10)
        res.hessian = finite_difference_hessian(model.search_objective, res.x, res.fun, free, cross="forward")
    res.n_iter += n_iter1
    if not res.converged and res.n_iter >= max_iter:
        res.message = f"iteration limit reached (max_iter={max_iter})"
    return _to_user_units(res, model.units)


def _to_user_units(res, units):
    """The search's result (standard units) in the user's: ``x``, the gradient and Hessian
    by the map's Jacobian (at an optimum the gradient vanishes, so ``J' H J`` is the
    Hessian in the user's coordinates), the log."""
    res.x = units.from_search(res.x)
    J = units.jacobian(res.x)
    if res.gradient is not None:
        res.gradient = J.T.dot(res.gradient)
    if res.hessian is not None:
        res.hessian = J.T.dot(res.hessian).dot(J)
    if units.linear and res.log:
        xs = np.array([x for x, _ in res.log]) / units.scale
        res.log = [(x, f) for x, (_, f) in zip(xs, res.log)]
    else:
        res.log = [(units.from_search(x), f) for x, f in res.log]
    return res
