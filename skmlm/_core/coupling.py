"""The second block of random effects: every factor but the largest, held dense.

With the largest factor's block ``L11`` batched over its levels, the rest of the
Cholesky factor of ``Lambda' Z'W Z Lambda + I`` is

    L21 = Lambda2' A21 K1,          K1 = blockdiag_g(T1 L11_g^-T)
    L22 L22' = Lambda2' A22 Lambda2 + I - L21 L21'

``L21 L21' = Lambda2' (sum_g A21_g W_g A21_g') Lambda2`` with ``W_g = K1_g K1_g'``: the
inner sum is linear in the entries of the small matrices ``W_g``. Which pairs of rows
of ``A21`` meet in a column is fixed by the data, so the pairs are listed once
(:class:`PairExpansion`, as a fixed sparse matrix from the entries of all ``W_g`` to
those of the sum), and each evaluation is one sparse matrix-vector product instead of a
sparse matrix-matrix product whose bookkeeping costs more than its arithmetic.
"""

from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .blocks import congruence
from .design import block_lambda_template
from .packed import packed_diagonal, packed_positions, packed_rows_cols, packed_size
from .statistics import major_index

#: Row pairs listed for the pair expansion (memory: ~24 bytes each) whatever the order
#: of the second block; beyond it ``L21 L21'`` is formed by sparse products.
MAX_PAIRS = 30_000_000

#: More pairs are listed where they are at most this many per entry of the dense second
#: block (which the expansion fills, and which is held anyway): the sparse products'
#: result would then be as dense as that block, and held twice.
PAIRS_PER_ENTRY = 1

#: Largest order squared of the second block for which :class:`PairExpansion` gives
#: every entry of it a row (an index array of this length: 128 MB at most).
MAX_DIRECT_ENTRIES = 2**24

#: Coupled squares from sparse products kept for reuse (:meth:`CouplingBlock.coupled_square`):
#: a stencil of finite differences at x visits the largest factor's theta at x, x + h and
#: x - h, a forward-difference gradient at x + h at x and x + h.
SQUARES_KEPT = 3

#: Under reweighting (:meth:`CouplingBlock.reweight`, a GLMM's Newton steps) ``A21`` is
#: held dense up to this many entries, where at least ``MIN_DENSE_FILL`` of them can be
#: nonzero: the pair list's products would be re-formed at every step, where the dense
#: product ``(A21 K1)(A21 K1)'`` is one BLAS call.
MAX_DENSE_A21 = 4_000_000
MIN_DENSE_FILL = 0.1

#: From this many entries of the second block on (a dense block of 128 MB), a Schur
#: complement of scalar factors is held in packed storage (:mod:`.packed`): half the
#: memory, factorised as fast.
MIN_PACKED_ENTRIES = 2**24


class PairExpansion:
    """``sum_g A_g W_g A_g'`` from a list of the pairs of rows of ``A`` that meet in a level.

    Entry ``(i, j)`` of the sum is ``sum over pairs of coef * W_g[a, b]``, over the pairs
    of nonzeros ``A[i, (g, a)]``, ``A[j, (g, b)]`` in the columns of one level ``g``. The
    pairs with ``i <= j`` are listed once, grouped by entry, as the rows of a sparse
    matrix acting on the entries of all ``W_g``: an evaluation is one sparse
    matrix-vector product. The pairs give the lower triangle, entry ``(j, i)``; the upper
    one is its mirror image (each ``W_g`` is symmetric).

    Up to ``MAX_DIRECT_ENTRIES`` entries in the whole ``Q2 x Q2`` sum, the matrix has a
    row for every one of them (most empty), and is held by columns (one per entry of all
    ``W_g``): building it needs no sort of the pairs by entry, and an evaluation
    subtracts one whole array. Beyond, its rows are the entries that occur
    (``entries``), and an evaluation scatters into them.

    With ``packed``, ``entries`` are the positions of the lower-triangle entries in the
    rectangular full packed array of the sum (:mod:`.packed`), for
    :meth:`CouplingBlock.schur` to fill; :meth:`adjoint` reads a packed array then, and
    :meth:`__call__` and :meth:`lower_difference`, which read the full square, are not
    available.

    Parameters
    ----------
    a21 : sparse matrix, shape (Q2, m1 * q1)
        Columns level-major: column ``g * q1 + a`` is term ``a`` of level ``g``.
    q1 : int
    packed : bool
    keep_sources : bool
        Keep, for each listed pair, the positions in ``a21.data`` (a canonical CSR
        matrix) of its two entries, so that :meth:`reweight` can form the products anew
        for new values of ``a21`` on the same pattern.
    """

    def __init__(self, a21, q1, packed=False, keep_sources=False):
        csc = sp.csc_matrix(a21)
        csc.sum_duplicates()  # one nonzero a position, rows sorted: what the listings assume
        from_csr = None
        if keep_sources:  # the position in a21.data of each entry of csc.data
            tracer = sp.csc_matrix(sp.csr_matrix((np.arange(1.0, a21.nnz + 1), a21.indices, a21.indptr), a21.shape))
            tracer.sum_duplicates()
            from_csr = tracer.data.astype(np.intp) - 1
        self.sources = None
        self._q1 = q1
        self.size = size = csc.shape[0]
        self.packed = packed
        n_w = csc.shape[1] * q1
        rows = csc.indices
        if not packed and size * size <= MAX_DIRECT_ENTRIES:  # a row per entry, held by columns (one per entry of W)
            empty = np.zeros(0, np.int64)
            ia, ib, widx = (np.concatenate(a) for a in zip((empty, empty, empty), *_PairRuns(csc, q1).chunks()))
            lower = rows[ib].astype(np.int64) * size + rows[ia]
            coef = csc.data[ia] * csc.data[ib]
            sources = (from_csr[ia], from_csr[ib]) if keep_sources else None
            del ia, ib
            self.entries = None
            # a stable sort by W's index groups the pairs by column, and the columns' starts
            # are counts (no sort of the rows within a column)
            order = np.argsort(widx, kind="stable")
            if keep_sources:
                self.sources = (sources[0][order], sources[1][order])
            starts = np.zeros(n_w + 1, dtype=np.int64)
            np.cumsum(np.bincount(widx, minlength=n_w), out=starts[1:])
            self.matrix = sp.csc_matrix((coef[order], lower[order], starts), shape=(size * size, n_w))
            return
        # the pairs of each chunk of rows are grouped by entry as they are listed (all the
        # pairs of an entry share its larger row): the arrays of the result are allocated
        # once, and the temporaries are a chunk's, not the whole list's
        runs = _PairRuns(csc, q1)
        n_pairs = runs.total
        index = np.int32 if max(n_pairs, n_w) < np.iinfo(np.int32).max else np.int64
        coef, widx = np.empty(n_pairs), np.empty(n_pairs, index)
        if keep_sources:
            self.sources = (np.empty(n_pairs, np.intp), np.empty(n_pairs, np.intp))
        entries, starts = np.empty(n_pairs, np.int64), np.empty(n_pairs + 1, index)
        n_entries = done = 0
        for ia, ib, w in runs.chunks():
            key = packed_positions(rows[ib], rows[ia], size) if packed else rows[ib].astype(np.int64) * size + rows[ia]
            order = np.argsort(key, kind="stable")
            key = key[order]
            first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
            stop = done + len(order)
            coef[done:stop] = csc.data[ia[order]] * csc.data[ib[order]]
            if keep_sources:
                self.sources[0][done:stop] = from_csr[ia[order]]
                self.sources[1][done:stop] = from_csr[ib[order]]
            widx[done:stop] = w[order]
            entries[n_entries : n_entries + len(first)] = key[first]
            starts[n_entries : n_entries + len(first)] = first + done
            n_entries += len(first)
            done = stop
        starts[n_entries] = done
        self.entries = entries[:n_entries]
        # row e of this matrix holds entry e's pairs: one sparse product per evaluation
        # does the gather, the product and the segmented sum in a single pass
        self.matrix = sp.csr_matrix((coef, widx, starts[: n_entries + 1]), shape=(n_entries, n_w))

    def reweight(self, a21_data):
        """The pairs' products for new values ``a21_data`` of ``a21`` on its pattern (kept
        with ``keep_sources``), in place: :attr:`transposed` shares the array."""
        first, second = self.sources
        np.multiply(a21_data[first], a21_data[second], out=self.matrix.data)

    @cached_property
    def transposed(self):
        """The matrix transposed (sharing its arrays): :meth:`adjoint` reads it at every
        gradient, and scipy's transposition checks the indices each time it is made."""
        return self.matrix.T

    @cached_property
    def mirror(self):
        """The entries' positions in the upper triangle (the full sum of :meth:`__call__`)."""
        rows, cols = np.divmod(self.entries, self.size)
        return cols * self.size + rows

    @staticmethod
    def count(a21, q1):
        """How many pairs the expansion of ``a21`` would list (before halving)."""
        nnz = np.diff(sp.csc_matrix(a21).indptr).reshape(-1, q1)
        return int((nnz.sum(axis=1) ** 2).sum())

    def __call__(self, w):
        """``sum_g A_g W_g A_g'`` (dense, Q2 x Q2) for ``w`` of shape (m1, q1, q1)."""
        if self.entries is None:
            low = (self.matrix @ w.ravel()).reshape(self.size, self.size)
            out = low + low.T
            out.flat[:: self.size + 1] = np.diagonal(low)
            return out
        out = np.zeros(self.size * self.size)
        if self.entries.size:
            sums = self.matrix @ w.ravel()
            out[self.entries] = sums
            out[self.mirror] = sums
        return out.reshape(self.size, self.size)

    @cached_property
    def _packed_diagonal(self):
        """Where among the packed ``entries`` the diagonal ones are (read from a mask of
        the packed array: a byte an entry, where the entries' rows and columns take 16)."""
        diagonal = np.zeros(packed_size(self.size), dtype=bool)
        diagonal[packed_diagonal(self.size)] = True
        return np.flatnonzero(diagonal[self.entries])

    def adjoint(self, c):
        """``A_g' C A_g`` for every level ``g`` (m1, q1, q1), for a dense symmetric ``C``
        (Q2 x Q2), or with ``packed`` the RFP array of its lower triangle: the transpose
        of :meth:`__call__`, one sparse product over the same pairs.

        A pair ``i <= j`` listed under ``W_g[a, b]`` stands for ``A[i, ga] A[j, gb]``; its
        mirror ``A[j, ga] A[i, gb]`` is listed under ``W_g[b, a]``. So the listed sum
        ``X_g`` with the diagonal of ``C`` halved gives ``X_g + X_g'``."""
        if self.packed:
            diagonal = self._packed_diagonal  # (its mask made before the gather: a lower peak)
            listed = c[self.entries]
            listed[diagonal] *= 0.5
        else:
            c = np.array(c, dtype=float)
            c.flat[:: self.size + 1] *= 0.5
            listed = c.ravel() if self.entries is None else c.ravel()[self.entries]
        x = self.transposed @ listed
        m1q1q1 = x.size
        q1 = self._q1
        x = x.reshape(m1q1q1 // (q1 * q1), q1, q1)
        return x + np.swapaxes(x, 1, 2)

    def lower_difference(self, a, w):
        """``a - sum_g A_g W_g A_g'`` on the lower triangle (diagonal included), ``a``'s
        upper triangle above it, as a new C-ordered array; ``a`` is a
        :class:`SparseEntries` (or a matrix, converted on each call)."""
        if self.entries is None:
            out = (self.matrix @ w.ravel()).reshape(a.shape)
            np.negative(out, out=out)
        else:
            out = np.zeros(a.shape)
            if self.entries.size:
                sums = self.matrix @ w.ravel()
                out.ravel()[self.entries] = np.negative(sums, out=sums)
        (a if isinstance(a, SparseEntries) else SparseEntries(a)).add_to(out)
        return out


class SparseEntries:
    """A fixed sparse matrix as the flat positions and values of its entries, to be added
    to dense matrices many times: the conversion to coordinates, and the summing of
    duplicates that makes a fancy-indexed add exact, are done once."""

    def __init__(self, a):
        coo = sp.coo_matrix(a)
        coo.sum_duplicates()
        self.shape = coo.shape
        self.flat = coo.row.astype(np.intp) * coo.shape[1] + coo.col
        self.values = coo.data

    def add_to(self, out):
        """``out += a`` in place, for a dense C-ordered ``out`` of the same shape."""
        if not out.flags.c_contiguous:  # reshape would add into a copy
            raise ValueError("SparseEntries.add_to needs a C-contiguous array")
        flat = out.reshape(-1)
        flat[self.flat] += self.values


#: Pairs listed at a time while a pair expansion is built (the temporaries of a chunk
#: take some 100 bytes a pair).
PAIR_CHUNK = 1 << 18


class _PairRuns:
    """The pairs of nonzeros of ``csc`` (rows sorted) that :class:`PairExpansion` lists,
    as runs: each nonzero ``d`` (row ``i``, term ``x`` of level ``g``) pairs with the run
    of nonzeros of term ``y``'s column of its level in rows ``j <= i``, for each ``y``
    (within its own column, the run up to itself). A pair stands for ``W_g[y, x]``.
    The runs are laid out by repeats and one running index (no division by their
    lengths), a chunk of rows at a time: all pairs with one larger row are in one chunk.
    """

    def __init__(self, csc, q1):
        self.csc, self.q1 = csc, q1
        size, n_cols = csc.shape
        column = major_index(csc.indptr)
        self.level, self.term = np.divmod(column, q1)
        key = column.astype(np.int64) * size + csc.indices  # sorted: by column, then row
        self.first = np.empty((q1, column.size), np.int64)  # run start of each nonzero, for each y
        self.length = np.empty((q1, column.size), np.int64)
        for y in range(q1):
            col_y = self.level * q1 + y
            self.first[y] = csc.indptr[col_y]
            self.length[y] = np.searchsorted(key, col_y * size + csc.indices, side="right") - self.first[y]
        self.total = int(self.length.sum())
        self.by_row = np.argsort(csc.indices, kind="stable")  # nonzeros row by row

    def chunks(self):
        """Yield ``(ia, ib, w)``: positions in ``csc.data`` of the smaller-row and the
        larger-row nonzero of each pair of a chunk of rows, and the index of its
        ``W_g[y, x]`` in the stacked ``W``."""
        q1, d_all, chunk = self.q1, self.by_row, PAIR_CHUNK
        if not d_all.size:
            return
        rows = self.csc.indices[d_all]
        per_nonzero = np.cumsum(self.length[:, d_all].sum(axis=0))
        row_end = np.flatnonzero(np.append(rows[1:] != rows[:-1], True)) + 1  # end of each row's nonzeros
        cuts = np.unique(row_end[np.searchsorted(per_nonzero[row_end - 1], np.arange(chunk, self.total, chunk))])
        lo = 0
        for hi in np.append(cuts, d_all.size):
            if hi <= lo:
                continue
            d = d_all[lo:hi]
            parts = []
            for y in range(q1):
                lens = self.length[y, d]
                ends = np.cumsum(lens)
                ia = np.arange(ends[-1]) + np.repeat(self.first[y, d] - (ends - lens), lens)
                w = np.repeat(self.level[d] * q1 * q1 + y * q1 + self.term[d], lens)
                parts.append((ia, np.repeat(d, lens), w))
            yield tuple(np.concatenate(p) for p in zip(*parts)) if q1 > 1 else parts[0]
            lo = hi


class CouplingBlock:
    """Cross-products of the factors after the largest, and the products they enter.

    Parameters
    ----------
    rest : list of factors
        The factors after the largest (their covariance parameterisation).
    a21 : sparse matrix (Q2, m1 q1)
        ``Z2'W Z1``.
    a22 : sparse matrix (Q2, Q2)
        ``Z2'W Z2`` (the levels of one factor do not meet: its own block is block
        diagonal, and the dense Schur complement is the only dense matrix of order Q2).
    a2x : ndarray (Q2, p + 1)
        ``Z2'W [X y]``.
    q1 : int
        Terms per level of the largest factor.
    reweightable : bool
        Whether :meth:`reweight` will give new values on the same patterns (a GLMM's
        weights at each Newton step): ``a21`` and ``a22`` must then be canonical CSR
        matrices, and where each derived array's entries come from is traced once.
    """

    def __init__(self, rest, a21, a22, a2x, q1, reweightable=False):
        self.a21 = sp.csr_matrix(a21)
        self.a21_t = self.a21.T.tocsr()  # A12, read at every evaluation: transposed once
        self.a22 = sp.csr_matrix(a22)
        self._a22_entries = SparseEntries(self.a22)
        self.a2x = a2x
        self._q1 = q1
        self.size = a22.shape[0]
        self.lambda2, self._fill = block_lambda_template(rest)
        # Lambda2' shares Lambda2's entries (filled in place by lambda2_at): formed once
        self._lambda2_t = self.lambda2.T
        self.scalar = all(f.q == 1 for f in rest)
        self._level_theta = np.repeat(np.arange(len(rest)), [f.n_levels for f in rest])
        entries = self.size * self.a21.shape[1]
        self.dense = reweightable and entries <= MAX_DENSE_A21 and self.a21.nnz >= MIN_DENSE_FILL * entries
        if self.dense:  # A21 dense, and the products of its columns by K1 of the last factorisation
            self._a21_dense = self.a21.toarray()
            self._dense_at = major_index(self.a21.indptr) * self.a21.shape[1] + self.a21.indices
            self._ak = (None, None, None)
        listed = False
        if not self.dense:
            count = PairExpansion.count(self.a21, q1)
            listed = count <= MAX_PAIRS or count <= PAIRS_PER_ENTRY * self.size**2
        self.rest = rest
        nested = len(rest) == 1 and self._levels_within_one(rest[0].q)
        # a large dense Schur complement of scalar factors is formed, scaled and factorised
        # in packed storage (half the memory): its pairs are listed by packed position
        self.packed = listed and self.scalar and not nested and self.size * self.size > MIN_PACKED_ENTRIES
        self.pairs = PairExpansion(self.a21, q1, packed=self.packed, keep_sources=reweightable) if listed else None
        if self.packed:
            self._packed_a22 = self._packed_lower(self.a22)
            pair_rows, pair_cols = packed_rows_cols(self.pairs.entries, self.size) if len(rest) > 1 else (None, None)
            self._pairs_scale = self._scale_codes(pair_rows, pair_cols)
        self.level_blocks = None if self.packed else self._level_blocks()
        if self.level_blocks is not None:  # A22's values at their places in the stack of its levels' blocks
            q2 = rest[0].q
            row = major_index(self.a22.indptr)
            own = (row // q2) * q2 * q2 + (row % q2) * q2 + self.a22.indices % q2
            self._own_at = (own, (rest[0].n_levels, q2, q2))
            self._own_blocks = self._a22_blocks()
        self._squares = []  # (K1, coupled square) of the last evaluations (coupled_square)
        self._sources = self._trace() if reweightable else None

    def _a22_blocks(self):
        """``A22`` as the stack of its levels' blocks (one factor nested in the largest)."""
        own, shape = self._own_at
        return np.bincount(own, weights=self.a22.data, minlength=np.prod(shape)).reshape(shape)

    def _trace(self):
        """Where the entries of each array derived from ``A21`` and ``A22`` come from in
        their values (``.data``): the arrays are built once by the same steps from
        matrices whose values are their positions."""
        def tracer(a):
            return sp.csr_matrix((np.arange(1.0, a.nnz + 1), a.indices, a.indptr), a.shape)

        def positions(values):
            return values.astype(np.intp) - 1

        t21, t22 = tracer(self.a21), tracer(self.a22)
        sources = {"a21_t": positions(t21.T.tocsr().data), "a22_entries": positions(SparseEntries(t22).values)}
        if self.packed:
            sources["packed_a22"] = positions(self._packed_lower(t22)[1])
        if self.level_blocks is not None:
            pairs_tracer = self.pairs.matrix.copy()
            pairs_tracer.data = np.arange(1.0, pairs_tracer.nnz + 1)
            sources["level_blocks"] = positions(self._level_blocks(pairs_tracer)[0].data)
        return sources

    def reweight(self, a21_data, a22_data, a2x):
        """New values of ``A21`` and ``A22`` on their patterns (in the order of their
        ``.data``) and a new ``A2x`` (any number of columns), with everything derived
        from them; built with ``reweightable``."""
        sources = self._sources
        self.a21.data[:] = a21_data
        self.a21_t.data[:] = a21_data[sources["a21_t"]]
        self.a22.data[:] = a22_data
        self._a22_entries.values = a22_data[sources["a22_entries"]]
        if self.pairs is not None:
            self.pairs.reweight(a21_data)
        if self.packed:
            positions, _, codes = self._packed_a22
            self._packed_a22 = (positions, a22_data[sources["packed_a22"]], codes)
        if self.level_blocks is not None:
            self.level_blocks[0].data[:] = self.pairs.matrix.data[sources["level_blocks"]]
            self._own_blocks = self._a22_blocks()
        if self.dense:
            self._a21_dense.reshape(-1)[self._dense_at] = a21_data
            self._ak = (None, None, None)
        self.a2x = a2x
        self._squares = []

    def _packed_lower(self, a):
        """``(positions, values, scale codes)`` of the lower-triangle entries of a sparse
        symmetric matrix of order Q2 in packed storage."""
        coo = sp.tril(a, format="coo")
        coo.sum_duplicates()
        return packed_positions(coo.row, coo.col, self.size), coo.data, self._scale_codes(coo.row, coo.col)

    def _scale_codes(self, rows, cols):
        """For each entry ``(rows, cols)``, the index of its factors' pair in the flattened
        ``outer(lam, lam)`` of the factors' thetas: what scales it (None with one factor)."""
        if len(self.rest) == 1:
            return None
        n_rest = len(self.rest)
        return (self._level_theta[rows] * n_rest + self._level_theta[cols]).astype(np.int8 if n_rest < 12 else np.int32)

    def _level_blocks(self, matrix=None):
        """Where block 2 is one factor whose levels never meet through the largest factor
        (it is nested in it: each of the largest's levels lies within one of its levels),
        its Schur complement is block diagonal, one ``q2 x q2`` block per level, and is
        factorised level by level (:mod:`.blocks`) instead of as a dense matrix of order
        Q2. Returns the pair expansion's rows of those blocks' lower entries with their
        positions in the stack ``(m2, q2, q2)`` and their mirror images; else None.
        ``matrix``: the pair expansion's matrix with other values (:meth:`_trace`)."""
        if len(self.rest) != 1 or self.pairs is None:
            return None
        q2, pairs = self.rest[0].q, self.pairs
        if not self._levels_within_one(q2):  # read from A21's pattern: no slicing of the pairs
            return None
        matrix = pairs.matrix if matrix is None else matrix
        if pairs.entries is None:
            by_rows = matrix.tocsr()
            entries = np.flatnonzero(np.diff(by_rows.indptr))
            matrix = by_rows[entries]
        else:
            entries = pairs.entries
        row, col = np.divmod(entries, self.size)
        level = row // q2
        if np.any(level != col // q2):
            return None
        a, b = row % q2, col % q2
        return sp.csr_matrix(matrix), level * q2 * q2 + a * q2 + b, level * q2 * q2 + b * q2 + a

    def _levels_within_one(self, q2):
        """Whether the rows of ``A21`` each level of the largest factor reaches (its ``q1``
        columns) lie in one level of block 2's single factor (``q2`` rows a level)."""
        t = self.a21_t  # row g * q1 + a: the rows of A21 in column g * q1 + a
        starts = t.indptr[:: self._q1]
        level = t.indices // q2
        full = np.flatnonzero(np.diff(starts))
        if level.size == 0:
            return True
        lo = np.minimum.reduceat(level, starts[full])
        hi = np.maximum.reduceat(level, starts[full])
        return bool(np.array_equal(lo, hi))

    def _schur_blocks(self, pieces, K1, keep_inner):
        """:meth:`schur` as a stack of the levels' blocks (see :meth:`_level_blocks`)."""
        matrix, lower, upper = self.level_blocks
        f = self.rest[0]
        inner = self._own_blocks.copy()  # A22: the factor's own blocks
        square = matrix @ (K1 @ np.swapaxes(K1, 1, 2)).ravel()
        flat = inner.reshape(-1)
        flat[lower] -= square
        mirror = lower != upper
        flat[upper[mirror]] -= square[mirror]
        out = congruence(f.cholesky_factor(pieces[0]), inner)
        out += np.eye(f.q)
        return (out, blockdiag(inner).toarray()) if keep_inner else out

    def lambda2_at(self, pieces):
        """The sparse ``Lambda2`` for the factors' parts of theta."""
        return self._fill(pieces)

    def lambda2_t_at(self, pieces):
        """The sparse ``Lambda2'`` for the factors' parts of theta (no transposition)."""
        self._fill(pieces)
        return self._lambda2_t

    def congruence(self, pieces, inner):
        """``Lambda2' inner Lambda2`` for a dense symmetric ``inner`` (overwritten when
        every factor of the block is scalar: ``Lambda2`` is then diagonal)."""
        if self.scalar:
            lam = np.concatenate(pieces)[self._level_theta]
            inner *= lam[:, None]
            inner *= lam[None, :]
            return inner
        lam2_t = self.lambda2_t_at(pieces)
        left = lam2_t @ inner
        return np.asarray((lam2_t @ left.T).T)

    def schur(self, pieces, K1, keep_inner=False):
        """``Lambda2' (A22 - A21 K1 K1' A21') Lambda2 + I``: what ``L22`` factorises.

        Only its lower triangle is meant to be read (as LAPACK's Cholesky does): with
        scalar factors the upper one is left as it comes, which saves writing half the
        matrix at every evaluation. With ``keep_inner``, returns ``(schur, inner)``,
        ``inner = A22 - A21 K1 K1' A21'`` whole (what the gradient reads). Block diagonal
        by levels (:meth:`_level_blocks`): the stack of its blocks ``(m2, q2, q2)``.
        """
        if self.level_blocks is not None:
            return self._schur_blocks(pieces, K1, keep_inner)
        if self.packed:
            if keep_inner:
                raise NotImplementedError("the blocked gradient reads the whole inner block; it is held packed")
            return self._packed_schur(pieces, K1)
        if self.pairs is not None and self.scalar:
            out = self.pairs.lower_difference(self._a22_entries, K1 @ np.swapaxes(K1, 1, 2))
            inner = np.tril(out) + np.tril(out, -1).T if keep_inner else None
            out = self.congruence(pieces, out)
            out.flat[:: self.size + 1] += 1.0
            return (out, inner) if keep_inner else out
        inner = self.coupled_square(K1)
        np.negative(inner, out=inner)
        self._a22_entries.add_to(inner)
        out = self.congruence(pieces, inner if not (keep_inner and self.scalar) else inner.copy())
        out.flat[:: self.size + 1] += 1.0
        return (out, inner) if keep_inner else out

    def _packed_schur(self, pieces, K1):
        """:meth:`schur` in packed storage (:mod:`.packed`), for scalar factors: each
        entry of the pair expansion and of ``A22`` is scaled by its two factors' thetas
        as it is placed (the entries not listed are 0: nothing else to scale)."""
        lam = np.concatenate(pieces)
        scale = np.outer(lam, lam).ravel()
        out = np.zeros(packed_size(self.size))
        if self.pairs.entries.size:
            sums = self.pairs.matrix @ (K1 @ np.swapaxes(K1, 1, 2)).ravel()
            sums *= -(scale[self._pairs_scale] if self._pairs_scale is not None else scale[0])
            out[self.pairs.entries] = sums
            del sums
        positions, values, codes = self._packed_a22
        out[positions] += values * (scale[codes] if codes is not None else scale[0])
        out[packed_diagonal(self.size)] += 1.0
        return out

    def coupled_square(self, K1):
        """``A21 K1 K1' A21'`` (dense, Q2 x Q2, a new array) for ``K1`` a stack (m1, q1, q1),
        one block per level of the largest factor.

        Without a pair list (more pairs than the sum has entries) it comes from sparse
        products, far dearer than the factorisation that follows. It depends on the
        largest factor's theta only, which the search's finite differences in the other
        factors' thetas leave unchanged: the last ``SQUARES_KEPT`` are kept and reused."""
        if self.pairs is not None:
            return self.pairs(K1 @ np.swapaxes(K1, 1, 2))
        if self.dense:
            ak = self._a21_k1(K1)
            return ak @ ak.T
        kept = self._squares
        hit = next((k for k, (key, _) in enumerate(kept) if np.array_equal(key, K1)), None)
        if hit is None:
            # A21 blockdiag(K1 K1') A12 with the transpose kept: no conversion of A21 K1's transpose
            weighted = self.a21 @ blockdiag(K1 @ np.swapaxes(K1, 1, 2))
            kept.append((K1.copy(), (weighted @ self.a21_t).toarray()))
            del kept[:-SQUARES_KEPT]
        else:
            kept.append(kept.pop(hit))  # the most recently used last
        return kept[-1][1].copy()

    def _a21_k1(self, K1):
        """``A21 blockdiag(K1)`` (dense: see :attr:`dense`), kept for the ``K1`` of the
        last factorisation."""
        if self._ak[0] is not K1:
            m1, q1, _ = K1.shape
            ak = np.einsum("cga,gab->cgb", self._a21_dense.reshape(self.size, m1, q1), K1)
            self._ak = (K1, ak.reshape(self.size, m1 * q1), None)
        return self._ak[1]

    def _dense_l21(self, pieces, K1):
        """``L21`` dense (see :attr:`dense`), kept for the last factorisation (``K1``
        and ``pieces`` come from one, and its solves read it again)."""
        ak = self._a21_k1(K1)
        if self._ak[2] is None:
            self._ak = (K1, ak, np.asarray(self.lambda2_t_at(pieces) @ ak))
        return self._ak[2]

    def l21_times(self, pieces, K1, B):
        """``L21 B`` for ``B`` of shape (m1 * q1, k), without forming ``L21``."""
        if self.dense:
            return self._dense_l21(pieces, K1) @ B
        m1, q1, _ = K1.shape
        kb = K1 @ B.reshape(m1, q1, -1)  # blockdiag(K1) B
        return self.lambda2_t_at(pieces) @ (self.a21 @ kb.reshape(m1 * q1, -1))

    def l21t_times(self, pieces, K1, v):
        """``L21' v`` for a vector ``v`` of length Q2, or a matrix (Q2, k)."""
        if self.dense:
            return self._dense_l21(pieces, K1).T @ v
        m1, q1, _ = K1.shape
        w = (self.a21_t @ (self.lambda2_at(pieces) @ v)).reshape(m1, q1, -1)
        out = np.swapaxes(K1, 1, 2) @ w
        return out.ravel() if np.ndim(v) == 1 else out.reshape(m1 * q1, -1)

    def l21(self, pieces, K1):
        """``L21`` as a sparse matrix, dense where ``A21`` is (for callers that need it whole)."""
        if self.dense:
            return self._dense_l21(pieces, K1)
        return (self.lambda2_t_at(pieces) @ (self.a21 @ blockdiag(K1))).tocsr()


def blockdiag(blocks):
    """Sparse block-diagonal matrix of a stack of square blocks (m, q, q)."""
    m, q, _ = blocks.shape
    return sp.bsr_matrix((blocks, np.arange(m), np.arange(m + 1)), shape=(m * q, m * q)).tocsr()
