"""Parametric bootstrap of a linear or generalized linear mixed model (lme4's ``bootMer`` /
``confint(method = "boot")``).

Each replicate simulates a response from the fitted model,
``y* = X beta + sum_f Z_f b_f* + e*`` with ``b_f* ~ N(0, sigma^2 T_f T_f')`` per level and
``e* ~ N(0, sigma^2 / w)``, and refits it by the same criterion (ML or REML).

A GLMM's replicate (:func:`glmm_parametric_bootstrap`) draws the random effects, then
the response from the family at the conditional means, and refits by the same deviance
(Laplace or AGQ) from the fitted parameters.

A linear model's refit needs only the cross-products of ``[Z X y*]``. Of those, ``X'WX``, ``Z'WZ`` and
``Z'WX`` do not depend on the response and are shared by every replicate; only the
response's parts (``X'Wy*``, ``y*'Wy*``, ``Z'Wy*``) change, and they are drawn from their
joint distribution given the statistics (:class:`ResponseSimulator`): no rows are needed,
and a replicate costs nothing in the number of rows.
"""

import numpy as np

from .coupling import SparseEntries
from .derived import with_response
from .design import split_theta
from .optimize import minimize_bounded
from .varpar import VarianceParameters


class ResponseSimulator:
    """The response's cross-products of replicates simulated from a fitted linear mixed
    model, drawn from the statistics alone (no rows), in the blocks of :mod:`.lmm`.

    For ``y* = mu + e*`` with ``mu = [X Z] c``, ``c = [beta, b*]`` and
    ``e* ~ N(0, sigma^2 W^-1)``, the refit needs ``s* = [X Z]'W y* = G c + s_e`` with
    ``G = [X Z]'W[X Z]``, ``s_e = [X Z]'W e*``, and ``y*'W y* = c'Gc + 2 c's_e + e*'We*``.
    ``G`` is never formed whole: as the factorisation, it is read in two blocks, the largest
    factor's ``Z1`` (``A11 = Z1'WZ1`` block diagonal, one ``q1 x q1`` block per level) and
    ``B2 = [X Z2]`` (the other factors, dense). With ``eps = W^1/2 e* / sigma`` standard
    normal:

    * ``Z1'W e* = sigma R1 t``, ``A11 = R1 R1'`` level by level (``t`` standard normal on
      each level's rank): ``t`` are the coordinates of ``eps`` in the span of ``W^1/2 Z1``;
    * ``B2'W e* = sigma (C' K1 t + R2 g)``: its mean given ``Z1'W e*`` (``C = Z1'WB2``,
      ``K1 K1'`` a generalised inverse of ``A11``) plus the part of ``eps`` in the span of
      ``W^1/2 B2`` left by ``W^1/2 Z1`` (coordinates ``g``), whose covariance
      ``S = B2'WB2 - C'K1 K1'C = R2 R2'`` is the generalised Schur complement;
    * ``eps'eps = t't + g'g + chi2(n - r)``, ``r`` the rank of ``[X Z]``, independent.

    The same distribution as forming the cross-products from simulated rows; a replicate
    costs nothing in the number of rows, and the only dense matrix is block 2's, which the
    fit holds already.
    """

    def __init__(self, model):
        cp = model.cp
        p = model.p
        first = cp.first
        m1, q1 = first.n_levels, first.q
        self.model, self.p, self.n = model, p, cp.n
        self.shape1 = (m1, q1)
        self.a11 = cp.a11
        self.c1x = cp.a1x[:, :, :p]  # Z1'WX, per level
        self.a_xx = cp.a_xx[:p, :p]
        self.second = cp.second  # None with one factor; the fit's own limit on its size applies
        self.R1, self.K1, self.keep1 = _level_roots(self.a11)
        # S = B2'WB2 - C'A11^-C, B2 = [X Z2]
        KKc = self.K1 @ (np.swapaxes(self.K1, 1, 2) @ self.c1x)  # A11^- Z1'WX, per level
        s_xx = self.a_xx - np.einsum("jap,jaq->pq", self.c1x, KKc)
        diag = np.diag(self.a_xx)
        if self.second is not None:
            sec = self.second
            s_2x = sec.a2x[:, :p] - sec.a21 @ KKc.reshape(m1 * q1, p)
            s_22 = -sec.coupled_square(self.K1)
            SparseEntries(sec.a22).add_to(s_22)  # the other factors' own block is held sparse
            S = np.block([[s_xx, s_2x.T], [s_2x, s_22]])
            diag = np.concatenate([diag, sec.a22.diagonal()])
        else:
            S = s_xx
        # S's scale is B2'WB2's, not its own: what of B2 lies in the span of Z1 (a
        # between-level covariate, a nested factor) leaves only rounding
        self.R2 = _schur_root(S, diag, (m1 * q1 + S.shape[0]) * np.finfo(float).eps)
        self.rank = int(self.keep1.sum()) + self.R2.shape[1]
        # the blocked order [Z1, X, Z2] and the model's [X, Z_0, Z_1, ...]
        sizes = [f.n_levels * f.q for f in model.factors]
        starts = np.concatenate([[p], p + np.cumsum(sizes)])
        span = [np.arange(starts[k], starts[k + 1]) for k in cp.order]
        blocked = np.concatenate([span[0], np.arange(p)] + span[1:])
        self.to_blocked = blocked  # v_blocked = v_model[to_blocked]
        self.to_model = np.argsort(blocked)  # v_model = v_blocked[to_model]

    def cross(self, c):
        """``G c = [X Z]'W[X Z] c`` for ``c = [beta, b_0, b_1, ...]`` (the model's order of
        factors, level-major), in the same order."""
        return self._cross_blocked(np.asarray(c, dtype=float)[self.to_blocked])[self.to_model]

    def residual_cross(self, t, g):
        """``[X Z]'W e* / sigma`` (the model's order) for the coordinates ``t`` (m1, q1)
        and ``g`` (the rank of ``S``) of ``eps`` (see the class docstring)."""
        return self._residual_blocked(t, g)[self.to_model]

    def _cross_blocked(self, c):
        m1, q1 = self.shape1
        p = self.p
        b1, beta, b2 = c[: m1 * q1].reshape(m1, q1), c[m1 * q1 : m1 * q1 + p], c[m1 * q1 + p :]
        g1 = self.c1x @ beta + np.einsum("jab,jb->ja", self.a11, b1)
        gx = self.a_xx @ beta + np.einsum("jap,ja->p", self.c1x, b1)
        parts = [g1.ravel(), gx]
        if self.second is not None:
            sec = self.second
            g1 = parts[0] + sec.a21.T @ b2
            gx = gx + sec.a2x[:, :p].T @ b2
            g2 = sec.a2x[:, :p] @ beta + sec.a21 @ b1.ravel() + sec.a22 @ b2
            parts = [g1, gx, g2]
        return np.concatenate(parts)

    def _residual_blocked(self, t, g):
        t = np.where(self.keep1, t, 0.0)
        e1 = np.einsum("jab,jb->ja", self.R1, t)
        h = np.einsum("jab,jb->ja", self.K1, t)  # A11^- Z1'W e* / sigma
        ex = np.einsum("jap,ja->p", self.c1x, h)
        parts = [ex]
        if self.second is not None:
            parts.append(self.second.a21 @ h.ravel())
        return np.concatenate([e1.ravel(), np.concatenate(parts) + self.R2 @ g])

    def draw(self, theta, beta, sigma, rng):
        """One replicate: ``(X'Wy*, y*'Wy*, Z'Wy*)``, drawn in a fixed order (the random
        effects factor by factor, then ``t`` for every level and term of the largest factor,
        ``g``, and the chi-square), so that replicate ``k`` is the same whatever their number."""
        factors = self.model.factors
        b = []
        for f, th in zip(factors, split_theta(factors, np.asarray(theta, dtype=float))):
            u = rng.standard_normal((f.n_levels, f.q))
            b.append((sigma * u @ f.cholesky_factor(th).T).ravel())
        c = np.concatenate([beta] + b)[self.to_blocked]
        t = rng.standard_normal(self.shape1)
        g = rng.standard_normal(self.R2.shape[1])
        rest = rng.chisquare(self.n - self.rank) if self.n > self.rank else 0.0
        mean = self._cross_blocked(c)
        noise = self._residual_blocked(t, g)
        quadratic = float(np.sum(t[self.keep1] ** 2) + g @ g + rest)
        yy = float(c @ mean + 2.0 * sigma * (c @ noise) + sigma**2 * quadratic)
        s = (mean + sigma * noise)[self.to_model]
        return s[: self.p], yy, s[self.p :]


def _level_roots(a11):
    """``(R, K, keep)`` per level of a stack of Gram blocks ``A`` (m, q, q): ``A = R R'``
    and ``K K'`` a generalised inverse of ``A``, on the columns ``keep`` (the block's rank,
    decided with its diagonal scaled to 1); the other columns of ``R`` and ``K`` are 0."""
    q = a11.shape[1]
    d = _scale(np.diagonal(a11, axis1=1, axis2=2))
    lam, U = np.linalg.eigh(a11 / (d[:, :, None] * d[:, None, :]))
    keep = lam > lam[:, -1:] * q * np.finfo(float).eps
    root = np.sqrt(np.where(keep, lam, 0.0))
    inv_root = np.divide(1.0, root, out=np.zeros_like(root), where=keep)
    return d[:, :, None] * U * root[:, None, :], U * inv_root[:, None, :] / d[:, :, None], keep


def _schur_root(S, diag, tol):
    """``R`` with ``S = R R'`` on ``S``'s rank: the eigenvalues of ``S`` scaled by the
    square roots of ``diag`` (the diagonal of the matrix ``S`` was reduced from) above
    ``tol``."""
    d = _scale(diag)
    lam, V = np.linalg.eigh(S / np.outer(d, d))
    keep = lam > tol
    return d[:, None] * V[:, keep] * np.sqrt(lam[keep])


def _scale(diagonal):
    """Square roots of a Gram matrix's diagonal, 1 where it is 0: the scaling that makes a
    rank decision independent of the units of the columns."""
    d = np.sqrt(np.maximum(diagonal, 0.0))
    return np.where(d > 0.0, d, 1.0)


def parametric_bootstrap(model, theta, n_boot, rng, progress=None):
    """Refit ``n_boot`` responses simulated from ``model`` at ``theta``.

    Parameters
    ----------
    model : LinearMixedModel
        The fitted core model (its ``reml`` flag is kept for the refits).
    theta : ndarray
        The fitted ``theta``.
    n_boot : int
    rng : numpy Generator or RandomState
    progress : callable, optional
        Called as ``progress(done, total)`` after every replicate.

    Returns
    -------
    estimates : ndarray (n_boot, n_var + p)
        Per replicate: the variance parameters on the sd/cor scale (see
        :class:`~.varpar.VarianceParameters`), then the fixed effects.
    converged : ndarray of bool (n_boot,)
    """
    est = model.estimates(theta)
    beta, sigma = est["beta"], float(np.sqrt(est["sigma2"]))
    vp = VarianceParameters(model.factors)
    simulator = ResponseSimulator(model)
    out = np.empty((n_boot, vp.size + model.p))
    converged = np.zeros(n_boot, dtype=bool)
    dof = model.n - model.p if model.reml else model.n
    for b in range(n_boot):
        mb = with_response(model, *simulator.draw(theta, beta, sigma, rng))
        opt = minimize_bounded(
            mb.objective, np.asarray(theta, dtype=float), mb.theta_lower,
            gradient=mb.gradient if mb.has_gradient else None, derivative_free=mb.costly_evaluation,
        )
        dec = mb.decompose(opt.x)
        s = float(np.sqrt(dec.pwrss / dof))
        out[b, : vp.size] = vp.from_theta(opt.x, s)
        out[b, vp.size :] = mb._beta(dec)
        converged[b] = opt.converged
        if progress is not None:
            progress(b + 1, n_boot)
    return out, converged


def glmm_parametric_bootstrap(model, x, n_boot, rng, progress=None):
    """Refit ``n_boot`` responses simulated from the GLMM ``model`` at ``x``.

    Parameters
    ----------
    model : GeneralizedMixedModel
    x : ndarray
        The fitted ``[theta, beta, log(dispersion)]``.
    n_boot : int
    rng : numpy Generator or RandomState
    progress : callable, optional

    Returns
    -------
    estimates : ndarray (n_boot, n_var + n_dispersion + p)
        Per replicate: the variance parameters on the sd/cor scale, the dispersion (if the
        family has one), then the fixed effects.
    converged : ndarray of bool (n_boot,)
    """
    from .glmm import GeneralizedMixedModel, fit_glmm

    theta, beta, dispersion = model.split(np.asarray(x, dtype=float))
    X, w, family, offset = model.X, model.w, model.family, model.offset
    vp = VarianceParameters(model.factors, has_sigma=False)
    nv = vp.size + model.n_dispersion
    out = np.empty((n_boot, nv + model.p))
    converged = np.zeros(n_boot, dtype=bool)
    fixed = offset + X @ beta
    for b in range(n_boot):
        eta = fixed + _random_part(model.factors, theta, rng)
        y_star = family.simulate(family.mean(eta), w, dispersion, rng)
        replicate = GeneralizedMixedModel(model.factors, X, y_star, w, family, offset, n_agq=model.n_agq)
        opt = fit_glmm(replicate)  # from lme4's start, as bootMer's refits
        th, bt, disp = replicate.split(opt.x)
        out[b, : vp.size] = vp.from_theta(th)
        out[b, vp.size : nv] = disp
        out[b, nv:] = bt
        converged[b] = opt.converged
        if progress is not None:
            progress(b + 1, n_boot)
    return out, converged


def _random_part(factors, theta, rng):
    """``sum_f Z_f b_f`` with ``b_f = T_f u``, ``u`` standard normal per level."""
    total = 0.0
    for f, th in zip(factors, split_theta(factors, np.asarray(theta, dtype=float))):
        b = rng.standard_normal((f.n_levels, f.q)) @ f.cholesky_factor(th).T
        total = total + np.einsum("ij,ij->i", f.z, b[f.codes])
    return total
