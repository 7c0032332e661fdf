"""Starting values for theta: moment estimates, or one-factor fits for large crossed designs.

lme4 starts at ``T = I``. The search gets there faster from an estimate of each
factor's covariance: the spread of the per-level least-squares coefficients beyond
what their sampling error explains (:func:`moment_start`, a handful of batched
operations). With several large grouping factors an evaluation factorises a dense
block and the search has no analytic gradient; each factor fitted alone is cheap and
lands near the joint optimum (:func:`one_factor_start`).
"""

import numpy as np

from .lmm import LinearMixedModel, level_cross_products
from .optimize import minimize_bounded

#: A level's own regression counts only when its cross-product matrix is this well conditioned.
LEVEL_CONDITION = 1e-8

#: Smallest relative variance of a start, as a fraction of the default start's: a
#: variance of 0 is a stationary point the search could not leave, and near it the
#: deviance is flat.
START_FLOOR = 1e-2


def one_factor_start(factors, X, y, weights, reml):
    """theta from fitting each factor alone, stacked in the factors' order."""
    pieces = []
    for f in factors:
        alone = LinearMixedModel([f], X, y, weights, reml)
        opt = minimize_bounded(
            alone.objective, alone.theta_start * alone.theta_scale, alone.theta_lower, gradient=alone.gradient,
            scale=alone.theta_scale,
        )
        pieces.append(opt.x)
    return np.concatenate(pieces)


def moment_start(factors, X, y, weights, cross_products=None):
    """theta from moment estimates of every factor's covariance, or None where one fails.

    The residuals of y on X are regressed on each factor's covariates, level by level;
    with several factors, by backfitting (each factor on what the others leave), so
    that one factor's spread does not inflate another's residual variance. A factor's
    relative covariance is then the covariance of its levels' coefficients less their
    mean sampling covariance, over the pooled residual variance. With one factor and
    the model's :class:`~.lmm.CrossProducts`, all of it comes from them (no pass over
    the rows).
    """
    if len(factors) == 1 and cross_products is not None:
        return one_factor_moments(cross_products)
    Xw = X * weights[:, None]
    try:
        beta = np.linalg.solve(X.T @ Xw, Xw.T @ y) if X.shape[1] else np.zeros(0)
    except np.linalg.LinAlgError:  # X rank deficient: no start from here
        return None
    r = y - X @ beta
    fits = [LevelRegressions.from_rows(f, weights) for f in factors]
    if any(fit.n_ok < 2 for fit in fits):
        return None
    effects = [np.zeros_like(r) for _ in fits]
    coarse_first = sorted(range(len(fits)), key=lambda k: fits[k].factor.n_levels)  # nested: outer, then inner
    for _ in range(BACKFIT_SWEEPS if len(fits) > 1 else 1):
        for k in coarse_first:
            effects[k] = fits[k].solve(r - sum(e for j, e in enumerate(effects) if j != k))
    residual = r - sum(effects)
    dof = len(r) - sum(fit.n_ok * fit.factor.q for fit in fits)
    rss = float(weights @ residual**2)
    if dof <= 0 or not rss > 0:
        return None
    sigma2 = rss / dof
    return np.concatenate([fit.relative_theta(sigma2) for fit in fits])


def one_factor_moments(cp):
    """:func:`moment_start` for one factor from its blocked cross-products."""
    p, a = cp.p, cp.a_xx
    try:
        beta = np.linalg.solve(a[:p, :p], a[:p, p]) if p else np.zeros(0)
    except np.linalg.LinAlgError:  # X rank deficient: no start from here
        return None
    residual = np.append(-beta, 1.0)  # [X y] times this is the residual of y on X
    fit = LevelRegressions(cp.first, cp.a11, total_weight=cp.n)
    if fit.n_ok < 2:
        return None
    c = cp.a1x @ residual  # (m, q): Z_g'W r per level
    fit.coef = np.einsum("gij,gj->gi", fit.A_inv, c[fit.ok])
    rss = float(residual @ a @ residual) - float(np.einsum("gi,gi->", c[fit.ok], fit.coef))
    dof = cp.n - fit.n_ok * cp.first.q
    if dof <= 0 or not rss > 0:
        return None
    return fit.relative_theta(rss / dof)


#: Levels whose sampling variance (trace of the inverse cross-products) exceeds this
#: multiple of the median are left out of a factor's spread.
PRECISE_LEVELS = 4.0

#: Backfitting sweeps over several factors for :func:`moment_start`.
BACKFIT_SWEEPS = 3


class LevelRegressions:
    """Least squares of a response on one factor's covariates, level by level (batched).

    Only levels whose cross-product matrix is well conditioned count (``ok``); the
    others get coefficients of 0.
    """

    def __init__(self, factor, A, weights=None, total_weight=None):
        q = factor.q
        self.factor, self.weights = factor, weights
        # mean square of each covariate over the rows: the scale of the start's floor
        self.mean_square = np.diagonal(A.sum(axis=0)) / (weights.sum() if total_weight is None else total_weight)
        if q == 1:  # a scalar per level: numpy's linalg calls cost more than the arithmetic
            self.ok = A[:, 0, 0] > 0
            self.n_ok = int(self.ok.sum())
            self.A_inv = 1.0 / A[self.ok]
        else:
            eig = np.linalg.eigvalsh(A)
            self.ok = (eig[:, -1] > 0) & (eig[:, 0] > LEVEL_CONDITION * eig[:, -1])
            self.n_ok = int(self.ok.sum())
            self.A_inv = np.linalg.inv(A[self.ok]) if self.n_ok else np.zeros((0, q, q))
        # the spread is taken over levels of typical precision: a few near-degenerate ones
        # (a slope's covariate nearly constant within the level) would swamp both terms;
        # choosing them by their design alone leaves the estimate unbiased
        size = np.trace(self.A_inv, axis1=1, axis2=2)
        typical = np.sort(size)[self.n_ok // 2] if self.n_ok else 0.0  # the median, near enough
        self.precise = size <= PRECISE_LEVELS * typical
        self.coef = None

    @classmethod
    def from_rows(cls, factor, weights):
        """From the rows: ``A_g = sum of w z z'`` over each level's rows."""
        return cls(factor, level_cross_products(factor, weights), weights)

    def solve(self, r):
        """Fit ``r``; returns the fitted part ``z . coef[level]`` per row."""
        f = self.factor
        c = np.column_stack([np.bincount(f.codes, weights=self.weights * f.z[:, a] * r, minlength=f.n_levels)
                             for a in range(f.q)])
        coef = np.zeros_like(c)
        coef[self.ok] = np.einsum("gij,gj->gi", self.A_inv, c[self.ok])
        self.coef = coef[self.ok]
        return np.einsum("ij,ij->i", f.z, coef[f.codes])

    def relative_theta(self, sigma2):
        """theta of the coefficients' covariance less their sampling covariance, over sigma2."""
        f = self.factor
        coef, A_inv = self.coef[self.precise], self.A_inv[self.precise]
        if len(coef) < 2:
            coef, A_inv = self.coef, self.A_inv
        dev = coef - coef.mean(axis=0)
        spread = dev.T @ dev / (len(coef) - 1) - sigma2 * A_inv.mean(axis=0)
        floor = START_FLOOR / float(np.max(self.mean_square))  # START_FLOOR * min(theta_scale)^2
        if f.q == 1:
            return np.sqrt(np.maximum(spread[0] / sigma2, floor))
        if f.diagonal:
            spread = np.diag(np.diag(spread))
        lam, vec = np.linalg.eigh(spread / sigma2)
        relative = (vec * np.maximum(lam, floor)) @ vec.T
        return f.theta_from_cholesky(np.linalg.cholesky(relative))
