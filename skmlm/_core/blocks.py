"""Batched dense linear algebra on stacks of small matrices.

A grouping factor with ``m`` levels and ``q`` random-effect terms contributes ``m``
independent ``q x q`` blocks to ``Lambda' Z'Z Lambda + I``. These routines factorise and
solve all blocks at once. They loop over the (tiny) matrix dimension ``q`` and vectorise
over the (large) number of blocks, so their cost is a handful of numpy calls regardless
of how many groups there are.
"""

import numpy as np


def batched_cholesky(a):
    """Lower Cholesky factors of a stack of symmetric positive definite matrices.

    Parameters
    ----------
    a : ndarray of shape (m, q, q)

    Returns
    -------
    ndarray of shape (m, q, q), lower triangular, ``L @ L.T == a`` blockwise.
    """
    m, q, _ = a.shape
    if q == 1:
        return np.sqrt(a)
    L = np.zeros_like(a)
    for j in range(q):
        d = a[:, j, j] - np.einsum("mk,mk->m", L[:, j, :j], L[:, j, :j])
        if np.any(d <= 0):
            raise np.linalg.LinAlgError("a block is not positive definite")
        L[:, j, j] = np.sqrt(d)
        if j + 1 < q:
            off = a[:, j + 1 :, j] - np.einsum("mik,mk->mi", L[:, j + 1 :, :j], L[:, j, :j])
            L[:, j + 1 :, j] = off / L[:, j, j][:, None]
    return L


def batched_solve_lower(L, b):
    """Solve ``L x = b`` blockwise for lower triangular ``L``.

    Parameters
    ----------
    L : ndarray of shape (m, q, q)
    b : ndarray of shape (m, q, k)

    Returns
    -------
    ndarray of shape (m, q, k)
    """
    q = L.shape[1]
    if q == 1:
        return b / L
    x = np.empty(np.broadcast_shapes(L.shape[:1], b.shape[:1]) + b.shape[1:])
    for i in range(q):
        acc = b[:, i, :] - np.einsum("mk,mkc->mc", L[:, i, :i], x[:, :i, :])
        x[:, i, :] = acc / L[:, i, i][:, None]
    return x


def batched_solve_upper_t(L, b):
    """Solve ``L.T x = b`` blockwise for lower triangular ``L``.

    Parameters
    ----------
    L : ndarray of shape (m, q, q)
    b : ndarray of shape (m, q, k)

    Returns
    -------
    ndarray of shape (m, q, k)
    """
    q = L.shape[1]
    if q == 1:
        return b / L
    x = np.empty(np.broadcast_shapes(L.shape[:1], b.shape[:1]) + b.shape[1:])
    for i in reversed(range(q)):
        acc = b[:, i, :] - np.einsum("mk,mkc->mc", L[:, i + 1 :, i], x[:, i + 1 :, :])
        x[:, i, :] = acc / L[:, i, i][:, None]
    return x


def batched_inverse_lower(L):
    """Inverse of every lower triangular block of ``L`` (shape (m, q, q))."""
    m, q, _ = L.shape
    eye = np.broadcast_to(np.eye(q), (m, q, q))
    return batched_solve_lower(L, eye)


def batched_logdet_chol(L):
    """``log det(L L')`` summed over all blocks of a stack of Cholesky factors."""
    return 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
