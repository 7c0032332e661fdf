"""Conditional covariances of the random effects (lme4's ``condVar`` / ``postVar``).

Given the data and ``theta`` (and, for the binomial model, the weights at the
conditional mode), the spherical random effects ``u`` have conditional covariance
``sigma^2 M^-1`` with ``M = Lambda' Z'W Z Lambda + I = L L'``; for ``b = Lambda u`` the
covariance of one level's effects is ``sigma^2 T (M^-1)_gg T'``, ``(M^-1)_gg`` the
level's diagonal block. As lme4, the uncertainty of the fixed effects is not included.

With the blocked factor ``L = [[L11, 0], [L21, L22]]`` (``L11`` batched over the levels
of the largest factor):

* ``(M^-1)_22 = L22^-T L22^-1``: the diagonal blocks of the factors after the largest;
* ``(M^-1)_11 = L11^-T L11^-1 + W' W``, ``W = L22^-1 L21 L11^-1``: only the level's own
  columns of ``W`` enter its block, so ``W`` is formed a slab of levels at a time.
"""

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .blocks import batched_inverse_lower
from .design import split_theta

#: Largest number of entries of one dense slab of ``W`` (memory ~8 bytes each).
MAX_SLAB = 4_000_000


def inverse_diagonal_blocks(L11, L21, L22, sizes):
    """Diagonal blocks of ``M^-1`` for ``M = L L'``.

    Parameters
    ----------
    L11 : ndarray (m1, q1, q1)
    L21 : sparse matrix (Q2, m1 q1) or None
    L22 : ndarray (Q2, Q2) or None
    sizes : list of (n_levels, q)
        The factors after the largest, in the order of ``L22``'s rows.

    Returns
    -------
    list of ndarray, one (n_levels, q, q) per factor: the largest first, then ``sizes``.
    """
    m1, q1, _ = L11.shape
    linv = batched_inverse_lower(L11)
    first = np.swapaxes(linv, 1, 2) @ linv
    out = [first]
    if L22 is None:
        return out
    Q2 = L22.shape[0]
    l22inv = sla.solve_triangular(L22, np.eye(Q2), lower=True, check_finite=False)
    start = 0
    for m, q in sizes:
        cols = l22inv[:, start : start + m * q].reshape(Q2, m, q)
        out.append(np.einsum("kgi,kgj->gij", cols, cols))
        start += m * q
    # W = L22^-1 L21 blockdiag(L11^-1), slab by slab of levels of the first factor
    L21 = sp.csc_matrix(L21)
    slab = max(1, MAX_SLAB // max(1, Q2 * q1))
    for a in range(0, m1, slab):
        b = min(m1, a + slab)
        part = L21[:, a * q1 : b * q1].toarray().reshape(Q2, b - a, q1)
        part = np.einsum("kgi,gij->kgj", part, linv[a:b])  # L21 L11^-1 on these levels
        W = l22inv @ part.reshape(Q2, -1)
        W = W.reshape(Q2, b - a, q1)
        first[a:b] += np.einsum("kgi,kgj->gij", W, W)
    return out


def conditional_covariances(factors, order, theta, L11, L21, L22, scale=1.0):
    """``scale * T (M^-1)_gg T'`` per level, one (n_levels, q, q) array per factor in
    input order. ``order`` lists the factors as the factorisation holds them (largest first)."""
    sizes = [(factors[k].n_levels, factors[k].q) for k in order[1:]]
    blocks = inverse_diagonal_blocks(L11, L21, L22, sizes)
    pieces = split_theta(factors, np.asarray(theta, dtype=float))
    out = [None] * len(factors)
    for k, blk in zip(order, blocks):
        T = factors[k].cholesky_factor(pieces[k])
        out[k] = scale * (T @ blk @ T.T)
    return out


def lmm_conditional_covariances(model, theta, sigma2):
    """Conditional covariances of a :class:`~.lmm.LinearMixedModel` at ``theta``."""
    dec = model.decompose(theta)
    return conditional_covariances(model.factors, model.cp.order, theta, dec.L11, dec.L21, dec.dense_L22, sigma2)


def glmm_conditional_covariances(model, theta, beta, dispersion=1.0):
    """Conditional covariances of a :class:`~.glmm.GeneralizedMixedModel` at ``(theta, beta, dispersion)``
    (the weights of ``M`` at the conditional mode, as lme4). Computed in the model's
    standard units (``b' = A b``) and mapped back: ``A^-1 cov(b') A^-T``."""
    units = model.units
    m = model.mode(theta, beta, dispersion)
    fac = m.factor
    theta_std = units.to_search(model.join(theta, beta, dispersion))[: model.n_theta]
    covs = conditional_covariances(units.factors, model.pirls.order, theta_std, fac.L11, fac.L21, fac.L22)
    return [Ai @ c @ Ai.T for c, Ai in zip(covs, units.inverse_maps)]
