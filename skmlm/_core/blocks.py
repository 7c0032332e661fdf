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
        d = a[:, j, j].copy()
        for k in range(j):
            d -= L[:, j, k] ** 2
        if np.any(d <= 0):
            raise np.linalg.LinAlgError("a block is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            off = a[:, i, j].copy()
            for k in range(j):
                off -= L[:, i, k] * L[:, j, k]
            L[:, i, j] = off / L[:, j, j]
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
        acc = b[:, i, :].copy()
        for k in range(i):
            acc -= L[:, i, k, None] * x[:, k, :]
        x[:, i, :] = acc / L[:, i, i, None]
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
        acc = b[:, i, :].copy()
        for k in range(i + 1, q):
            acc -= L[:, k, i, None] * x[:, k, :]
        x[:, i, :] = acc / L[:, i, i, None]
    return x


def congruence(T, a):
    """``T' a_g T`` for every block ``a_g`` of a stack, as two BLAS products."""
    m, q, k = a.shape
    at = (a.reshape(m * q, k) @ T).reshape(m, q, -1)  # a_g T
    return (np.swapaxes(at, 1, 2).reshape(-1, q) @ T).reshape(m, -1, T.shape[1]).swapaxes(1, 2)


def left_multiply_t(T, a):
    """``T' a_g`` for every block ``a_g`` (shape (m, q, k)) of a stack, as one BLAS product."""
    m, q, k = a.shape
    return (np.swapaxes(a, 1, 2).reshape(m * k, q) @ T).reshape(m, k, T.shape[1]).swapaxes(1, 2)


def batched_inverse_lower(L):
    """Inverse of every lower triangular block of ``L`` (shape (m, q, q))."""
    m, q, _ = L.shape
    eye = np.broadcast_to(np.eye(q), (m, q, q))
    return batched_solve_lower(L, eye)


def batched_logdet_chol(L):
    """``log det(L L')`` summed over all blocks of a stack of Cholesky factors."""
    return 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
