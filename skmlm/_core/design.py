"""Random-effect design: grouping factors as integer codes and their covariance factors.

One :class:`RandomFactor` is one grouping factor with its random-effect terms (an
intercept and/or slopes). Its covariance, relative to the residual variance, is
``T T'`` with ``T`` lower triangular (``covariance="unstructured"``, lme4's ``(x | g)``)
or diagonal (``"diagonal"``, lme4's ``(x || g)``). ``theta`` holds the free entries of
``T``, column by column, as lme4 orders them.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.sparse as sp


@lru_cache(maxsize=None)
def _lower_triangle(q):
    """Row and column indices of a ``q x q`` lower triangle, column by column (lme4's
    order of theta); read-only, shared by every factor with ``q`` terms."""
    cols, rows = np.triu_indices(q)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


class CovarianceTerms:
    """The covariance parameterisation of one grouping factor's random-effect terms.

    What a factor's ``theta`` means, whatever holds its data: the rows
    (:class:`RandomFactor`) or their cross-products
    (:class:`~.statistics.FactorStatistics`). A subclass sets ``name``, ``levels``,
    ``terms`` and ``diagonal``, then calls :meth:`_set_layout` with its number of terms.
    """

    def _set_layout(self, q):
        # plain attributes, not properties: a small fit reads them a hundred times
        self.q = q
        self.n_levels = len(self.levels)
        if self.diagonal:
            self._tri = (np.arange(q), np.arange(q))
        else:
            # lme4 orders the lower triangle column by column
            self._tri = _lower_triangle(q)

    @property
    def n_theta(self):
        return len(self._tri[0])

    def theta_lower_bounds(self):
        """0 for diagonal entries of ``T`` (a variance), -inf for the rest."""
        rows, cols = self._tri
        return np.where(rows == cols, 0.0, -np.inf)

    def theta_start(self):
        """lme4's start: ``T`` the identity."""
        rows, cols = self._tri
        return (rows == cols).astype(float)

    def theta_scale_from(self, mean_square):
        """A typical size of each theta entry: 1 / RMS of its row's covariate.

        Row i of ``T`` maps the spherical effects onto term i, whose covariate has its
        own units: a slope on a predictor measured in large numbers has a small theta.
        Dividing by this scale gives the optimiser entries of similar size.
        ``mean_square``: each covariate's mean square over the rows.
        """
        rms = np.sqrt(mean_square)
        rows, _ = self._tri
        return 1.0 / np.where(rms > 0, rms, 1.0)[rows]

    def cholesky_factor(self, theta):
        """``T`` (q x q, lower triangular) from this factor's part of ``theta``."""
        T = np.zeros((self.q, self.q))
        T[self._tri] = theta
        return T

    def canonical_theta(self, theta):
        """The same covariance ``T T'`` with every diagonal entry of ``T`` made >= 0.

        Flipping the sign of a column of ``T`` leaves ``T T'``, and so the model,
        unchanged: the optimiser may search without bounds and be mapped back here.
        """
        if self.q == 1:  # T is theta itself
            return np.abs(theta)
        T = self.cholesky_factor(theta)
        return self.theta_from_cholesky(T * np.where(np.diag(T) < 0, -1.0, 1.0)[None, :])

    def theta_from_cholesky(self, T):
        return T[self._tri].copy()


@dataclass
class RandomFactor(CovarianceTerms):
    """A grouping factor and the covariates of its random effects, row by row.

    Attributes
    ----------
    name : str
        The factor's name, as the user knows it.
    codes : ndarray of int, shape (n,)
        Level index of each row, in ``0 .. n_levels - 1``.
    levels : ndarray, shape (n_levels,)
        The original level labels, in code order.
    z : ndarray of shape (n, q)
        Random-effect covariates per row (a column of ones for the intercept).
    terms : list of str
        Names of the ``q`` terms, intercept first (``"(Intercept)"``).
    diagonal : bool
        Whether the terms are uncorrelated (``T`` diagonal).
    q, n_levels : int
        The number of terms and of levels (set from ``z`` and ``levels``).
    """

    name: str
    codes: np.ndarray
    levels: np.ndarray
    z: np.ndarray
    terms: list
    diagonal: bool = False
    _tri: tuple = field(init=False, repr=False)
    q: int = field(init=False, repr=False)  # number of terms (columns of z)
    n_levels: int = field(init=False, repr=False)

    def __post_init__(self):
        self._set_layout(self.z.shape[1])

    def z_mean_square(self):
        """``sum z z' / n`` over the rows."""
        return (self.z.T @ self.z) / len(self.z)

    def theta_scale(self):
        """:meth:`theta_scale_from` the covariates' mean squares over the rows."""
        return self.theta_scale_from(np.einsum("ij,ij->j", self.z, self.z) / len(self.z))

    def design_matrix(self):
        """Sparse ``Z`` of shape (n, n_levels * q), columns level-major."""
        n, q = self.z.shape
        cols = (self.codes[:, None] * q + np.arange(q)).ravel()
        return sp.csr_matrix((self.z.ravel(), cols, np.arange(0, n * q + 1, q)), shape=(n, self.n_levels * q))


def split_theta(factors, theta):
    """Cut the stacked ``theta`` into one piece per factor."""
    pieces, start = [], 0
    for f in factors:
        pieces.append(theta[start : start + f.n_theta])
        start += f.n_theta
    return pieces


def lower_bounds(factors):
    if len(factors) == 1:  # (a copy by concatenation costs more than the bounds)
        return factors[0].theta_lower_bounds()
    return np.concatenate([f.theta_lower_bounds() for f in factors])


def canonical_theta(factors, theta):
    """:meth:`RandomFactor.canonical_theta` for each factor's part of ``theta``."""
    return np.concatenate([f.canonical_theta(t) for f, t in zip(factors, split_theta(factors, theta))])


def theta_scales(factors):
    return np.concatenate([f.theta_scale() for f in factors])


def start_theta(factors):
    if len(factors) == 1:
        return factors[0].theta_start()
    return np.concatenate([f.theta_start() for f in factors])


def lambda_pattern(factors):
    """Where each theta entry sits in the block-diagonal ``Lambda`` of several factors.

    Returns ``(rows, cols, src, size)``: entry ``k`` of the pattern is
    ``Lambda[rows[k], cols[k]] = theta[src[k]]``; ``size`` is Lambda's order.
    """
    if all(f.q == 1 for f in factors):  # Lambda is diagonal: theta k on factor k's levels
        levels = [f.n_levels for f in factors]
        diagonal = np.arange(sum(levels))
        return diagonal, diagonal, np.repeat(np.arange(len(factors)), levels), len(diagonal)
    rows, cols, src, offset, theta_offset = [], [], [], 0, 0
    for f in factors:
        tr, tc = f._tri
        lv = np.arange(f.n_levels)[:, None] * f.q
        rows.append((lv + offset + tr[None, :]).ravel())
        cols.append((lv + offset + tc[None, :]).ravel())
        src.append(np.tile(np.arange(f.n_theta) + theta_offset, f.n_levels))
        offset += f.n_levels * f.q
        theta_offset += f.n_theta
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(src), offset


def block_lambda_template(factors):
    """Sparse block-diagonal ``Lambda`` for several factors, refillable from ``theta``.

    Returns ``(matrix, fill)`` where ``fill(theta_pieces)`` writes the entries of each
    factor's ``T`` (repeated over its levels) into ``matrix.data`` in place and returns
    the matrix. The sparsity pattern is built once; each call only copies numbers.
    """
    rows, cols, src, offset = lambda_pattern(factors)
    marker = sp.csr_matrix((np.arange(1, len(rows) + 1, dtype=float), (rows, cols)), shape=(offset, offset))
    marker.sort_indices()
    order = src[marker.data.astype(np.int64) - 1]
    lam = marker.copy()

    def fill(theta_pieces):
        lam.data[:] = np.concatenate(theta_pieces)[order]
        return lam

    return lam, fill
