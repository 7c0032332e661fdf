"""Profiled (RE)ML deviance of a linear mixed model, as lme4 formulates it.

Model: ``y = X beta + Z b + e``, ``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``,
``e ~ N(0, sigma^2 W^-1)`` with prior weights ``W``. beta and sigma^2 are profiled out,
so the deviance is a function of ``theta`` alone (Bates et al. 2015, section 3).

Everything is computed from the cross-products of ``[Z X y]``, formed once (by rows, by
chunks or by partitions) as :class:`~.statistics.LinearMixedStatistics` and read through
:class:`CrossProducts`. The random effects are split in two blocks:

* block 1, the largest factor, whose ``Z1'Z1`` is block diagonal (one ``q x q`` block
  per level): it is factorised with the batched routines of :mod:`.blocks`;
* block 2, all other factors, dense, reached through the sparse ``Z2'Z1``.

The Cholesky factor of ``Lambda' Z'W Z Lambda + I`` augmented by ``[X y]`` is then::

    L = [[L11,  0,    0  ],
         [L21,  L22,  0  ],
         [B1',  B2',  Lxy]]

and an evaluation costs nothing in the number of rows.
"""

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .blocks import (
    batched_cholesky, batched_inverse_lower, batched_logdet_chol, batched_solve_lower, batched_solve_upper_t,
    congruence, left_multiply_t,
)
from . import scalar_lmm
from .coupling import CouplingBlock, blockdiag
from .blocked_gradient import BlockedGradient
from .crossed_derivatives import CrossedDerivatives
from .dense_gradient import (
    MAX_DENSE_GRADIENT, MAX_DENSE_ONE_FACTOR, DenseGradient, cholesky_lower, cholesky_lower_overwrite,
)
from .design import lower_bounds, split_theta, start_theta
from .packed import PackedCholesky
from .statistics import CrossEntries

#: Block 2 (all factors but the largest) is held as one dense float64 matrix; it may take
#: at most this share of the machine's physical memory.
DENSE_BLOCK_MEMORY_SHARE = 0.5

LOG_2PI = np.log(2.0 * np.pi)

#: From this order of the dense block on, an evaluation is dear enough to minimise the
#: number of evaluations (a derivative-free search) rather than the cost per step.
COSTLY_BLOCK = 100


def small_inverse(a):
    """Inverse of a small dense matrix (numpy's LAPACK call: scipy's wrappers cost more
    than the arithmetic at this size)."""
    return np.linalg.inv(a) if a.shape[0] else a.copy()


def physical_memory():
    """Bytes of physical memory of this machine; None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def check_dense_block(size):
    """Raise MemoryError, naming the numbers, where a dense ``size x size`` block of the
    factors after the largest would take more than ``DENSE_BLOCK_MEMORY_SHARE`` of the
    physical memory (a factorisation of it could not run without swapping)."""
    need, have = 8.0 * size * size, physical_memory()
    if have is not None and need > DENSE_BLOCK_MEMORY_SHARE * have:
        raise MemoryError(
            f"the grouping factors after the largest have {size} random effects in total; their block is held "
            f"as a dense {size} x {size} matrix of {need / 2**30:.1f} GiB, more than {DENSE_BLOCK_MEMORY_SHARE:.0%} "
            f"of this machine's {have / 2**30:.1f} GiB of memory; fit on a machine with more memory, or with "
            "fewer levels in the smaller grouping factors"
        )


class CrossProducts:
    """The cross-products of ``[Z X y]`` in the blocked form the factorisation reads.

    Parameters
    ----------
    statistics : LinearMixedStatistics
        The model's statistics (:mod:`.statistics`); nothing here reads rows.
    """

    def __init__(self, statistics):
        self.statistics = statistics
        self.factors = factors = statistics.factors
        self.n, self.p = statistics.n, statistics.p
        self.sum_log_weights = statistics.sum_log_weights
        order = sorted(range(len(factors)), key=lambda k: -factors[k].n_levels * factors[k].q)
        self.order = order
        self.first = factors[order[0]]
        self.rest = [factors[k] for k in order[1:]]
        self.a_xx = statistics.xy_cross
        self.a11 = self.first.a_zz  # A11: one q1 x q1 block per level
        self.a1x = self.first.a_zx
        self.second_size = sum(f.n_levels * f.q for f in self.rest)

    @cached_property
    def second(self):
        """The coupling block of the other factors (None with one factor).

        Built on first use: small designs go the dense way (:mod:`.dense_gradient`) and
        never need it, and building it costs more than their whole search.
        """
        if not self.rest:
            return None
        check_dense_block(self.second_size)
        stats, order = self.statistics, self.order
        a21 = sp.vstack([stats.cross_block(k, order[0]) for k in order[1:]], format="csr")
        return CouplingBlock(self.rest, a21, stats.random_cross_sparse(order[1:]), stats.random_x_cross(order[1:]),
                             self.first.q)


class ReweightedCrossProducts:
    """The cross-products of ``[Z X]`` under row weights ``W`` that change (a GLMM's
    working weights, new at each Newton step of PIRLS), in the blocked form
    :func:`decompose` reads, as :class:`CrossProducts` holds them for fixed weights.

    Which entries of ``Z'WZ`` can be nonzero follows from the rows' levels alone: it is
    found once, and :meth:`reweight` forms the values for new weights on it (as
    MixedModels.jl's GLMM reweights the blocks of its linear model), with no analysis
    of the sparsity and no sort.

    Parameters
    ----------
    factors : list of RandomFactor
    X : ndarray (n, p)
        The fixed-effects design (the columns of the joint system of ``(u, beta)``).
    """

    def __init__(self, factors, X):
        self.factors = list(factors)
        self.X = X
        self.n, self.p = X.shape
        order = sorted(range(len(factors)), key=lambda k: -factors[k].n_levels * factors[k].q)
        self.order = order
        self.first = f1 = self.factors[order[0]]
        self.rest = [self.factors[k] for k in order[1:]]
        m1, q1 = f1.n_levels, f1.q
        counts = np.bincount(f1.codes, minlength=m1)
        # rows sorted by level (every level present): each level's sum is a contiguous reduceat
        self._starts = None
        if self.n and counts.min() > 0 and np.all(f1.codes[1:] >= f1.codes[:-1]):
            self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._pairs = [(a, b) for a in range(q1) for b in range(a + 1)]
        # the first factor's covariates as contiguous rows, None for a column of ones (the
        # intercept: left out of the products, which it would not change)
        self._z1 = [None if a == 0 and np.all(f1.z[:, 0] == 1.0) else np.ascontiguousarray(f1.z[:, a])
                    for a in range(q1)]
        self.second_size = sum(f.n_levels * f.q for f in self.rest)
        self.second = None
        self.generation = 0  # reweightings so far
        if self.rest:
            check_dense_block(self.second_size)
            cols, offset = [], 0
            for f in self.rest:
                cols.append(offset + f.codes[:, None] * f.q + np.arange(f.q))
                offset += f.n_levels * f.q
            self.cols2 = np.hstack(cols)  # (n, Q2): row i's columns of block 2, one per factor and term
            z2 = np.hstack([f.z for f in self.rest])
            col1 = f1.codes[:, None] * q1 + np.arange(q1)
            size = self.second_size
            a21, self._a21_at = _pattern(self.cols2[:, :, None], col1[:, None, :], (size, m1 * q1))
            a22, self._a22_at = _pattern(self.cols2[:, :, None], self.cols2[:, None, :], (size, size))
            self._z21 = (z2[:, :, None] * f1.z[:, None, :]).reshape(self.n, -1)
            self._z22 = (z2[:, :, None] * z2[:, None, :]).reshape(self.n, -1)
            self._z2t = sp.hstack([f.design_matrix() for f in self.rest], format="csr").T.tocsr()  # Z2'
            self.second = CouplingBlock(self.rest, a21, a22, np.zeros((size, 0)), q1, reweightable=True)

    def level_sums(self, a):
        """Sums over the levels of the largest factor of ``a`` ((n,) or (n, k), by rows)."""
        if self._starts is not None:
            return np.add.reduceat(a, self._starts, axis=0)
        codes, m1 = self.first.codes, self.first.n_levels
        if a.ndim == 1:
            return np.bincount(codes, weights=a, minlength=m1)
        return np.stack([np.bincount(codes, weights=a[:, k], minlength=m1) for k in range(a.shape[1])], axis=1)

    def reweight(self, W, joint):
        """The cross-products at the row weights ``W``; with ``joint`` those with the
        columns of ``X`` too, else none (the modes at fixed ``beta``)."""
        f1, X = self.first, self.X
        q1 = f1.q
        self.generation += 1
        wz = [W if z is None else W * z for z in self._z1]  # each a contiguous row
        a11 = np.empty((f1.n_levels, q1, q1))
        for a, b in self._pairs:
            a11[:, a, b] = a11[:, b, a] = self.level_sums(wz[a] if self._z1[b] is None else wz[a] * self._z1[b])
        self.a11 = a11
        if joint:
            wx = W[:, None] * X
            self.a1x = np.stack([self.level_sums(wz[a][:, None] * X) for a in range(q1)], axis=1)
            self.a_xx = X.T @ wx
        else:
            self.a1x = np.zeros((f1.n_levels, q1, 0))
            self.a_xx = np.zeros((0, 0))
        if self.second is not None:
            size = self.second_size
            a21 = np.bincount(self._a21_at, weights=(W[:, None] * self._z21).ravel(), minlength=self.second.a21.nnz)
            a22 = np.bincount(self._a22_at, weights=(W[:, None] * self._z22).ravel(), minlength=self.second.a22.nnz)
            a2x = self._z2t @ wx if joint else np.zeros((size, 0))
            self.second.reweight(a21, a22, a2x)


def _pattern(rows, cols, shape):
    """A canonical CSR matrix of ones at the positions ``(rows, cols)`` (arrays that
    broadcast to one shape; repeats allowed), and each position's place in its ``.data``."""
    rows, cols = np.broadcast_arrays(rows, cols)
    key = rows.ravel().astype(np.int64) * shape[1] + cols.ravel()
    unique, at = np.unique(key, return_inverse=True)
    r, c = np.divmod(unique, shape[1])
    return CrossEntries(r, c, np.ones(len(unique)), shape).csr(), at.ravel()


def ordered_pieces(cp, theta):
    """``theta`` cut by factor in the order of the blocks of ``cp``, and ``T1`` (the
    largest factor's relative covariance factor): what :func:`decompose` reads."""
    pieces = split_theta(cp.factors, np.asarray(theta, dtype=float))
    pieces = [pieces[k] for k in cp.order]
    return pieces, cp.first.cholesky_factor(pieces[0])


def decompose(cp, pieces, T1, keep_inner=False):
    """The blocked Cholesky factor (:class:`Decomposition`) at the parameters
    ``pieces, T1`` (:func:`ordered_pieces`) of the cross-products ``cp``
    (:class:`CrossProducts`, or :class:`ReweightedCrossProducts` for a GLMM's Newton
    steps), augmented by their ``k`` columns (``[X y]`` for the linear model; ``X`` or
    none for PIRLS). ``keep_inner``: keep what the blocked gradient reads."""
    m1, q1 = cp.first.n_levels, cp.first.q
    k = cp.a_xx.shape[0]

    L11 = batched_cholesky(congruence(T1, cp.a11) + np.eye(q1))
    logdet_z = batched_logdet_chol(L11)
    B1, s = np.zeros((m1 * q1, 0)), cp.a_xx  # no columns: nothing to eliminate
    if k:
        B1 = batched_solve_lower(L11, left_multiply_t(T1, cp.a1x)).reshape(m1 * q1, k)
        s = s - B1.T @ B1
    K1 = L22 = inner = L11_inv = None
    second = cp.second
    if second is not None:
        p2 = pieces[1:]
        L11_inv = batched_inverse_lower(L11)
        K1 = T1 @ np.swapaxes(L11_inv, 1, 2)  # Lambda1 L11^-T, per level
        if keep_inner:
            schur, inner = second.schur(p2, K1, keep_inner=True)
        else:
            schur = second.schur(p2, K1)
        if schur.ndim == 3:  # block diagonal by levels: see CouplingBlock.level_blocks
            L22 = batched_cholesky(schur)
            logdet_z += batched_logdet_chol(L22)
        elif schur.ndim == 1:  # packed storage: see CouplingBlock.packed
            L22 = PackedCholesky(schur, second.size)
            logdet_z += L22.logdet()
        else:
            L22 = cholesky_lower_overwrite(schur)  # reads the lower triangle only
            logdet_z += 2.0 * np.log(np.diag(L22)).sum()
    dec = Decomposition(T1, L11, K1, pieces[1:], L22, B1, None, None, logdet_z, second, inner, L11_inv)
    if second is not None:
        dec.B2 = np.zeros((second.size, 0))
        if k:
            dec.B2 = dec.solve_l22(second.lambda2_t_at(p2) @ second.a2x - second.l21_times(p2, K1, B1))
            s = s - dec.B2.T @ dec.B2
    dec.Lxy = np.linalg.cholesky(s) if k else s
    return dec


@dataclass
class Decomposition:
    """The blocked Cholesky factor at one ``theta`` (see the module docstring).

    ``L21`` is not stored: ``K1 = T1 L11^-T`` (per level) and ``pieces2`` (block 2's
    theta) give its products through :class:`~.coupling.CouplingBlock`.
    """

    T1: np.ndarray
    L11: np.ndarray
    K1: np.ndarray
    pieces2: list
    L22: np.ndarray
    B1: np.ndarray
    B2: np.ndarray
    Lxy: np.ndarray
    logdet_z: float
    second: object = None
    inner: object = None  # A22 - A21 K1 K1' A21', kept for the blocked gradient
    L11_inv: object = None  # L11^-1 per level (which K1 is formed from), kept for the blocked gradient

    @property
    def L21(self):
        """``L21`` as a sparse matrix, dense where ``A21`` is (:attr:`.coupling.CouplingBlock.dense`);
        None with one factor; formed on request."""
        return None if self.second is None else self.second.l21(self.pieces2, self.K1)

    @property
    def dense_L22(self):
        """``L22`` as a dense lower triangle (it is held as a stack of the levels' blocks
        where block 2 is block diagonal: :attr:`~.coupling.CouplingBlock.level_blocks`)."""
        if isinstance(self.L22, PackedCholesky):
            return self.L22.dense()
        return blockdiag(self.L22).toarray() if self.L22 is not None and self.L22.ndim == 3 else self.L22

    def solve_l22(self, b):
        """``L22^-1 b`` for ``b`` of shape (Q2,) or (Q2, k)."""
        if isinstance(self.L22, PackedCholesky):
            return self.L22.solve(b)
        if self.L22.ndim == 3:
            m2, q2, _ = self.L22.shape
            return batched_solve_lower(self.L22, b.reshape(m2, q2, -1)).reshape(b.shape)
        return sla.solve_triangular(self.L22, b, lower=True, check_finite=False)

    def solve_l22_t(self, b):
        """``L22'^-1 b`` for ``b`` of shape (Q2,) or (Q2, k)."""
        if isinstance(self.L22, PackedCholesky):
            return self.L22.solve(b, trans=True)
        if self.L22.ndim == 3:
            m2, q2, _ = self.L22.shape
            return batched_solve_upper_t(self.L22, b.reshape(m2, q2, -1)).reshape(b.shape)
        return sla.solve_triangular(self.L22, b, lower=True, trans="T", check_finite=False)

    @property
    def Lx(self):
        return self.Lxy[:-1, :-1]

    @property
    def pwrss(self):
        """Penalised weighted residual sum of squares at the profiled beta."""
        return self.Lxy[-1, -1] ** 2

    @property
    def logdet_x(self):
        return 2.0 * np.log(np.diag(self.Lx)).sum()


class LinearMixedModel:
    """Profiled deviance of theta, and the estimates at a given theta.

    Parameters
    ----------
    statistics : LinearMixedStatistics
        The cross-products of ``[Z X y]`` (:mod:`.statistics`).
    reml : bool
        REML criterion instead of the maximum likelihood deviance.
    """

    def __init__(self, statistics, reml):
        self.statistics = statistics
        self.factors = list(statistics.factors)
        self.reml = bool(reml)
        self.cp = CrossProducts(statistics)
        self.n, self.p = statistics.n, statistics.p
        self.y_scale = statistics.y_scale
        self.theta_lower = lower_bounds(self.factors)
        self.theta_start = start_theta(self.factors)
        self.theta_scale = np.concatenate([f.theta_scale(self.n) for f in self.factors])
        self._scalar = scalar_lmm.is_scalar(self.factors)  # closed forms: see .scalar_lmm
        q_total = sum(f.n_levels * f.q for f in self.factors)
        limit = MAX_DENSE_GRADIENT if len(self.factors) > 1 else MAX_DENSE_ONE_FACTOR
        small = q_total <= limit and not self._scalar
        self._dense_gradient = None
        if small:
            every = range(len(self.factors))
            self._dense_gradient = DenseGradient(
                self.factors, statistics.random_cross_dense(every), statistics.random_x_cross(every), self.cp.a_xx,
                self.n, reml,
            )
        self._blocked_gradient = None
        # the gradient's inverse of block 2 costs two factorisations of it: where that block
        # is as small as the dense route's (MAX_DENSE_GRADIENT), an evaluation's cost is in
        # the levels, and a gradient saves the finite differences; beyond, the dense block's
        # cost dominates and a derivative-free search needs fewer of them. Block 2 factorised
        # by its levels (a nested factor) makes evaluations cheap enough that the
        # derivative-free search from the moment start costs less than the gradients
        # (nested_30k_130x2400: 27 ms against 33 ms of CPU time)
        if self._dense_gradient is None and self.cp.rest and self.cp.second_size <= MAX_DENSE_GRADIENT:
            if self.cp.second.pairs is not None and self.cp.second.level_blocks is None:
                self._blocked_gradient = BlockedGradient(self)
        # two crossed scalar factors whose second block is packed: an exact gradient and a
        # Hessian cost about three factorisations (:mod:`.crossed_derivatives`), where the
        # finite differences of a Newton search cost nine (crossed_200k_5000x5000)
        self._crossed = None
        if (len(self.factors) == 2 and all(f.q == 1 for f in self.factors) and self._dense_gradient is None
                and self.cp.second.packed):
            self._crossed = CrossedDerivatives()

    def fixed_effects_rss(self):
        """Weighted residual sum of squares of y on X alone (the fit with no random effects):
        the last diagonal entry of the Cholesky factor of ``[X y]'W[X y]``, squared; 0 where
        that factorisation fails, as it does when y lies in the span of X (X itself has
        full rank: :func:`skmlm._input.independent_columns`)."""
        try:
            return float(cholesky_lower(self.cp.a_xx)[-1, -1] ** 2)
        except np.linalg.LinAlgError:
            return 0.0

    # -- the factorisation -------------------------------------------------------
    def decompose(self, theta):
        """The factorisation at ``theta``. The last one is kept: a search asks for the
        value and then the gradient at the same point. It is let go before the next one
        is made, so that one dense block of the second factors is held, not two."""
        theta = np.asarray(theta, dtype=float)
        last = self.__dict__.get("_last_decomposition")
        if last is not None and last[0] is self.cp and np.array_equal(last[1], theta):
            return last[2]
        self._last_decomposition = last = None
        dec = self._decompose(theta)
        self._last_decomposition = (self.cp, theta.copy(), dec)
        return dec

    def _scalar_factorise(self, theta):
        """:func:`.scalar_lmm.factorise` at ``theta`` (one number), the last one kept."""
        t = float(theta[0])
        last = self.__dict__.get("_last_scalar")
        if last is not None and last[0] is self.cp and last[1] == t:
            return last[2]
        fact = scalar_lmm.factorise(self.cp, t)
        self._last_scalar = (self.cp, t, fact)
        return fact

    def _decompose(self, theta):
        return decompose(self.cp, *ordered_pieces(self.cp, theta), keep_inner=self._blocked_gradient is not None)

    # -- the objective ------------------------------------------------------------
    def deviance_from(self, dec):
        """-2 log-likelihood (ML) or -2 REML log-likelihood at the profiled beta, sigma."""
        return self.deviance(dec.logdet_z, dec.pwrss, dec.logdet_x)

    def deviance(self, logdet_z, pwrss, logdet_x):
        """-2 log-likelihood (ML) or -2 REML log-likelihood from its three parts."""
        n, p = self.n, self.p
        dof = n - p if self.reml else n
        dev = logdet_z + dof * (1.0 + LOG_2PI + np.log(pwrss / dof)) - self.cp.sum_log_weights
        return dev + logdet_x if self.reml else dev

    def objective(self, theta):
        """The profiled deviance at ``theta``; +inf where the factorisation fails."""
        try:
            if self._scalar:
                return self.deviance(*scalar_lmm.parts(self._scalar_factorise(theta)))
            if self._dense_gradient is not None:
                return self.deviance(*self._dense_gradient.parts(theta))
            dec = self.decompose(theta)
        except np.linalg.LinAlgError:  # scipy's LinAlgError is numpy's
            return np.inf
        deviance = self.deviance_from(dec)
        if dec.second is not None:
            self._keep_if_best(theta, dec, deviance)
        return deviance

    def _keep_if_best(self, theta, dec, deviance):
        """Keep the solution at the best point evaluated so far (where a factorisation
        holds a dense block, only the last one is kept, and the search's last evaluations
        are its neighbours): the estimates at the optimum then need no factorisation more.
        The solution costs two triangular solves, nothing next to the factorisation."""
        best = self.__dict__.get("_best_solution")
        if best is None or best[0] is not self.cp or deviance < best[2]:
            self._best_solution = (self.cp, np.array(theta, dtype=float), deviance, self._solution(dec))

    def _solution(self, dec):
        """``(beta, pwrss, deviance, lx_inv, u)`` from a decomposition."""
        beta = self._beta(dec)
        return beta, dec.pwrss, self.deviance_from(dec), small_inverse(dec.Lx), self._spherical_modes(dec, beta)

    @property
    def costly_evaluation(self):
        """Whether one evaluation costs enough to prefer few of them (a large dense block)."""
        return self.cp.second_size >= COSTLY_BLOCK and self._blocked_gradient is None and self._crossed is None

    @property
    def dear_evaluation(self):
        """Whether a search with derivatives should spare evaluations: a step that
        promises less than the tolerance is not worth one (a dense block factorised at
        each, :mod:`.crossed_derivatives`)."""
        return self._crossed is not None

    @property
    def has_gradient(self):
        """Whether :meth:`gradient` is available: one factor, several with few levels, or
        several whose second block is small enough for :mod:`.blocked_gradient`."""
        return (not self.cp.rest or self._dense_gradient is not None or self._blocked_gradient is not None
                or self._crossed is not None)

    @property
    def has_blocked_gradient(self):
        """Whether :meth:`gradient` runs on the blocked factorisation
        (:mod:`.blocked_gradient`): a gradient costs a factorisation with the largest
        factor's levels and a dense inverse of block 2, the dearest of the gradients."""
        return self._blocked_gradient is not None

    def gradient(self, theta):
        """Analytic gradient of the profiled deviance.

        Several factors with few levels: :class:`~.dense_gradient.DenseGradient`. One
        factor, batched over its levels:

        With ``M_g = T' A_g T + I`` per level, ``u`` and ``beta`` the modes at ``theta``:

        * ``d pwrss / dT = -2 sum_g s_g u_g'`` with ``s_g = Z_g'W (y - X beta - Z_g T u_g)``
          (envelope theorem: pwrss is a minimum over beta and u);
        * ``d log|M| / dT = 2 (sum_g M_g^-1 T' A_g)'``;
        * REML: ``d log|S_x| / dT = -2 sum_g [a_g S_x^-1 D_g' - (D_g S_x^-1 D_g' T' A_g)']``,
          ``S_x`` the Schur complement of X, ``a_g = Z_g'W X``, ``D_g = M_g^-1 T' a_g``.
        """
        if self._scalar:
            return self._scalar_derivatives(theta)[0]
        if self._dense_gradient is not None:
            return self._dense_gradient(theta)
        if self._blocked_gradient is not None:
            return self._blocked_gradient(theta)
        if self._crossed is not None:
            return self._crossed_derivatives(theta)[0]
        if not self.has_gradient:
            raise NotImplementedError("no analytic gradient for several factors with many levels")
        # NaN where the factorisation fails, as the objective is +inf there
        theta = np.asarray(theta, dtype=float)
        try:
            dec = self.decompose(theta)
        except np.linalg.LinAlgError:
            return np.full(len(theta), np.nan)
        cp, p, f = self.cp, self.p, self.cp.first
        T, m, q = dec.T1, f.n_levels, f.q
        beta = self._beta(dec)
        c = dec.B1[:, -1] - dec.B1[:, :-1] @ beta
        u = batched_solve_upper_t(dec.L11, c.reshape(m, q, 1))[:, :, 0]  # (m, q)
        a_x, a_y = cp.a1x[:, :, :p], cp.a1x[:, :, p]
        s = a_y - a_x @ beta - np.einsum("gij,gj->gi", cp.a11, u @ T.T)
        d_pwrss = -2.0 * (s.T @ u)
        linv = batched_inverse_lower(dec.L11)
        minv = np.swapaxes(linv, 1, 2) @ linv
        ta = left_multiply_t(T, cp.a11)  # T' A_g
        d_logdet = 2.0 * np.einsum("gij,gjk->ik", minv, ta).T
        dof = self.n - p if self.reml else self.n
        grad_T = d_logdet + dof / dec.pwrss * d_pwrss
        if self.reml and p > 0:
            lx_inv = small_inverse(dec.Lx)
            sx_inv = lx_inv.T @ lx_inv
            D = minv @ left_multiply_t(T, a_x)  # (m, q, p)
            DS = D @ sx_inv
            term1 = np.einsum("gip,gjp->ij", a_x, DS)
            E = DS @ np.swapaxes(D, 1, 2)
            term2 = np.einsum("gjk,gki->ji", E, ta)
            grad_T += -2.0 * (term1 - term2.T)
        rows, cols = f._tri
        return grad_T[rows, cols]

    @property
    def has_hessian(self):
        """Whether :meth:`hessian` is available: one factor with one random term, or two
        crossed scalar factors held packed (:mod:`.crossed_derivatives`)."""
        return self._scalar or self._crossed is not None

    def hessian(self, theta):
        """Hessian of the profiled deviance (exact for one factor with one random term;
        for two crossed scalar factors, two small terms estimated: see
        :mod:`.crossed_derivatives`); NaN where the factorisation fails."""
        if self._crossed is not None:
            return self._crossed_derivatives(theta)[1]
        if not self._scalar:
            raise NotImplementedError("a Hessian only for one scalar factor or two crossed scalar factors")
        return self._scalar_derivatives(theta)[1]

    def rough_derivatives(self, theta):
        """Gradient and Hessian for a first Newton step, cheaper than :meth:`gradient` and
        :meth:`hessian` and as good for a step; never for judging a point. Two crossed
        scalar factors held packed: the inversion in single precision
        (:class:`~.crossed_derivatives.CrossedDerivatives`); NaN where the factorisation
        fails."""
        if self._crossed is None:
            raise NotImplementedError("rough derivatives only for two crossed scalar factors held packed")
        return self._crossed(self, np.array(theta, dtype=float), single=True)

    def _crossed_derivatives(self, theta):
        """Gradient and Hessian by :class:`~.crossed_derivatives.CrossedDerivatives`, the
        last pair kept (a Newton step asks for both at one point)."""
        theta = np.array(theta, dtype=float)
        last = self.__dict__.get("_last_crossed")
        if last is not None and last[0] is self.cp and last[1] == self.reml and np.array_equal(last[2], theta):
            return last[3]
        result = self._crossed(self, theta)
        self._last_crossed = (self.cp, self.reml, theta, result)
        return result

    def _scalar_derivatives(self, theta):
        """Gradient (1,) and Hessian (1, 1) arrays by :func:`.scalar_lmm.derivatives`; the
        last pair is kept (a Newton step asks for both at one point)."""
        theta = np.asarray(theta, dtype=float)
        key = (self.cp, self.reml, float(theta[0]))
        last = self.__dict__.get("_last_derivatives")
        if last is not None and last[0][0] is key[0] and last[0][1:] == key[1:]:
            g, h = last[1]
        else:
            try:
                fact = self._scalar_factorise(theta)
            except np.linalg.LinAlgError:
                return np.full(1, np.nan), np.full((1, 1), np.nan)
            dof = self.n - self.p if self.reml else self.n
            g, h = scalar_lmm.derivatives(fact, key[2], dof, self.reml, self.p)
            self._last_derivatives = (key, (g, h))
        return np.array([g]), np.array([[h]])

    # -- estimates at a theta -----------------------------------------------------
    def _beta(self, dec):
        """The profiled fixed effects: ``Lx' beta = l`` from the last row of ``Lxy``."""
        return np.linalg.solve(dec.Lx.T, dec.Lxy[-1, :-1]) if self.p else np.zeros(0)

    def estimates(self, theta):
        """beta, sigma^2, covariance of beta and the conditional modes at ``theta``."""
        if self._scalar:
            fact = self._scalar_factorise(np.asarray(theta, dtype=float))
            beta, lx_inv, u_all = scalar_lmm.solution(fact, float(theta[0]), self.p)
            logdet_z, pwrss, logdet_x = scalar_lmm.parts(fact)
            u = [u_all]
            deviance = self.deviance(logdet_z, pwrss, logdet_x)
        elif self._dense_gradient is not None:
            beta, lx_inv, u_all, (logdet_z, pwrss, logdet_x) = self._dense_gradient.solution(theta)
            widths = np.cumsum([f.n_levels * f.q for f in self.factors])[:-1]
            u = np.split(u_all, widths)
            deviance = self.deviance(logdet_z, pwrss, logdet_x)
        else:
            best = self.__dict__.get("_best_solution")
            if best is not None and best[0] is self.cp and np.array_equal(best[1], theta):
                beta, pwrss, deviance, lx_inv, u = best[3]
            else:
                beta, pwrss, deviance, lx_inv, u = self._solution(self.decompose(theta))
        dof = self.n - self.p if self.reml else self.n
        sigma2 = pwrss / dof
        cov_beta = sigma2 * (lx_inv.T @ lx_inv)
        pieces = split_theta(self.factors, np.asarray(theta, dtype=float))
        modes = {}
        for f, th, uf in zip(self.factors, pieces, u):
            T = f.cholesky_factor(th)
            modes[f.name] = uf.reshape(f.n_levels, f.q) @ T.T
        return {
            "beta": beta,
            "sigma2": sigma2,
            "cov_beta": cov_beta,
            "random_effects": modes,
            "deviance": deviance,
        }

    def _spherical_modes(self, dec, beta):
        """Conditional modes ``u`` of the spherical random effects, one array per factor.

        Solves ``L L' u = c - B' beta`` where ``c`` is ``Lambda' Z'W y`` forward-solved,
        which the decomposition already holds as the last column of ``B``.
        """
        cp = self.cp
        m1, q1 = cp.first.n_levels, cp.first.q
        c1 = dec.B1[:, -1] - dec.B1[:, :-1] @ beta  # (m1 q1,)
        u_first = None
        u_rest = np.empty(0)
        if dec.second is not None:
            c2 = dec.B2[:, -1] - dec.B2[:, :-1] @ beta
            u_rest = dec.solve_l22_t(c2)
            c1 = c1 - dec.second.l21t_times(dec.pieces2, dec.K1, u_rest)
        u_first = batched_solve_upper_t(dec.L11, c1.reshape(m1, q1, 1)).ravel()
        by_position = {cp.order[0]: u_first}
        start = 0
        for k, f in zip(cp.order[1:], cp.rest):
            size = f.n_levels * f.q
            by_position[k] = u_rest[start : start + size]
            start += size
        return [by_position[k] for k in range(len(self.factors))]
