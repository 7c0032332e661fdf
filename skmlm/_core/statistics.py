"""The statistics of a linear mixed model: what a fit needs of the rows, and nothing more.

The profiled (RE)ML deviance, its start, its centring and every inference of
:mod:`.lmm` need only the weighted cross-products of ``[Z X y]`` (Bates et al. 2015,
section 3). :class:`LinearMixedStatistics` holds them in the blocked form the
factorisation reads:

* globally: ``[X y]'W[X y]``, the number of rows, the sum of the weights and of their
  logarithms, and the unweighted sums and cross-products of ``[X y]`` (what the
  variance of the fixed part over the rows needs);
* per grouping factor and level (:class:`FactorStatistics`): the level's label and
  number of rows, ``sum w z z'`` and ``sum w z [x y]'``; per factor, the weighted sums
  of ``z`` (the centring of slopes) and the unweighted ``sum z z'`` (the scale of theta);
* per pair of factors: the sparse ``Z_i'W Z_j`` (which levels meet, and how much).

They add: ``a + b`` are the statistics of the rows of both, levels matched by label
(the union of the levels, sorted where the labels sort). So they can be formed chunk by
chunk, or partition by partition on a cluster, and reduced.
"""

import numpy as np
import scipy.sparse as sp

from .design import CovarianceTerms

#: Up to this many columns of ``Z'W[X y]``, each is one ``bincount`` over the rows.
MAX_BINCOUNT_COLUMNS = 16

INT32_MAX = np.iinfo(np.int32).max

#: The statistics are formed from chunks of rows whose ``[X y]`` takes about this many
#: bytes: the temporaries of a pass stay a small fraction of the data.
CHUNK_BYTES = 1 << 25


def design_rows(factor, rows):
    """Sparse ``Z`` of the rows ``rows`` (a slice) of a factor, columns level-major."""
    z = factor.z[rows]
    n, q = z.shape
    cols = (factor.codes[rows, None] * q + np.arange(q)).ravel()
    return sp.csr_matrix((z.ravel(), cols, np.arange(0, n * q + 1, q)), shape=(n, factor.n_levels * q))


class FactorStatistics(CovarianceTerms):
    """One grouping factor's statistics, level by level.

    Parameters
    ----------
    name : str
    levels : ndarray (m,)
        The level labels, in the order of the arrays below.
    terms : list of str
        The random-effect terms (``q`` of them).
    diagonal : bool
        Uncorrelated terms (``T`` diagonal).
    intercept : bool
        Whether the first term's covariate is 1 on every row.
    counts : ndarray of int (m,)
        Rows per level.
    a_zz : ndarray (m, q, q)
        ``sum w z z'`` over each level's rows.
    a_zx : ndarray (m, q, p + 1)
        ``sum w z [x y]'`` over each level's rows.
    z_weighted_sum : ndarray (q,)
        ``sum w z`` over all rows.
    z_square : ndarray (q, q)
        ``sum z z'`` over all rows (unweighted).
    """

    def __init__(self, name, levels, terms, diagonal, intercept, counts, a_zz, a_zx, z_weighted_sum, z_square):
        self.name = name
        self.levels = np.asarray(levels)
        self.terms = list(terms)
        self.diagonal = bool(diagonal)
        self.intercept = bool(intercept)
        self.counts = counts
        self.a_zz = a_zz
        self.a_zx = a_zx
        self.z_weighted_sum = z_weighted_sum
        self.z_square = z_square
        self._set_layout(len(self.terms))

    @classmethod
    def from_rows(cls, factor, rows, xy, wxy, weights, ones):
        """From the rows ``rows`` (a slice) of a :class:`~.design.RandomFactor`, with
        ``[X y]``, ``W [X y]``, the prior weights of those rows (None: all 1) and a vector
        of ones as long as the rows."""
        m, q, k = factor.n_levels, factor.q, xy.shape[1]
        codes, z = factor.codes[rows], factor.z[rows]
        intercept = not np.count_nonzero(z[:, 0] != 1.0)  # np.all's wrapper costs more than the count
        counts = np.bincount(codes, minlength=m)
        # a covariate of ones (the intercept) and unit weights are left out of the products
        # (a factor of 1.0 changes no bit): fewer passes, the same sums
        zw = [None if i == 0 and intercept else z[:, i] for i in range(q)]
        a_zz = np.empty((m, q, q))
        for i in range(q):
            for j in range(i + 1):
                wzz = _product(weights, zw[i], zw[j])
                a_zz[:, i, j] = a_zz[:, j, i] = counts if wzz is None else np.bincount(codes, weights=wzz, minlength=m)
        if q * k <= MAX_BINCOUNT_COLUMNS:  # a few passes over the rows beat building Z
            a_zx = np.empty((m, q, k))
            for i in range(q):
                wz = _product(weights, zw[i])
                for j in range(k):
                    a_zx[:, i, j] = np.bincount(codes, weights=_product(wz, xy[:, j]), minlength=m)
        else:
            a_zx = np.asarray(design_rows(factor, rows).T @ wxy).reshape(m, q, k)
        if intercept and q == 1:  # sums of ones: the number of rows (and the weights' sum)
            z_square = np.array([[float(len(z))]])
            z_weighted_sum = np.array([float(len(z))]) if weights is None else weights @ z
        else:
            z_square, z_weighted_sum = z.T @ z, (ones if weights is None else weights) @ z
        return cls(
            factor.name, factor.levels, factor.terms, factor.diagonal, intercept,
            counts, a_zz, a_zx, z_weighted_sum, z_square,
        )

    def add_same_levels(self, other):
        """In place: the sums of ``other``, a chunk's statistics of the same factor with the
        same levels in the same order (no matching of labels)."""
        self.intercept = self.intercept and other.intercept
        for name in ("counts", "a_zz", "a_zx", "z_weighted_sum", "z_square"):
            getattr(self, name).__iadd__(getattr(other, name))

    def theta_scale(self, n):
        """:meth:`~.design.CovarianceTerms.theta_scale_from` the covariates' mean squares."""
        return self.theta_scale_from(np.diagonal(self.z_square) / n)

    def z_mean_square(self):
        """``sum z z' / n`` over the rows."""
        return self.z_square / self.counts.sum()

    def _replace(self, **changes):
        fields = dict(
            name=self.name, levels=self.levels, terms=self.terms, diagonal=self.diagonal, intercept=self.intercept,
            counts=self.counts, a_zz=self.a_zz, a_zx=self.a_zx, z_weighted_sum=self.z_weighted_sum,
            z_square=self.z_square,
        )
        fields.update(changes)
        return FactorStatistics(**fields)

    def transformed(self, A):
        """The statistics of the covariates ``z A'`` (a change of coordinates of the terms)."""
        return self._replace(
            a_zz=A @ self.a_zz @ A.T, a_zx=A @ self.a_zx, z_weighted_sum=A @ self.z_weighted_sum,
            z_square=A @ self.z_square @ A.T,
        )

    def __repr__(self):
        return f"FactorStatistics({self.name!r}: {self.n_levels} levels, terms {self.terms})"


class LinearMixedStatistics:
    """The mergeable statistics of a linear mixed model (see the module docstring).

    Build them with :meth:`from_rows` (the estimator's ``statistics_`` are these);
    add two with ``+``. Attributes are read-only by convention.

    Attributes
    ----------
    factors : list of FactorStatistics
    columns : list of str
        The fixed-effects columns of ``X`` (the response comes after them).
    n : int
        Rows.
    sum_weights, sum_log_weights : float
    xy_cross : ndarray (p + 1, p + 1)
        ``[X y]'W[X y]`` (y divided by ``y_scale``).
    xy_sum, xy_square : ndarray
        Unweighted column sums and cross-products of ``[X y]``.
    cross : dict of (i, j) to sparse matrix
        ``Z_i'W Z_j`` for factors ``i < j`` (shape ``(m_i q_i, m_j q_j)``, level-major),
        CSR. Blocks formed from rows are held as :class:`CrossEntries` and made sparse on
        first use of ``cross`` (:meth:`cross_entries` reads them as they are).
    y_scale : float
        The power of two y was divided by before its squares were formed (1 for y of
        ordinary magnitude: see :func:`.search.response_scale`).
    """

    def __init__(self, factors, columns, n, sum_weights, sum_log_weights, xy_cross, xy_sum, xy_square, cross,
                 y_scale=1.0):
        self.factors = list(factors)
        self.columns = list(columns)
        self.n = int(n)
        self.sum_weights = float(sum_weights)
        self.sum_log_weights = float(sum_log_weights)
        self.xy_cross = xy_cross
        self.xy_sum = xy_sum
        self.xy_square = xy_square
        self._blocks = dict(cross)  # sparse matrices or CrossEntries
        self.y_scale = float(y_scale)

    @property
    def p(self):
        return self.xy_cross.shape[0] - 1

    @property
    def cross(self):
        """``Z_i'W Z_j`` for ``i < j``, CSR (blocks held as entries are made sparse here, once)."""
        blocks = self._blocks
        for key, block in blocks.items():
            if isinstance(block, CrossEntries):
                blocks[key] = block.csr()
        return blocks

    def cross_entries(self):
        """``(i, j)`` to the :class:`CrossEntries` of ``Z_i'W Z_j`` (``i < j``)."""
        return {key: block if isinstance(block, CrossEntries) else CrossEntries.of_csr(block)
                for key, block in self._blocks.items()}

    @classmethod
    def from_rows(cls, factors, X, y, weights, columns=None, y_scale=1.0):
        """The statistics of rows: ``factors`` (:class:`~.design.RandomFactor`), the
        fixed-effects design ``X``, the response ``y`` (already divided by ``y_scale``)
        and the prior weights (None: all 1, which saves the products by them).

        The rows are taken in chunks of about ``CHUNK_BYTES`` of ``[X y]`` (sums over the
        chunks: the same statistics up to the order of additions), so that the copies a
        chunk needs (``[X y]``, its weighted copy, products of the covariates) stay small
        whatever the number of rows."""
        n, p = X.shape
        k = p + 1
        step = max(CHUNK_BYTES // (8 * k), 1)
        sums = stats = None
        for start in range(0, max(n, 1), step):  # a few chunks, not a loop over rows or levels
            rows = slice(start, min(start + step, n))
            xy = np.empty((rows.stop - rows.start, k))
            xy[:, :p], xy[:, p] = X[rows], y[rows]
            w = None if weights is None else weights[rows]
            wxy = xy if w is None else xy * w[:, None]
            ones = np.empty(len(xy))
            ones.fill(1.0)  # np.ones is a Python wrapper around these two, at twice their cost
            # [X y]'W[X y], the column sums (a BLAS product: numpy's reduction down the rows is
            # far dearer) and the unweighted cross-products (the first where w is 1: one array)
            part = [xy.T @ wxy, ones @ xy]
            part.append(part[0] if w is None else xy.T @ xy)
            sums = part if sums is None else [a + b for a, b in zip(sums, part)]
            chunk = [FactorStatistics.from_rows(f, rows, xy, wxy, w, ones) for f in factors]
            del xy, wxy
            if stats is None:
                stats = chunk
            else:
                for total, part in zip(stats, chunk):
                    total.add_same_levels(part)
        xy_cross, xy_sum, xy_square = sums
        cross = {(i, j): _cross_of_rows(factors[i], factors[j], weights, stats[i].intercept, stats[j].intercept)
                 for j in range(1, len(factors)) for i in range(j)}  # codes only: no chunks needed
        if weights is None:
            sum_weights, sum_log_weights = float(n), 0.0
        else:
            sum_weights, sum_log_weights = float(weights.sum()), float(np.log(weights).sum())
        columns = [f"x{k}" for k in range(p)] if columns is None else list(columns)
        return cls(
            stats, columns, n, sum_weights, sum_log_weights, xy_cross, xy_sum, xy_square, cross, y_scale,
        )

    # -- reading the blocks ----------------------------------------------------------------
    def cross_block(self, i, j):
        """``Z_i'W Z_j`` (sparse) for two different factors (a transpose is formed once)."""
        if i < j:
            return self.cross[(i, j)]
        transposed = self.__dict__.setdefault("_transposed", {})
        if (j, i) not in transposed:
            transposed[(j, i)] = self.cross[(j, i)].T.tocsr()
        return transposed[(j, i)]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_transposed", None)  # derived: a pickle holds each cross block once
        return state

    def random_cross_dense(self, order):
        """``Z'WZ`` of the factors in ``order``, dense (level-major within each factor)."""
        sizes = [self.factors[k].n_levels * self.factors[k].q for k in order]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        out = np.zeros((offsets[-1], offsets[-1]))
        entries = self.cross_entries() if len(order) > 1 else None
        for a, k in enumerate(order):
            f = self.factors[k]
            m, q = f.n_levels, f.q
            idx = offsets[a] + np.arange(m)[:, None, None] * q
            out[idx + np.arange(q)[None, :, None], idx + np.arange(q)[None, None, :]] = f.a_zz
            for b in range(a):
                l = order[b]  # the stored block's entries, transposed if need be: no sparse transpose
                e = entries[(min(k, l), max(k, l))]
                rows, cols = (e.rows, e.cols) if k < l else (e.cols, e.rows)
                rows, cols = rows + offsets[a], cols + offsets[b]
                out[rows, cols] = e.data
                out[cols, rows] = e.data
        return out

    def random_cross_sparse(self, order):
        """``Z'WZ`` of the factors in ``order``, sparse (CSR, level-major within each
        factor): a factor's own block is block diagonal, so a large one costs its
        nonzeros only, not the square of its levels."""
        if not order:
            return sp.csr_matrix((0, 0))
        rows = []
        for a, k in enumerate(order):
            row = []
            for b, l in enumerate(order):
                if a == b:
                    f = self.factors[k]
                    m = f.n_levels
                    row.append(sp.bsr_matrix((f.a_zz, np.arange(m), np.arange(m + 1)), shape=(m * f.q, m * f.q)))
                else:
                    row.append(self.cross_block(k, l))
            rows.append(row)
        return sp.bmat(rows, format="csr")

    def random_x_cross(self, order):
        """``Z'W[X y]`` of the factors in ``order``, stacked: (sum m q, p + 1)."""
        k = self.p + 1
        if not order:
            return np.zeros((0, k))
        return np.concatenate([self.factors[f].a_zx.reshape(-1, k) for f in order])

    # -- derived statistics -------------------------------------------------------------------
    def _replace(self, **changes):
        fields = dict(
            factors=self.factors, columns=self.columns, n=self.n, sum_weights=self.sum_weights,
            sum_log_weights=self.sum_log_weights, xy_cross=self.xy_cross, xy_sum=self.xy_sum,
            xy_square=self.xy_square, cross=self._blocks, y_scale=self.y_scale,
        )
        fields.update(changes)
        return LinearMixedStatistics(**fields)

    def select_factors(self, keep):
        """The statistics of the model with only the factors ``keep`` (positions)."""
        keep = list(keep)
        cross = {(a, b): self.cross_block(keep[a], keep[b]) for b in range(len(keep)) for a in range(b)}
        return self._replace(factors=[self.factors[k] for k in keep], cross=cross)

    def select_columns(self, keep):
        """The statistics of the model with only the fixed-effects columns ``keep``."""
        idx = np.append(np.asarray(list(keep), dtype=np.intp), self.p)
        return self._replace(
            columns=[self.columns[j] for j in keep], xy_cross=self.xy_cross[np.ix_(idx, idx)],
            xy_sum=self.xy_sum[idx], xy_square=self.xy_square[np.ix_(idx, idx)],
            factors=[f._replace(a_zx=f.a_zx[:, :, idx]) for f in self.factors],
        )

    def transformed(self, maps):
        """The statistics with each factor's covariates ``z A'`` (``maps``: one ``A`` or None
        per factor): the centred coordinates of :mod:`.centring`."""
        if all(A is None for A in maps):
            return self
        factors = [f if A is None else f.transformed(A) for f, A in zip(self.factors, maps)]
        kron = {}  # a factor's map on all its levels, formed only where a cross block needs it

        def lifted(k):
            if k not in kron:
                kron[k] = sp.kron(sp.identity(self.factors[k].n_levels), maps[k], format="csr")
            return kron[k]

        cross = {}
        for (i, j), block in self.cross.items():
            if maps[i] is not None:
                block = lifted(i) @ block
            if maps[j] is not None:
                block = block @ lifted(j).T
            cross[(i, j)] = sp.csr_matrix(block)
        return self._replace(factors=factors, cross=cross)

    def with_y_scale(self, y_scale):
        """The same statistics with y divided by ``y_scale`` instead of ``self.y_scale``."""
        if y_scale == self.y_scale:
            return self
        r = self.y_scale / y_scale  # a power of two: exact
        p = self.p
        col = np.ones(p + 1)
        col[p] = r
        outer = np.outer(col, col)
        return self._replace(
            xy_cross=self.xy_cross * outer, xy_sum=self.xy_sum * col, xy_square=self.xy_square * outer,
            factors=[f._replace(a_zx=f.a_zx * col) for f in self.factors], y_scale=y_scale,
        )

    # -- adding -------------------------------------------------------------------------------
    def _check_compatible(self, other):
        if not isinstance(other, LinearMixedStatistics):
            raise TypeError(f"can only add LinearMixedStatistics; got {type(other).__name__}")
        mine = [(f.name, f.terms, f.diagonal) for f in self.factors]
        theirs = [(f.name, f.terms, f.diagonal) for f in other.factors]
        if mine != theirs or self.columns != other.columns:
            raise ValueError(
                "these statistics are of different models (grouping factors, random terms or fixed-effects columns "
                f"differ): {mine} with columns {self.columns} against {theirs} with columns {other.columns}; "
                "form every chunk's statistics with the same estimator settings and columns"
            )

    def __add__(self, other):
        """The statistics of the rows of both (levels matched by label)."""
        if isinstance(other, int) and other == 0:  # sum() starts from 0
            return self
        return sum_statistics([self, other])

    __radd__ = __add__

    def __repr__(self):
        parts = ", ".join(f"{f.name!r}: {f.n_levels} levels x {f.q} terms" for f in self.factors)
        return f"LinearMixedStatistics({self.n} rows, {self.p} fixed-effects columns; {parts})"


def _product(*columns):
    """The elementwise product of ``columns``, None among them standing for a column of
    ones (left out: a factor of 1.0 changes no bit); None where all are."""
    out = None
    for c in columns:
        if c is not None:
            out = c if out is None else out * c
    return out


def major_index(indptr):
    """The row (CSR) or column (CSC) of each stored entry of a compressed sparse matrix,
    from its ``indptr``."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _cross_of_rows(fi, fj, weights, ones_i=False, ones_j=False):
    """``Z_i'W Z_j`` of rows (:class:`CrossEntries`) from the two factors' codes: one entry
    per row and pair of terms, those of a pair of levels summed (neither ``Z`` formed).
    ``weights`` None: all 1; ``ones_i``/``ones_j``: the factor's first covariate is 1 on
    every row (an intercept), left out of the products."""
    qi, qj = fi.q, fj.q
    shape = (fi.n_levels * qi, fj.n_levels * qj)
    if qi == 1 and qj == 1:
        key = fi.codes.astype(np.int64)  # row * columns + column: one integer per entry
        key *= shape[1]
        key += fj.codes
        data = _product(weights, None if ones_i else fi.z[:, 0], None if ones_j else fj.z[:, 0])
    else:
        n = len(fi.codes)
        rows = fi.codes.astype(np.int64)[:, None, None] * qi + np.arange(qi)[None, :, None]
        cols = fj.codes.astype(np.int64)[:, None, None] * qj + np.arange(qj)[None, None, :]
        key = (rows * shape[1] + cols).ravel()
        w = np.ones(n) if weights is None else weights
        data = (w[:, None, None] * fi.z[:, :, None] * fj.z[:, None, :]).ravel()
    return CrossEntries.from_keys(key, data, shape)


class CrossEntries:
    """A cross block ``Z_i'W Z_j`` held as its nonzero entries in CSR order (by row, then
    by column; each pair of levels once): the dense route and the start read the entries
    as they are, and :meth:`csr` makes the sparse matrix where one is needed (a sparse
    matrix's construction costs far more than the entries at a small design's size).

    Attributes
    ----------
    rows, cols : ndarray of int
    data : ndarray
    shape : tuple
    """

    __slots__ = ("rows", "cols", "data", "shape")

    def __init__(self, rows, cols, data, shape):
        self.rows, self.cols, self.data, self.shape = rows, cols, data, tuple(shape)

    @classmethod
    def from_keys(cls, key, data, shape):
        """The entries of a block from one integer ``row * shape[1] + column`` per term of
        the sum (``key``: a temporary, sorted in place) and its value (``data``; None: all
        1). A pair's terms are summed in the order of ``key`` (a stable sort): the same
        sums whatever the pairs' order."""
        n = len(key)
        if data is None:  # every term 1: a pair's sum is its count
            key.sort()
        else:
            order = np.argsort(key, kind="stable")
            key, data = key[order], data[order]
            del order
        first = np.empty(n, dtype=bool)
        first[:1] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        starts = first.nonzero()[0]
        del first
        if data is None:
            values = np.empty(len(starts))
            np.subtract(starts[1:], starts[:-1], out=values[:-1])
            values[-1:] = n - starts[-1:]
        else:
            values = np.add.reduceat(data, starts) if n else np.zeros(0)
        unique = key[starts]
        del starts
        rows, cols = np.divmod(unique, shape[1])
        del unique
        index = np.int32 if max(shape) <= INT32_MAX else np.int64
        return cls(rows.astype(index), cols.astype(index), values, shape)

    def csr(self):
        """The block as a CSR matrix."""
        indptr = np.searchsorted(self.rows, np.arange(self.shape[0] + 1))
        return sp.csr_matrix((self.data, self.cols, indptr), shape=self.shape)

    @classmethod
    def of_csr(cls, block):
        """The entries of a sparse block (made CSR, its duplicates summed)."""
        block = sp.csr_matrix(block)
        block.sum_duplicates()
        return cls(major_index(block.indptr), block.indices, block.data, block.shape)


def sum_statistics(items):
    """The statistics of the rows of all ``items`` (levels matched by label), in one pass.

    Adding many at once (a Dask tree reduction adds several partitions per task) scatters
    each item once into the union of the levels, where adding them in pairs would copy
    the growing total at every step: for two large crossed factors the cross block is
    the bulk of the statistics (one entry per pair of levels that meet). The entries of a
    cross block are summed where they coincide: the sum is exact up to the order of the
    floating-point additions.
    """
    items = list(items)
    if not items:
        raise ValueError("no statistics to add")
    first = items[0]
    for other in items[1:]:
        first._check_compatible(other)
    if len(items) == 1:
        return first
    scale = max(s.y_scale for s in items)
    items = [s.with_y_scale(scale) for s in items]
    factors, positions = [], []
    for k, f0 in enumerate(items[0].factors):
        fs = [s.factors[k] for s in items]
        levels, at = union_levels(*[f.levels for f in fs])
        positions.append(at)
        m = len(levels)
        factors.append(f0._replace(
            levels=levels, counts=_scatter_sum(m, at, [f.counts for f in fs]),
            a_zz=_scatter_sum(m, at, [f.a_zz for f in fs]), a_zx=_scatter_sum(m, at, [f.a_zx for f in fs]),
            intercept=all(f.intercept for f in fs), z_weighted_sum=sum(f.z_weighted_sum for f in fs),
            z_square=sum(f.z_square for f in fs),
        ))
    cross = {}
    for i, j in items[0].cross:
        qi, qj = factors[i].q, factors[j].q
        shape = (factors[i].n_levels * qi, factors[j].n_levels * qj)
        cross[(i, j)] = _sum_relabelled([s.cross[(i, j)] for s in items], positions[i], qi, positions[j], qj, shape)
    return items[0]._replace(
        factors=factors, n=sum(s.n for s in items), sum_weights=sum(s.sum_weights for s in items),
        sum_log_weights=sum(s.sum_log_weights for s in items), xy_cross=sum(s.xy_cross for s in items),
        xy_sum=sum(s.xy_sum for s in items), xy_square=sum(s.xy_square for s in items), cross=cross,
    )


def union_levels(*labels):
    """``(levels, positions)``: the union of sets of labels (sorted where they sort, else in
    order of first appearance) and, for each set, the position of its labels in the union
    (None where the set is the union itself, in its order: nothing to move)."""
    first = labels[0]
    if all(len(a) == len(first) and np.array_equal(a, first) for a in labels[1:]):
        return first, [None] * len(labels)
    both = np.concatenate(labels)
    try:
        levels = np.unique(both)
        at = [np.searchsorted(levels, a) for a in labels]
    except TypeError:  # labels of several types that do not sort among themselves
        index = {}
        for label in both.tolist():
            index.setdefault(label, len(index))
        levels = np.empty(len(index), dtype=object)
        levels[:] = list(index)
        at = [np.array([index[v] for v in a.tolist()], dtype=np.intp) for a in labels]
    return levels, [None if len(a) == len(levels) and np.array_equal(a, np.arange(len(levels))) else a for a in at]


def _scatter_sum(m, at, arrays):
    """An array of ``m`` rows with each of ``arrays`` added at its rows ``at`` (None: in place)."""
    out = np.zeros((m,) + arrays[0].shape[1:], dtype=np.result_type(*arrays))
    for rows, a in zip(at, arrays):
        if rows is None:
            out += a
        else:
            out[rows] += a  # a set's labels are distinct: no index repeats
    return out


def _sum_relabelled(blocks, rows_at, qi, cols_at, qj, shape):
    """The sum of sparse level-major blocks, each with its levels moved to their positions
    in the union (``rows_at``/``cols_at``: one index array or None per block), as CSR.

    Blocks already in the union's levels are added as they are (CSR additions merge
    sorted rows, no sort); the others are relabelled and summed in one COO conversion.
    """
    same = [sp.csr_matrix(b) for b, r, c in zip(blocks, rows_at, cols_at) if r is None and c is None]
    moved = [(b, r, c) for b, r, c in zip(blocks, rows_at, cols_at) if not (r is None and c is None)]
    total = None
    for b in same:
        total = b if total is None else total + b
    if moved:
        index = np.int64 if max(shape) >= np.iinfo(np.int32).max else np.int32
        rows, cols, data = [], [], []
        for b, r, c in moved:
            coo = b.tocoo()
            rows.append(_move(coo.row, r, qi).astype(index, copy=False))
            cols.append(_move(coo.col, c, qj).astype(index, copy=False))
            data.append(coo.data)
            del coo
        coo = sp.coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
        del rows, cols, data
        part = coo.tocsr()  # duplicates summed
        del coo
        total = part if total is None else total + part
    total.sum_duplicates()
    return total


def _move(index, at, q):
    """Level-major positions ``index`` (``q`` terms per level) with level ``l`` moved to ``at[l]``."""
    if at is None:
        return index
    if q == 1:
        return at[index]
    return at[index // q] * q + index % q
