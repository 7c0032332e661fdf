"""Fit a linear mixed model: search theta, then the estimates at the optimum.

The search is the part of a fit that needs judgement; it is kept here, apart from the
estimator, so that it reads as one procedure:

1. search on centred random-slope covariates (:mod:`.centring`): the same model,
   better conditioned;
2. start at moment estimates of the covariances (:mod:`.start`); where they cannot be
   had, at ``T = diag(1 / RMS of z)``, or, for large crossed designs, at one-factor fits;
3. with a gradient, search without bounds (``T`` and its column-sign mirror give the same
   ``T T'``, and a variance of 0 is then no wall to stall at): Newton steps, BFGS where
   they stop short; without one, Newton steps on finite differences from a moment
   start, then COBYQA within lme4's bounds (the mirror confuses its model of the surface);
4. map the optimum back to lme4's form (diagonal >= 0, near-zero variances set to 0
   where no worse) and to the user's coordinates;
5. where the search ended short of an optimum, search once more from there, in the
   user's coordinates and within lme4's bounds.

``max_iter`` bounds the iterations of both searches together.
"""

import copy

import numpy as np
from scipy.linalg.blas import ddot

from .centring import centre_factors, raw_modes, raw_theta
from .design import canonical_theta, split_theta
from .lmm import LinearMixedModel
from .optimize import minimize_bounded, snap_to_bounds
from .start import moment_start, one_factor_start

#: COBYQA's first trust-region radius from a moment start (in units of theta's scale).
RADIUS = 0.02

#: Variance parameters closer to 0 than this are tried at 0 (lme4 reports boundary fits so).
SNAP_TOL = 1e-6

#: A residual sum of squares below this fraction of ``y'Wy`` is rounding: y is an exact fit.
EXACT_TOL = 1e-12

EXACT_FIT = (
    "y is an exact function of X and the grouping factors (e.g. constant within every level of a "
    "grouping factor): the residual variance is 0, and the likelihood of a mixed model has no maximum "
    "there (it grows without bound as the residual variance goes to 0); there is no residual variance to "
    "split between levels"
)


def fit_lmm(statistics, reml, max_iter=1000, tol=1e-6, verbose=0):
    """Fit by ML or REML from the model's statistics (:mod:`.statistics`); returns
    ``(model, opt, est)`` in the user's coordinates.

    ``model`` is the core model (its ``factors`` those of ``statistics``), ``opt`` the
    :class:`~.optimize.OptimizeResult` (``x`` is theta; its ``log`` is in the search's
    coordinates, centred where slopes were centred, followed by those of
    :func:`search_within_bounds` where it ran), ``est`` the estimates at theta.

    Statistics of a y of extreme magnitude hold ``y / statistics.y_scale`` (see
    :func:`response_scale`); ``opt`` and ``est`` are in the units of y all the same,
    ``model`` in its own.
    """
    scale = statistics.y_scale
    search_statistics, maps = centre_factors(statistics)
    model = LinearMixedModel(search_statistics, reml)
    total = float(statistics.xy_cross[-1, -1])
    if model.fixed_effects_rss() <= EXACT_TOL * total:
        raise ValueError(
            "y is an exact linear function of X (residual sum of squares 0): the likelihood of a "
            "mixed model is unbounded there; there is no residual variance to split between levels"
        )
    try:
        model, opt, est = _search(statistics, search_statistics, maps, model, reml, max_iter, tol, verbose)
    except np.linalg.LinAlgError:  # the search ran to where a factorisation fails: an exact fit?
        if exact_residual(model) <= EXACT_TOL * total:
            raise ValueError(EXACT_FIT) from None
        raise
    dof = model.n - model.p if reml else model.n
    if est["sigma2"] * dof <= EXACT_TOL * total:  # the residual variance went to 0: rounding
        raise ValueError(EXACT_FIT)
    if not opt.converged and exact_residual(model) <= EXACT_TOL * total:  # stalled on the way to 0
        raise ValueError(EXACT_FIT)
    if scale != 1.0:
        _to_user_scale(opt, est, scale, dof)
    return model, opt, est


#: Outside this range the sum of squares of y calls for a fit on an internal scale: beyond
#: it the cross-products of y overflow, below it they lose precision.
SQUARES_RANGE = (2.0**-700, 2.0**700)


def response_scale(y):
    """The scale the linear model is fitted on: 1.0 for y of ordinary magnitude, else the
    power of two nearest to its largest ``|y|``.

    Dividing y by a power of two is exact, and changes nothing but the units: theta is
    the same, beta, the modes and sigma scale with it, and the deviance shifts by
    ``dof log(scale^2)``. One BLAS dot product (which, unlike numpy's, raises no
    floating-point warning where it overflows) decides.
    """
    squares = ddot(y, y) if y.dtype == np.float64 and y.ndim == 1 else float(np.dot(y, y))
    if SQUARES_RANGE[0] < squares < SQUARES_RANGE[1]:
        return 1.0
    largest = float(np.max(np.abs(y))) if len(y) else 0.0
    if not 0.0 < largest < np.inf:
        return 1.0
    return 2.0 ** round(np.log2(largest))


def _to_user_scale(opt, est, scale, dof):
    """The results of a fit to ``y / scale`` in the units of y (in place)."""
    shift = dof * 2.0 * np.log(scale)
    opt.fun = opt.fun + shift
    opt.log = [(x, f + shift) for x, f in opt.log]
    est["cov_beta_unscaled"] = est["cov_beta"]  # in the units of y / scale: standard errors and correlations
    est["sigma2_unscaled"] = est["sigma2"]
    with np.errstate(over="ignore", under="ignore"):  # a variance of y near 1e160 is not a float
        est["beta"] = est["beta"] * scale
        est["sigma2"] = est["sigma2"] * scale * scale
        est["cov_beta"] = est["cov_beta"] * scale * scale
        est["random_effects"] = {k: v * scale for k, v in est["random_effects"].items()}
    if "deviance" in est:
        est["deviance"] = est["deviance"] + shift


def _search(statistics, search_statistics, maps, model, reml, max_iter, tol, verbose):
    """Steps 2 to 5 of the module docstring: ``(model, opt, est)``."""
    start, radius = model.theta_start * model.theta_scale, 0.25
    moments = moment_start(search_statistics, reml)
    if model.costly_evaluation:
        start, radius = (one_factor_start(search_statistics, reml), 0.05) if moments is None else (moments, RADIUS)
    elif moments is not None:
        start = moments
    lower = model.theta_lower if model.costly_evaluation else np.full_like(start, -np.inf)
    opt = minimize_bounded(
        model.objective, start, lower, search_radius=radius, scale=model.theta_scale,
        stationary=np.where(model.theta_lower == 0, 0.0, np.nan),
        gradient=model.gradient if model.has_gradient else None, derivative_free=model.costly_evaluation,
        max_iter=max_iter, decrement_tol=tol, verbose=verbose, newton_first=moments is not None,
        hessian=model.hessian if model.has_hessian else None,
        blocks=theta_blocks(model.factors) if model.has_blocked_gradient else None,
        final_step=not model.dear_evaluation, rough_derivatives=model.rough_derivatives if model.dear_evaluation else None,
    )
    search_factors = model.factors
    opt.x = canonical_theta(search_factors, opt.x)
    opt.x, opt.fun = snap_to_bounds(model.objective, opt.x, opt.fun, model.theta_lower, SNAP_TOL)
    est = model.estimates(opt.x)
    centred = any(A is not None for A in maps)
    if centred:
        def to_raw(theta):
            return raw_theta(search_factors, maps, split_theta(search_factors, theta))

        opt.x = to_raw(opt.x)  # opt.log stays in the search's coordinates
        est["random_effects"] = raw_modes(search_factors, maps, est["random_effects"])
    if not opt.converged and model.has_gradient and opt.n_iter < max_iter:
        raw = LinearMixedModel(statistics, reml) if centred else model
        second = search_within_bounds(raw, opt, max_iter=max_iter - opt.n_iter, tol=tol, verbose=verbose)
        if second is not None:
            return raw, second, raw.estimates(second.x)
    if centred:
        model = copy.copy(model)  # the same cross-products, reported with the user's factors
        model.factors = list(statistics.factors)
    return model, opt, est


def theta_blocks(factors):
    """The grouping factor of each entry of theta (the blocks of
    :func:`~.optimize.block_jacobian`); None for one factor (one block: nothing to split).

    The search passes them where a gradient is dear (the blocked route): on the dense
    route of small designs a gradient costs about what the rough Hessian's bookkeeping
    does, and a start at the optimum (balanced designs: pastes, penicillin) pays that
    bookkeeping and saves no gradient."""
    if len(factors) < 2:
        return None
    return np.repeat(np.arange(len(factors)), [f.n_theta for f in factors])


#: Largest order of ``[X Z]'W[X Z]`` for which :func:`exact_residual` solves the least
#: squares on ``[X Z]`` densely; beyond it, through the penalised factorisation.
MAX_DENSE_LEAST_SQUARES = 6000

#: Relative covariance factors this many times theta's scale make the penalty on the
#: random effects negligible: the penalised fit is then the least-squares fit on [X Z].
UNPENALISED = 1e6


def exact_residual(model):
    """Weighted residual sum of squares of ``y`` on ``[X Z]`` (least squares, no penalty),
    from the statistics: 0, up to rounding, where ``y`` is an exact function of X and the
    grouping factors. Only for a fit that failed or stalled.

    Up to ``MAX_DENSE_LEAST_SQUARES`` columns, by the pseudo-inverse of ``[X Z]'W[X Z]``
    (``Z`` and ``X`` overlap: it is singular); beyond, the penalised fit with a negligible
    penalty (inf where its factorisation fails: no verdict)."""
    stats, p = model.statistics, model.p
    every = range(len(stats.factors))
    order = p + sum(f.n_levels * f.q for f in stats.factors)
    if order > MAX_DENSE_LEAST_SQUARES:
        try:
            return float(model.decompose(UNPENALISED * model.theta_start * model.theta_scale).pwrss)
        except np.linalg.LinAlgError:
            return np.inf
    zx = stats.random_x_cross(every)
    G = np.empty((order + 1, order + 1))  # [X Z y]'W[X Z y]
    G[:p, :p], G[:p, p:-1], G[:p, -1] = stats.xy_cross[:p, :p], zx[:, :p].T, stats.xy_cross[:p, p]
    G[p:-1, :p], G[p:-1, p:-1], G[p:-1, -1] = zx[:, :p], stats.random_cross_dense(every), zx[:, p]
    G[-1, :p], G[-1, p:-1], G[-1, -1] = stats.xy_cross[p, :p], zx[:, p], stats.xy_cross[p, p]
    lam, V = np.linalg.eigh(G[:-1, :-1])
    keep = lam > lam[-1] * order * np.finfo(float).eps
    c = V[:, keep].T @ G[:-1, -1]
    return max(float(G[-1, -1] - c @ (c / lam[keep])), 0.0)


def search_within_bounds(model, opt, max_iter, tol, verbose):
    """Once more, when the search ended short of an optimum: from where it ended, in the
    user's coordinates (``model``'s) and within lme4's bounds (L-BFGS-B, then Newton steps).

    A singular covariance (a slope's variance 0) can leave the unbounded search on a
    degenerate ridge of the centred coordinates (``tools/check_optimum.py`` seed 396).
    Returns the second search's result, its evaluations after the first's in ``log`` and
    its iterations added to the first's, where it is better (or as good and converged);
    else None, its iterations added to ``opt.n_iter`` (``max_iter`` counts them all).
    """
    second = minimize_bounded(
        model.objective, np.maximum(opt.x, model.theta_lower), model.theta_lower, gradient=model.gradient,
        scale=model.theta_scale, max_iter=max_iter, decrement_tol=tol, verbose=verbose,
        hessian=model.hessian if model.has_hessian else None,
    )
    second.x = canonical_theta(model.factors, second.x)
    second.x, second.fun = snap_to_bounds(model.objective, second.x, second.fun, model.theta_lower, SNAP_TOL)
    if not (second.fun < opt.fun - 1e-10 * max(1.0, abs(opt.fun)) or (second.converged and second.fun <= opt.fun)):
        opt.n_iter += second.n_iter
        return None
    second.log = opt.log + second.log
    second.n_iter += opt.n_iter
    second.n_evaluations = len(second.log)
    return second
