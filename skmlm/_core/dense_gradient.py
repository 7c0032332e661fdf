"""The profiled deviance and its gradient for several small factors, by dense algebra.

For a small total number of random effects ``Q`` (crossed or nested designs such as
Penicillin or Pastes) the whole ``M = Lambda' Z'W Z Lambda + I`` fits in a small dense
matrix. The gradient then follows the same three formulas as the batched one-factor
gradient in :mod:`.lmm`, written for the whole ``Lambda`` at once and summed onto theta
through the pattern of ``Lambda``. It saves the finite differences (a handful of
evaluations instead of several per step), and at this size plain dense calls cost less
than the sparse bookkeeping of the blocked factorisation.
"""

import numpy as np
from scipy.linalg import lapack

from .design import lambda_pattern

#: Largest total number of random effects for which several factors go dense.
MAX_DENSE_GRADIENT = 500

#: Largest number of random effects for which one factor goes dense: below it, a few
#: dense calls cost less than the batched routines' many small ones.
MAX_DENSE_ONE_FACTOR = 150


def cholesky_lower(a):
    """Lower Cholesky factor by LAPACK's potrf directly: at this size numpy's wrapper
    costs more than the factorisation."""
    L, info = lapack.dpotrf(a, lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError("matrix is not positive definite")
    return L


def cholesky_lower_overwrite(a):
    """Lower Cholesky factor of a C-ordered symmetric ``a`` whose lower triangle is set,
    computed in ``a``'s memory (which is lost).

    LAPACK sees ``a`` transposed, in Fortran order without a copy, and factorises its
    upper triangle: 1.7 times faster than ``np.linalg.cholesky`` at order 1,142
    (``benchmarks/micro.py``).
    """
    U, info = lapack.dpotrf(np.ascontiguousarray(a).T, lower=0, overwrite_a=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError("matrix is not positive definite")
    return U.T


def solve_positive_definite(a, b):
    """``a^-1 b`` for a symmetric positive definite ``a``, by LAPACK's posv (numpy's solve
    costs several times as much at this size); LinAlgError where ``a`` is not."""
    if a.shape[0] == 0:  # nothing to solve (no fixed effects)
        return np.zeros(b.shape)
    x, info = lapack.dposv(a, b)[1:]
    if info != 0:
        raise np.linalg.LinAlgError("matrix is not positive definite")
    return x


def inverse_lower(L):
    """Inverse of a lower triangular matrix by LAPACK's trtri."""
    inv, info = lapack.dtrtri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("singular triangular matrix")
    return inv


_ONE = np.ones(1)


def _dot_rows(a, b):
    """Row-wise dot products of two arrays of the same shape."""
    return np.einsum("ij,ij->i", a, b)

#: Factorisations kept by :meth:`DenseGradient.factorise`: a point and its neighbours of a
#: finite-difference Hessian over a few parameters.
RECENT_FACTORISATIONS = 4

class DenseGradient:
    """Deviance parts and gradient of the profiled (RE)ML deviance for any set of factors.

    Parameters
    ----------
    factors : list of factors
        Their covariance parameterisation (the pattern of ``Lambda``).
    a : ndarray (Q, Q)
        ``Z'WZ`` of all factors, dense.
    a_zx : ndarray (Q, p + 1)
        ``Z'W[X y]``.
    a_xx : ndarray (p + 1, p + 1)
        ``[X y]'W[X y]``.
    n : int
        Rows.
    reml : bool
    """

    def __init__(self, factors, a, a_zx, a_xx, n, reml):
        self.a, self.a_zx, self.a_xx = a, a_zx, a_xx
        self.rows, self.cols, self.src, self.size = lambda_pattern(factors)
        # Lambda diagonal (scalar or uncorrelated terms), its entries in order: products
        # with it are scalings, and the gradient's entries need no gathering
        self.diagonal = bool(np.array_equal(self.rows, np.arange(self.size)) and np.array_equal(self.cols, self.rows))
        self.n_theta = int(self.src.max()) + 1
        self.n, self.p = int(n), a_xx.shape[0] - 1
        self.reml = reml
        self._last = None  # {theta bytes: factorisation} of the last few thetas

    def __call__(self, theta):
        """The gradient at ``theta``; NaN where the factorisation fails."""
        try:
            return self._gradient(np.asarray(theta, dtype=float))
        except np.linalg.LinAlgError:
            return np.full(self.n_theta, np.nan)

    def factorise(self, theta):
        """``(lam, lam' A, L^-1, B, Lxy, logdet)`` at ``theta``: the dense factorisation.

        The last few are kept: an optimiser asks for the value and then the gradient at
        the same point, and after a finite-difference Hessian around it, the estimates.
        """
        key = theta.tobytes()
        if self._last is None:
            self._last = {}
        result = self._last.get(key)
        if result is None:
            result = self._factorise(theta)
            if len(self._last) >= RECENT_FACTORISATIONS:
                del self._last[next(iter(self._last))]  # the oldest
            self._last[key] = result
        return result

    def _factorise(self, theta):
        """See :meth:`factorise`; with a diagonal Lambda, ``lam`` is its diagonal."""
        Q = self.size
        if self.diagonal:
            lam = theta[self.src]
            lam_a = lam[:, None] * self.a
            m = lam_a * lam
            lam_zx = lam[:, None] * self.a_zx
        else:
            lam = np.zeros((Q, Q))
            lam[self.rows, self.cols] = theta[self.src]
            lam_a = lam.T @ self.a
            m = lam_a @ lam
            lam_zx = lam.T @ self.a_zx
        m.flat[:: Q + 1] += 1.0
        L = cholesky_lower(m)
        l_inv = inverse_lower(L)
        B = l_inv @ lam_zx
        Lxy = cholesky_lower(self.a_xx - B.T @ B)
        return lam, lam_a, l_inv, B, Lxy, 2.0 * np.log(L.flat[:: Q + 1]).sum()

    def parts(self, theta):
        """``(logdet_z, pwrss, logdet_x)``: what the deviance is made of, at ``theta``."""
        *_, Lxy, logdet_z = self.factorise(np.asarray(theta, dtype=float))
        return logdet_z, Lxy[-1, -1] ** 2, 2.0 * np.log(np.diag(Lxy)[:-1]).sum()

    def _profiled(self, Lxy, l_inv, B):
        """``(Lx^-1, beta, [-beta, 1], u)`` from a factorisation: the inverse Cholesky factor
        of the fixed effects' information, their profiled values, the vector that turns
        ``[X y]`` into ``y - X beta``, and the spherical modes."""
        lx_inv = inverse_lower(Lxy[:-1, :-1]) if self.p else Lxy[:0, :0]
        beta = lx_inv.T @ Lxy[-1, :-1]
        residual = np.concatenate((-beta, _ONE))
        return lx_inv, beta, residual, l_inv.T @ (B @ residual)

    def solution(self, theta):
        """``(beta, Lx^-1, u, parts)`` at ``theta``: the profiled fixed effects, the inverse
        Cholesky factor of their information, the spherical modes (the factors' in order)
        and :meth:`parts`."""
        theta = np.asarray(theta, dtype=float)
        _, _, l_inv, B, Lxy, _ = self.factorise(theta)
        lx_inv, beta, _, u = self._profiled(Lxy, l_inv, B)
        return beta, lx_inv, u, self.parts(theta)

    def _gradient(self, theta):
        p = self.p
        lam, lam_a, l_inv, B, Lxy, _ = self.factorise(theta)
        lx_inv, beta, residual, u = self._profiled(Lxy, l_inv, B)
        pwrss = Lxy[-1, -1] ** 2
        diagonal = self.diagonal
        s = self.a_zx @ residual - self.a @ (lam * u if diagonal else lam @ u)
        m_inv = l_inv.T @ l_inv
        dof = self.n - p if self.reml else self.n
        # only the entries of the Q x Q gradient where theta sits in Lambda: (r, c) pairs
        # (with a diagonal Lambda, the diagonal in order: no gathering)
        rows, cols = self.rows, self.cols
        lam_a_r = lam_a if diagonal else lam_a[:, rows]  # (Q, entries)
        m_inv_c, s_r, u_c = (m_inv, s, u) if diagonal else (m_inv[cols], s[rows], u[cols])
        grad = 2.0 * _dot_rows(m_inv_c, lam_a_r.T) - (2.0 * dof / pwrss) * (s_r * u_c)
        if self.reml and p > 0:
            sx_inv = lx_inv.T @ lx_inv
            a_x = self.a_zx[:, :-1]
            D = m_inv @ (lam[:, None] * a_x if diagonal else lam.T @ a_x)
            DS_c = D @ sx_inv if diagonal else (D @ sx_inv)[cols]
            a_x_r = a_x if diagonal else a_x[rows]
            grad -= 2.0 * (_dot_rows(a_x_r, DS_c) - _dot_rows(DS_c, lam_a_r.T @ D))
        return np.bincount(self.src, weights=grad, minlength=self.n_theta)
