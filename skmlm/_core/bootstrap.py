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
response's parts (``X'Wy*``, ``y*'Wy*``, ``Z'Wy*``) are recomputed, for a whole batch
of replicates in one sparse product each. A replicate's refit then costs what a fit
costs after its cross-products: nothing in the number of rows.
"""

import numpy as np

from .derived import ResponseCrossProducts
from .design import split_theta
from .optimize import minimize_bounded
from .varpar import VarianceParameters

#: Largest number of simulated values (rows x replicates) held at once.
MAX_BATCH_VALUES = 2_000_000


def simulate(factors, X, weights, theta, beta, sigma, n_sim, rng):
    """``n_sim`` responses from the fitted model, one per column: (n, n_sim).

    The draws are made replicate by replicate (each replicate's random effects, then its
    residuals), so the first ``k`` replicates are the same whatever ``n_sim`` and batch.
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    sizes = [f.n_levels * f.q for f in factors]
    draws = rng.standard_normal((n_sim, sum(sizes) + n))
    Y = np.repeat((X @ beta)[:, None], n_sim, axis=1)
    start = 0
    for f, th, size in zip(factors, split_theta(factors, np.asarray(theta, dtype=float)), sizes):
        T = f.cholesky_factor(th)
        u = draws[:, start : start + size].reshape(n_sim, f.n_levels, f.q)
        start += size
        b = sigma * np.einsum("ij,sgj->gis", T, u)  # (levels, q, n_sim)
        Y += np.einsum("ij,ijs->is", f.z, b[f.codes])
    Y += (sigma / np.sqrt(weights))[:, None] * draws[:, start:].T
    return Y


def parametric_bootstrap(model, X, weights, theta, n_boot, rng, progress=None):
    """Refit ``n_boot`` responses simulated from ``model`` at ``theta``.

    Parameters
    ----------
    model : LinearMixedModel
        The fitted core model (its ``reml`` flag is kept for the refits).
    X, weights : ndarray
        The fixed-effects design and prior weights of the fit.
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
    rcp = ResponseCrossProducts(model, X, weights)
    n = X.shape[0]
    batch = max(1, min(n_boot, MAX_BATCH_VALUES // max(1, n)))
    out = np.empty((n_boot, vp.size + model.p))
    converged = np.zeros(n_boot, dtype=bool)
    dof = model.n - model.p if model.reml else model.n
    done = 0
    while done < n_boot:
        k = min(batch, n_boot - done)
        parts = rcp.compute(simulate(model.factors, X, weights, theta, beta, sigma, k, rng))
        for b in range(k):
            mb = rcp.model_for(parts, b)
            opt = minimize_bounded(
                mb.objective, np.asarray(theta, dtype=float), mb.theta_lower,
                gradient=mb.gradient if mb.has_gradient else None, derivative_free=mb.costly_evaluation,
            )
            dec = mb.decompose(opt.x)
            s = float(np.sqrt(dec.pwrss / dof))
            out[done + b, : vp.size] = vp.from_theta(opt.x, s)
            out[done + b, vp.size :] = mb._beta(dec)
            converged[done + b] = opt.converged
            if progress is not None:
                progress(done + b + 1, n_boot)
        done += k
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
