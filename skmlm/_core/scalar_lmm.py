"""The profiled (RE)ML deviance of one scalar random term, level by level, in closed form.

The commonest linear mixed model has one grouping factor and one random term (a random
intercept: dyestuff, sleepstudy's ``(1 | Subject)``, the null model of every multilevel
analysis). Then theta is one number ``t``, and each level's block of
``Lambda' Z'W Z Lambda + I`` is the scalar ``M_g = t^2 a_g + 1`` (``a_g`` the level's
``sum w z^2``). Eliminating the random effects leaves the Schur complement of ``[X y]``::

    S(t) = A_xy - sum_g phi_g c_g c_g',    phi_g = t^2 / M_g,

with ``c_g = sum w z [x y]`` over the level's rows and ``A_xy`` the cross-products of
``[X y]``. The deviance's parts are ``log|M| = sum log M_g`` and the Cholesky factor of
``S``; its first and second derivatives in ``t`` follow from those of ``phi_g``
(:func:`derivatives`). An evaluation is a handful of vector operations over the levels
and one ``(p + 1)``-order Cholesky factorisation, and with the exact second derivative the
search takes Newton steps with no finite differences.

Every function reads the model's :class:`~.lmm.CrossProducts` as it is at the call, so
the models derived from a fit (:mod:`.derived`: another criterion, another response) need
nothing of their own.
"""

import numpy as np

from .dense_gradient import cholesky_lower, inverse_lower


def is_scalar(factors):
    """Whether the model has this form: one grouping factor with one random term."""
    return len(factors) == 1 and factors[0].q == 1


def factorise(cp, t):
    """``(a, C, M, L)`` at ``t``: the levels' ``a_g``, their cross-products ``c_g`` (rows
    of ``C``), ``M_g``, and the lower Cholesky factor ``L`` of ``S(t)``.

    Raises LinAlgError where ``S(t)`` is not positive definite.
    """
    a, C = cp.a11[:, 0, 0], cp.a1x[:, 0, :]
    t2 = t * t
    M = t2 * a + 1.0
    S = cp.a_xx - (C.T * (t2 / M)) @ C
    return a, C, M, cholesky_lower(S)


def parts(fact):
    """``(logdet_z, pwrss, logdet_x)`` of a factorisation: what the deviance is made of."""
    _, _, M, L = fact
    d = np.diagonal(L)
    return float(np.log(M).sum()), float(d[-1] ** 2), 2.0 * float(np.log(d[:-1]).sum())


def profiled(fact, p):
    """``(beta, Lx^-1, e)``: the profiled fixed effects, the inverse Cholesky factor of
    their information ``S_xx``, and each level's ``e_g = c_g' [-beta, 1]`` (its weighted
    sum of ``z`` times the residual of the fixed part)."""
    _, C, _, L = fact
    lx_inv = inverse_lower(L[:p, :p]) if p else L[:0, :0]
    beta = lx_inv.T @ L[-1, :p]
    return beta, lx_inv, C[:, -1] - C[:, :p] @ beta


def derivatives(fact, t, dof, reml, p):
    """First and second derivative in ``t`` of the deviance.

    With ``t^2 a = M - 1``: ``phi' = 2 t / M^2`` and ``phi'' = (8 - 6 M) / M^3``, so that
    ``S' = -C' diag(phi') C`` and likewise ``S''``; ``log|M|' = 2 t sum a / M`` and
    ``log|M|'' = 2 sum a (2 - M) / M^2``. By the envelope theorem ``pwrss' = r' S' r``
    (``r = [-beta, 1]``), and ``pwrss'' = r' S'' r - 2 v' S_xx^-1 v`` with ``v = (S' r)_x``
    (beta moves with ``t``). Under REML, ``log|S_xx|`` adds ``tr(S_xx^-1 S'_xx)`` and
    ``tr(S_xx^-1 S''_xx) - tr((S_xx^-1 S'_xx)^2)``.
    """
    a, C, M, L = fact
    beta, lx_inv, e = profiled(fact, p)
    inv_m = 1.0 / M
    inv_m2 = inv_m * inv_m
    d1 = (2.0 * t) * inv_m2
    d2 = (8.0 - 6.0 * M) * inv_m2 * inv_m
    pwrss = L[-1, -1] ** 2
    e2 = e * e
    pw1 = -float(d1 @ e2) / pwrss
    pw2 = -float(d2 @ e2) / pwrss
    if p:
        Cx = C[:, :p]
        sx_inv = lx_inv.T @ lx_inv
        v = Cx.T @ (d1 * e)  # -(S' r)_x
        pw2 -= 2.0 * float(v @ sx_inv @ v) / pwrss
    g = 2.0 * t * float(a @ inv_m) + dof * pw1
    h = 2.0 * float(a @ ((2.0 - M) * inv_m2)) + dof * (pw2 - pw1**2)
    if reml and p:
        P1 = sx_inv @ -((Cx.T * d1) @ Cx)
        g += float(np.trace(P1))
        h += float((sx_inv * -((Cx.T * d2) @ Cx)).sum()) - float((P1 * P1.T).sum())
    return g, h


def solution(fact, t, p):
    """``(beta, Lx^-1, u)``: the profiled fixed effects, the inverse Cholesky factor of
    their information, and the spherical modes ``u_g = t e_g / M_g``."""
    beta, lx_inv, e = profiled(fact, p)
    return beta, lx_inv, t * e / fact[2]
