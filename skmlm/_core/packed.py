"""A symmetric matrix's lower triangle in LAPACK's rectangular full packed format (RFP).

A dense block of order ``n`` held whole takes ``n^2`` numbers, of which its Cholesky
factor reads half. RFP holds the lower triangle alone, ``n (n + 1) / 2`` numbers, as one
rectangular array that LAPACK factorises (``dpftrf``) and solves with (``dtfsm``) at
the speed of the full-storage routines (they are blocked the same way): the largest
dense block of a crossed design takes half the memory.

The layout (``TRANSR='N'``, ``UPLO='L'``), with ``k = ceil(n / 2)`` columns of leading
dimension ``lda`` (``n + 1`` for even ``n``, ``n`` for odd): column ``c < k`` of ``A``
from its diagonal down sits in column ``c`` of the rectangle, below row ``s`` (``s = 1``
for even ``n``, else 0); the lower triangle of ``A``'s trailing block (rows and columns
``k`` on) fills the top of the rectangle, transposed.
"""

import numpy as np
from scipy.linalg import lapack


def packed_size(n):
    """Numbers in the RFP array of a matrix of order ``n``."""
    return n * (n + 1) // 2


def _layout(n):
    """``(k, lda, s)``: the rectangle's columns, its leading dimension, and the row offset
    of the columns of ``A`` in it (see the module docstring)."""
    s = 1 - n % 2
    return (n + 1) // 2, n + s, s


def packed_positions(rows, cols, n):
    """Positions in the RFP array of the lower-triangle entries ``(rows, cols)``
    (``rows >= cols``) of a matrix of order ``n`` (int64)."""
    k, lda, s = _layout(n)
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    return np.where(cols < k, cols * lda + rows + s, (rows - k + 1 - s) * lda + (cols - k))


def packed_diagonal(n):
    """Positions of the diagonal entries in the RFP array of order ``n``."""
    i = np.arange(n)
    return packed_positions(i, i, n)


def packed_rows_cols(positions, n):
    """``(rows, cols)`` of ``A``'s lower-triangle entries at RFP ``positions`` (the
    inverse of :func:`packed_positions`)."""
    k, lda, s = _layout(n)
    c, p = np.divmod(np.asarray(positions, dtype=np.int64), lda)
    upper = p < c + s  # the trailing block's triangle, transposed
    return np.where(upper, k + c - 1 + s, p - s), np.where(upper, k + p, c)


class PackedCholesky:
    """The lower Cholesky factor of a symmetric positive definite matrix held in RFP.

    Parameters
    ----------
    a : ndarray (n (n + 1) / 2,)
        The RFP array of the matrix's lower triangle; overwritten by its factor.
    n : int
        The order.
    """

    def __init__(self, a, n):
        factor, info = lapack.dpftrf(n, a, transr="N", uplo="L", overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError("matrix is not positive definite")
        self.data, self.n = factor, n
        self.shape = (n, n)

    def diagonal(self):
        """The factor's diagonal."""
        return self.data[packed_diagonal(self.n)]

    def logdet(self):
        """``log det(L L')``."""
        return 2.0 * np.log(self.diagonal()).sum()

    def solve(self, b, trans=False):
        """``L^-1 b`` (``L'^-1 b`` with ``trans``) for ``b`` of shape (n,) or (n, k)."""
        b = np.asarray(b, dtype=float)
        x = lapack.dtfsm(1.0, self.data, np.asfortranarray(b.reshape(self.n, -1)), transr="N", side="L",
                         uplo="L", trans="T" if trans else "N")
        return x.reshape(b.shape)

    def solve_matrix(self, b):
        """``(L L')^-1 b``: two triangular solves, for ``b`` of shape (n,) or (n, k)."""
        return self.solve(self.solve(b), trans=True)

    def invert(self, single=False):
        """The RFP array of ``(L L')^-1``'s lower triangle, computed in the factor's memory
        (LAPACK's ``dpftri``): the factor is gone afterwards, and this object unusable.
        ``single``: in single precision (``spftri``, twice as fast), from the factor
        rounded to it; the result is float32."""
        if single:
            data, self.data = single_in_place(self.data), None
            inverse, info = lapack.spftri(self.n, data, transr="N", uplo="L", overwrite_a=1)
        else:
            inverse, info = lapack.dpftri(self.n, self.data, transr="N", uplo="L", overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError("singular Cholesky factor")
        self.data = None
        return inverse

    def dense(self):
        """The factor as a dense lower-triangular array."""
        L, info = lapack.dtfttr(self.n, self.data, transr="N", uplo="L")
        if info != 0:
            raise ValueError(f"dtfttr failed (info {info})")
        return np.tril(L)


#: Numbers converted at a time by :func:`single_in_place`.
SINGLE_CHUNK = 1 << 20


def single_in_place(a):
    """``a`` (float64, contiguous) rounded to float32 in the first half of its own memory,
    returned as a float32 view of it (``a`` is overwritten): no second copy of a packed
    block. Chunk ``i`` is written below where chunk ``i + 1`` is read from."""
    out = a.view(np.float32)[: a.size]
    for start in range(0, a.size, SINGLE_CHUNK):
        stop = min(start + SINGLE_CHUNK, a.size)
        out[start:stop] = a[start:stop].astype(np.float32)  # read whole before written
    return out


def packed_frobenius2(a, n):
    """Sum of squares of all entries of the symmetric matrix of order ``n`` whose lower
    triangle is the RFP array ``a`` (each entry off the diagonal counts twice)."""
    d = a[packed_diagonal(n)].astype(float)
    return 2.0 * float(np.dot(a, a)) - float(d @ d)
