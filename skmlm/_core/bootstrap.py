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

from .derived import with_response
from .design import split_theta
from .optimize import minimize_bounded
from .varpar import VarianceParameters



#: Largest order of ``[X Z]'W[X Z]`` whose square root a linear model's bootstrap takes
#: (a dense eigendecomposition).
MAX_SIMULATED_ORDER = 6000


class ResponseSimulator:
    """The response's cross-products of replicates simulated from a fitted linear mixed
    model, drawn from the statistics alone (no rows).

    For ``y* = mu + e*`` with ``mu = [X Z] c``, ``c = [beta, b*]`` and
    ``e* ~ N(0, sigma^2 W^-1)``, the refit needs ``s* = [X Z]'W y*`` and ``y*'W y*``. With
    ``G = [X Z]'W[X Z] = V diag(lam) V'`` and ``eps = W^1/2 e* / sigma`` standard normal,
    ``[X Z]'W e* = sigma V diag(lam)^1/2 g`` where ``g`` is the part of ``eps`` in the span
    of ``W^1/2 [X Z]`` (rank ``r``, in coordinates ``V``), and ``eps'eps = g'g + chi2(n - r)``,
    independent. So ``s* = G c + sigma V lam^1/2 g`` and
    ``y*'Wy* = c'Gc + 2 sigma c'V lam^1/2 g + sigma^2 (g'g + chi2(n - r))``: the same
    distribution as forming them from simulated rows.
    """

    def __init__(self, model):
        stats = model.statistics
        p = model.p
        every = range(len(stats.factors))
        order = p + sum(f.n_levels * f.q for f in stats.factors)
        if order > MAX_SIMULATED_ORDER:
            raise ValueError(
                f"the parametric bootstrap of a linear mixed model draws from its statistics, and needs the "
                f"square root of a matrix of order {order} (fixed effects plus random effects); more than "
                f"{MAX_SIMULATED_ORDER} are not supported: use confint(method='profile')"
            )
        zx = stats.random_x_cross(every)
        G = np.empty((order, order))
        G[:p, :p] = stats.xy_cross[:p, :p]
        G[p:, :p] = zx[:, :p]
        G[:p, p:] = zx[:, :p].T
        G[p:, p:] = stats.random_cross_dense(every)
        lam, V = np.linalg.eigh(G)
        keep = lam > lam[-1] * order * np.finfo(float).eps
        self.root = V[:, keep] * np.sqrt(lam[keep])  # G = root root'
        self.G, self.p, self.model = G, p, model
        self.rank, self.n = int(keep.sum()), stats.n

    def draw(self, theta, beta, sigma, rng):
        """One replicate: ``(X'Wy*, y*'Wy*, Z'Wy*)``, drawn in a fixed order (random effects,
        then the residual's parts), so that replicate ``k`` is the same whatever their number."""
        factors = self.model.factors
        b = []
        for f, th in zip(factors, split_theta(factors, np.asarray(theta, dtype=float))):
            u = rng.standard_normal((f.n_levels, f.q))
            b.append((sigma * u @ f.cholesky_factor(th).T).ravel())
        c = np.concatenate([beta] + b)
        g = rng.standard_normal(self.rank)
        rest = rng.chisquare(self.n - self.rank) if self.n > self.rank else 0.0
        noise = self.root @ g
        s = self.G @ c + sigma * noise
        yy = float(c @ self.G @ c + 2.0 * sigma * (c @ noise) + sigma**2 * (g @ g + rest))
        return s[: self.p], yy, s[self.p :]


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
