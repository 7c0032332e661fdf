"""Starting values for theta: moment estimates, or one-factor fits for large crossed designs.

lme4 starts at ``T = I``. The search gets there faster from an estimate of each
factor's covariance: the spread of the per-level least-squares coefficients beyond
what their sampling error explains (:func:`moment_start`, a handful of batched
operations). With several large grouping factors an evaluation factorises a dense
block and the search has no analytic gradient; each factor fitted alone is cheap and
lands near the joint optimum (:func:`one_factor_start`).
"""

import math

import numpy as np

from .dense_gradient import solve_positive_definite
from .lmm import LinearMixedModel
from .optimize import minimize_bounded

#: A level's own regression counts only when its cross-product matrix is this well conditioned.
LEVEL_CONDITION = 1e-8

#: Smallest relative variance of a start, as a fraction of the default start's: a
#: variance of 0 is a stationary point the search could not leave, and near it the
#: deviance is flat.
START_FLOOR = 1e-2


def one_factor_start(statistics, reml):
    """theta from fitting each factor alone, stacked in the factors' order."""
    pieces = []
    for k in range(len(statistics.factors)):
        alone = LinearMixedModel(statistics.select_factors([k]), reml)
        opt = minimize_bounded(
            alone.objective, alone.theta_start * alone.theta_scale, alone.theta_lower, gradient=alone.gradient,
            scale=alone.theta_scale,
        )
        pieces.append(opt.x)
    return np.concatenate(pieces)


def moment_start(statistics, reml=True):
    """theta from moment estimates of every factor's covariance, or None where one fails.

    The residuals of y on X are regressed on each factor's covariates, level by level;
    with several factors, by backfitting (each factor on what the others leave), so
    that one factor's spread does not inflate another's residual variance. A factor's
    relative covariance is then the covariance of its levels' coefficients less their
    mean sampling covariance, over the pooled residual variance. Where one factor is
    nested in another (:func:`nesting_parents`), the outer levels' sampling error is
    their inner levels' spread, the inner coefficients lose a degree of freedom per
    outer level, and the residual's degrees of freedom count the inner factor only: on
    a balanced design (pastes) these are the ANOVA estimates, the REML optimum. For ML
    (``reml=False``) the outermost factors' spread is divided by the number of levels,
    not one less: on a balanced design, the ML optimum.

    All of it comes from the statistics (:mod:`.statistics`): a residual ``r`` of the
    rows is carried as the vector ``[-beta, 1]`` that makes it from ``[X y]``, and the
    backfitting runs on the levels' cross-products, ``Z_k'W r`` and ``Z_k'W Z_j``.
    """
    factors = statistics.factors
    if len(factors) == 1:
        return one_factor_moments(statistics, reml)
    p, a = statistics.p, statistics.xy_cross
    try:
        beta = solve_positive_definite(a[:p, :p], a[:p, p])
    except np.linalg.LinAlgError:  # X rank deficient: no start from here
        return None
    residual = np.append(-beta, 1.0)  # [X y] times this is the residual of y on X
    fits = [LevelRegressions(f, f.a_zz, statistics.sum_weights) for f in factors]
    if any(fit.n_ok < 2 for fit in fits):
        return None
    c = [f.a_zx @ residual for f in factors]  # Z_k'W r, per level (m_k, q_k)
    cross = CrossBlocks(statistics)
    coefs = [np.zeros((f.n_levels, f.q)) for f in factors]
    r_square = float(residual @ a @ residual)
    coarse_first = sorted(range(len(fits)), key=lambda k: fits[k].factor.n_levels)  # nested: outer, then inner
    for sweep in range(BACKFIT_SWEEPS):
        change = 0.0
        for position, k in enumerate(coarse_first):
            # the factors not fitted yet (the first sweep's later ones) have no effects to take out
            others = [j for j in coarse_first[: position if sweep == 0 else len(coarse_first)] if j != k]
            rhs = c[k] - sum(cross.times(k, j, coefs[j].ravel()).reshape(c[k].shape) for j in others)
            fitted = fits[k].solve(rhs)
            if sweep:
                step = fitted - coefs[k]
                change = max(change, float(np.einsum("gi,gij,gj->", step, factors[k].a_zz, step)))
            coefs[k] = fitted
        if sweep and change <= BACKFIT_TOL**2 * r_square:  # converged (orthogonal factors: at once)
            break
    parents = nesting_parents(statistics, cross)
    spanned = {k for k, _ in parents.values()}  # an outer factor's columns lie in its inner one's span
    dof = statistics.n - sum(fit.n_ok * fit.factor.q for k, fit in enumerate(fits) if k not in spanned)
    # crossed factors with an intercept each all span the constant: in a connected design
    # their levels together span one dimension fewer per factor beyond the first
    constant = [k for k, f in enumerate(factors) if k not in spanned and f.intercept]
    dof += max(len(constant) - 1, 0)
    # weighted squares of r - sum_k Z_k coef_k
    rss = r_square - 2.0 * sum(float(np.sum(ck * bk)) for ck, bk in zip(c, coefs))
    for k, f in enumerate(factors):
        rss += float(np.einsum("gi,gij,gj->", coefs[k], f.a_zz, coefs[k]))
        for j in range(len(factors)):
            if j != k:
                rss += float(coefs[k].ravel() @ cross.times(k, j, coefs[j].ravel()))
    if dof <= 0 or not rss > 0:
        return None
    sigma2 = rss / dof
    raw = [fit.coefficient_spread(parents[k][1] if k in parents else None, reml) for k, fit in enumerate(fits)]
    pieces = []
    for k, fit in enumerate(fits):
        inner = [(j, parent_of) for j, (outer, parent_of) in parents.items() if outer == k]
        if inner:  # the sampling error of an outer level's coefficient is its inner levels' spread
            spread = raw[k] - sum(fits[k].mean_inverse_count(parent_of, fits[j].ok) * raw[j] for j, parent_of in inner)
        else:
            spread = raw[k] - sigma2 * fit.mean_sampling_covariance()
        pieces.append(fit.relative_theta(spread, sigma2))
    return np.concatenate(pieces)


def nesting_parents(statistics, cross=None):
    """Nested pairs: ``{inner: (outer, outer level of each inner level)}``.

    A factor is nested in another with the same covariates (the same terms, an
    intercept first) when each of its levels meets one of the other's levels only
    (pastes: cask within batch); of several such, the one with most levels. Then the
    outer factor's columns are sums of the inner one's, which backfitting splits as
    outer means and within-outer deviations. Which levels meet is read from the
    intercepts' entries of ``Z_inner'W Z_outer`` (positive weights: nonzero where they
    meet); ``cross``: the :class:`CrossBlocks` of ``statistics``, if at hand.
    """
    factors = statistics.factors
    cross = CrossBlocks(statistics) if cross is None else cross
    parents = {}
    for k, inner in enumerate(factors):
        best = None
        for j, outer in enumerate(factors):
            if j == k or outer.n_levels >= inner.n_levels or outer.terms != inner.terms:
                continue
            if not (outer.intercept and inner.intercept):
                continue
            parent_of = cross.single_level_met(k, j)
            if parent_of is not None:  # each inner level within one outer level
                if best is None or outer.n_levels > factors[best[0]].n_levels:
                    best = (j, parent_of)
        if best is not None:
            parents[k] = best
    return parents


class CrossBlocks:
    """``Z_i'W Z_j`` of every pair of factors, read from the entries of the stored block
    (``i < j``, CSR) in both directions: a product is one ``bincount`` of the entries, in
    the order a CSR product of the block or of its transpose adds them, without forming
    the transpose (at a start's sizes, scipy's per-product overhead is most of its cost)."""

    def __init__(self, statistics):
        self.factors = statistics.factors
        self.entries = {key: (e.rows, e.cols, e.data, e.shape) for key, e in statistics.cross_entries().items()}

    def _oriented(self, i, j):
        """Entries of ``Z_i'W Z_j``: (its rows, its columns, values, shape)."""
        if i < j:
            return self.entries[(i, j)]
        rows, cols, data, shape = self.entries[(j, i)]
        return cols, rows, data, (shape[1], shape[0])

    def times(self, i, j, x):
        """``Z_i'W Z_j x``."""
        rows, cols, data, shape = self._oriented(i, j)
        return np.bincount(rows, weights=data * x[cols], minlength=shape[0])

    def single_level_met(self, k, j):
        """The level of factor ``j`` each level of factor ``k`` meets (their intercepts'
        entries), or None where a level of ``k`` meets several or none."""
        rows, cols, data, _ = self._oriented(k, j)
        qk, qj, m = self.factors[k].q, self.factors[j].q, self.factors[k].n_levels
        met = data != 0
        if qk > 1 or qj > 1:  # the intercepts' entries (with one term each, every entry is one)
            met &= (rows % qk == 0) & (cols % qj == 0)
        level = rows[met] // qk if qk > 1 else rows[met]
        if len(level) != m or np.any(np.bincount(level, minlength=m) != 1):
            return None
        parent_of = np.empty(m, dtype=np.intp)
        parent_of[level] = cols[met] // qj if qj > 1 else cols[met]
        return parent_of


def one_factor_moments(statistics, reml=True):
    """:func:`moment_start` for one factor."""
    f = statistics.factors[0]
    if f.q == 1:
        return scalar_moments(statistics, reml)
    p, a = statistics.p, statistics.xy_cross
    try:
        beta = solve_positive_definite(a[:p, :p], a[:p, p])
    except np.linalg.LinAlgError:  # X rank deficient: no start from here
        return None
    residual = np.append(-beta, 1.0)  # [X y] times this is the residual of y on X
    fit = LevelRegressions(f, f.a_zz, statistics.n)
    if fit.n_ok < 2:
        return None
    c = f.a_zx @ residual  # (m, q): Z_g'W r per level
    fit.coef = np.einsum("gij,gj->gi", fit.A_inv, c[fit.ok])
    rss = float(residual @ a @ residual) - float(np.einsum("gi,gi->", c[fit.ok], fit.coef))
    dof = statistics.n - fit.n_ok * f.q
    if dof <= 0 or not rss > 0:
        return None
    sigma2 = rss / dof
    return fit.relative_theta(fit.coefficient_spread(None, reml) - sigma2 * fit.mean_sampling_covariance(), sigma2)


def scalar_moments(statistics, reml=True):
    """:func:`one_factor_moments` for one random term, in scalar arithmetic.

    The same estimator as :class:`LevelRegressions` gives, level by level: each level's
    coefficient ``e_g / a_g`` (``a_g = sum w z^2``, ``e_g = sum w z r`` of the residuals
    ``r`` of y on X), their spread over the levels of typical precision less their mean
    sampling variance ``sigma^2 / a_g``, over ``sigma^2``.
    """
    f = statistics.factors[0]
    p, A, n = statistics.p, statistics.xy_cross, statistics.n
    a, C = f.a_zz[:, 0, 0], f.a_zx[:, 0, :]
    try:
        beta = solve_positive_definite(A[:p, :p], A[:p, p])
    except np.linalg.LinAlgError:  # X rank deficient: no start from here
        return None
    ok = a > 0
    n_ok = int(np.count_nonzero(ok))
    dof = n - n_ok
    if n_ok < 2 or dof <= 0:
        return None
    inverse = 1.0 / a[ok]
    e = C[ok, p] - C[ok, :p] @ beta
    coef = e * inverse
    rss = float(A[p, p] - A[p, :p] @ beta - e @ coef)
    if not rss > 0:
        return None
    sigma2 = rss / dof
    middle = inverse.copy()
    middle.partition(n_ok // 2)  # np.partition is a wrapper around these two, at more than their cost
    typical = middle[n_ok // 2]
    precise = inverse <= PRECISE_LEVELS * typical
    if np.count_nonzero(precise) < 2:
        precise[:] = True
    kept = coef[precise]
    deviation = kept - kept.sum() / len(kept)
    spread = float(deviation @ deviation) / max(len(kept) - (1 if reml else 0), 1)
    relative = (spread - sigma2 * float(inverse[precise].sum()) / len(kept)) / sigma2
    floor = START_FLOOR * n / float(a.sum())  # START_FLOOR / the mean square of z
    return np.array([math.sqrt(max(relative, floor))])


#: Levels whose sampling variance (trace of the inverse cross-products) exceeds this
#: multiple of the median are left out of a factor's spread.
PRECISE_LEVELS = 4.0

#: Backfitting sweeps over several factors for :func:`moment_start`, and the change of
#: the fitted effects (relative to the largest residual) below which a sweep is the last.
BACKFIT_SWEEPS = 3
BACKFIT_TOL = 1e-12


class LevelRegressions:
    """Least squares of a response on one factor's covariates, level by level (batched).

    Only levels whose cross-product matrix is well conditioned count (``ok``); the
    others get coefficients of 0.
    """

    def __init__(self, factor, A, total_weight):
        q = factor.q
        self.factor = factor
        # mean square of each covariate over the rows: the scale of the start's floor
        self.mean_square = np.diagonal(A.sum(axis=0)) / total_weight
        if q == 1:  # a scalar per level: numpy's linalg calls cost more than the arithmetic
            self.ok = A[:, 0, 0] > 0
            self.n_ok = int(np.count_nonzero(self.ok))
            self.A_inv = 1.0 / (A if self.n_ok == len(A) else A[self.ok])
            size = self.A_inv[:, 0, 0]
        else:
            eig = np.linalg.eigvalsh(A)
            self.ok = (eig[:, -1] > 0) & (eig[:, 0] > LEVEL_CONDITION * eig[:, -1])
            self.n_ok = int(self.ok.sum())
            self.A_inv = np.linalg.inv(A[self.ok]) if self.n_ok else np.zeros((0, q, q))
            size = np.trace(self.A_inv, axis1=1, axis2=2)
        # the spread is taken over levels of typical precision: a few near-degenerate ones
        # (a slope's covariate nearly constant within the level) would swamp both terms;
        # choosing them by their design alone leaves the estimate unbiased
        typical = np.partition(size, self.n_ok // 2)[self.n_ok // 2] if self.n_ok else 0.0  # the median, near enough
        self.precise = size <= PRECISE_LEVELS * typical
        if np.count_nonzero(self.precise) < 2:  # too few left for a spread: all count
            self.precise[:] = True
        self.spread_levels = np.flatnonzero(self.ok)[self.precise]  # codes of those levels
        self.coef = None

    def solve(self, c):
        """The levels' coefficients for the right-hand sides ``c`` (m, q), ``Z_g'W r``
        per level: ``A_g^-1 c_g``, 0 for the levels left out. Keeps those of the levels
        that count in ``coef``."""
        if self.n_ok == len(self.ok):  # every level counts: nothing to gather or scatter
            self.coef = self._times_inverse(c)
            return self.coef
        coef = np.zeros_like(c)
        coef[self.ok] = self._times_inverse(c[self.ok])
        self.coef = coef[self.ok]
        return coef

    def _times_inverse(self, c):
        """``A_g^-1 c_g`` for the levels that count (a product per level where ``q`` is 1)."""
        if self.factor.q == 1:
            return self.A_inv[:, 0] * c
        return np.einsum("gij,gj->gi", self.A_inv, c)

    def coefficient_spread(self, parent_of=None, reml=True):
        """Covariance of the levels' coefficients. For an inner factor of a nesting
        (``parent_of``: its levels' outer levels) the coefficients are deviations within
        each outer level, which costs one degree of freedom per outer level; for an
        outer one the overall mean costs one under REML, none under ML."""
        coef = self.coef[self.precise]
        if parent_of is None:
            n_groups = 1 if reml else 0
        else:
            n_groups = int(np.count_nonzero(np.bincount(parent_of[self.spread_levels])))  # outer levels met
        dev = coef - coef.sum(axis=0) / len(coef)
        return dev.T @ dev / max(len(coef) - n_groups, 1)

    def mean_sampling_covariance(self):
        """Mean sampling covariance of a coefficient, relative to the residual variance."""
        inverse = self.A_inv[self.precise]
        return inverse.sum(axis=0) / len(inverse)

    def mean_inverse_count(self, parent_of, inner_ok):
        """Mean over this (outer) factor's levels of 1 / its number of inner levels: the
        share of the inner spread in each outer coefficient."""
        counts = np.bincount(parent_of[inner_ok], minlength=self.factor.n_levels)[self.spread_levels]
        shares = 1.0 / counts[counts > 0]
        return float(shares.sum() / len(shares)) if len(shares) else 0.0  # np.mean's arithmetic

    def relative_theta(self, spread, sigma2):
        """theta of a covariance ``spread`` of the random effects, relative to ``sigma2``."""
        f = self.factor
        floor = START_FLOOR / float(self.mean_square.max())  # START_FLOOR * min(theta_scale)^2
        if f.q == 1:
            return np.sqrt(np.maximum(spread[0] / sigma2, floor))
        if f.diagonal:
            spread = np.diag(np.diag(spread))
        lam, vec = np.linalg.eigh(spread / sigma2)
        relative = (vec * np.maximum(lam, floor)) @ vec.T
        return f.theta_from_cholesky(np.linalg.cholesky(relative))
