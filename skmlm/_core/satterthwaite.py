"""Satterthwaite degrees of freedom for the fixed effects of a linear mixed model, as lmerTest.

lmerTest (Kuznetsova, Brockhoff & Christensen 2017) works with the variance parameters
``varpar = (theta, sigma)`` (``theta`` as lme4's, ``sigma`` the residual SD):

* ``A = 2 H^-1`` is their asymptotic covariance, ``H`` the Hessian of the deviance
  (ML, or REML when the model is fitted by REML) in ``varpar`` with beta profiled
  out (:func:`.varpar.ml_deviance`, :func:`.varpar.reml_deviance`); the inverse is the
  Moore-Penrose one over the eigenvalues above ``1e-8``, as lmerTest;
* ``C(varpar) = sigma^2 (R_X' R_X)^-1`` is the covariance of beta, and ``J_k`` its
  derivative in ``varpar_k``;
* for a contrast ``L``: ``df = 2 (L' C L)^2 / (g' A g)`` with ``g_k = L' J_k L``.

lmerTest takes the derivatives with numDeriv's Richardson extrapolation; here the
same scheme: central differences from numDeriv's first steps (10% of each coordinate
for the Hessian, 0.01% for the Jacobian), extrapolated over four halvings of the step.
"""

import numpy as np
from scipy import stats

from .varpar import ml_deviance, reml_deviance

#: Eigenvalues of the Hessian at or below this are dropped from its inverse (lmerTest's tol).
EIGEN_TOL = 1e-8


#: numDeriv's ``zero.tol``: coordinates smaller than this get the absolute step ``eps``.
ZERO_TOL = np.sqrt(np.finfo(float).eps / 7e-7)


def _step(v, d, floor=None, eps=1e-4):
    """numDeriv's first step: ``d |v|``, plus ``eps`` where ``|v|`` is ~0; with ``floor``,
    ``d max(|v|, floor)`` instead (steady steps for coordinates near 0)."""
    if floor is not None:
        return d * max(abs(v), floor)
    return d * abs(v) + (eps if abs(v) < ZERO_TOL else 0.0)


def _richardson(fun, x, i, j=None, d=1e-4, n_rounds=4, floor=None):
    """Second derivative (``j`` given) or first derivative of ``fun`` at ``x`` in coordinate
    ``i`` by central differences, Richardson-extrapolated over ``n_rounds`` halvings of the
    step ``d |x|`` (numDeriv's scheme: ``d = 1e-4`` for ``jacobian``, ``0.1`` for ``hessian``)."""
    x = np.asarray(x, dtype=float)
    hi = _step(x[i], d, floor)
    hj = None if j is None else _step(x[j], d, floor)
    estimates = []
    for r in range(n_rounds):
        a = hi / 2**r
        if j is None:
            xp, xm = x.copy(), x.copy()
            xp[i] += a
            xm[i] -= a
            estimates.append((np.asarray(fun(xp)) - np.asarray(fun(xm))) / (2 * a))
        elif i == j:
            xp, xm = x.copy(), x.copy()
            xp[i] += a
            xm[i] -= a
            estimates.append((np.asarray(fun(xp)) - 2 * np.asarray(fun(x)) + np.asarray(fun(xm))) / a**2)
        else:
            b = hj / 2**r
            vals = []
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                z = x.copy()
                z[i] += si * a
                z[j] += sj * b
                vals.append(np.asarray(fun(z)))
            estimates.append((vals[0] - vals[1] - vals[2] + vals[3]) / (4 * a * b))
    # Richardson: errors in h^2, h^4, ...
    table = [np.asarray(e, dtype=float) for e in estimates]
    for m in range(1, n_rounds):
        f = 4.0**m
        table = [(f * table[k + 1] - table[k]) / (f - 1) for k in range(len(table) - 1)]
    return table[0]


def hessian(fun, x, d=0.1, coordinates=None, floor=None):
    """Hessian of a scalar ``fun`` at ``x`` with Richardson extrapolation (first step
    ``d |x_i|``, see :func:`_step`); only over ``coordinates`` (indices) when given, NaN
    elsewhere."""
    k = len(x)
    idx = list(range(k)) if coordinates is None else list(coordinates)
    H = np.full((k, k), np.nan)
    for a, i in enumerate(idx):
        H[i, i] = _richardson(fun, x, i, i, d=d, floor=floor)
        for j in idx[:a]:
            H[i, j] = H[j, i] = _richardson(fun, x, i, j, d=d, floor=floor)
    return H


def jacobian(fun, x, d=1e-4, floor=None):
    """Derivatives of an array-valued ``fun`` at ``x``: a list, one array per coordinate."""
    return [_richardson(fun, x, i, d=d, floor=floor) for i in range(len(x))]


class Satterthwaite:
    """Satterthwaite's approximation for a fitted :class:`~.lmm.LinearMixedModel`.

    Parameters
    ----------
    model : LinearMixedModel
        The core model; its ``reml`` flag chooses the deviance, as lmerTest.
    theta : ndarray
        The fitted ``theta``.
    sigma : float
        The fitted residual SD.
    """

    def __init__(self, model, theta, sigma):
        self.model = model
        self.varpar = np.concatenate([np.asarray(theta, dtype=float), [float(sigma)]])
        dev = reml_deviance if model.reml else ml_deviance
        self._dev = lambda vp: dev(model, vp[:-1], vp[-1])  # noqa: E731
        self.hessian = hessian(self._dev, self.varpar)
        lam, vec = np.linalg.eigh(self.hessian)
        pos = lam > EIGEN_TOL
        self.hessian_eigenvalues = lam
        self.vcov_varpar = 2.0 * (vec[:, pos] / lam[pos]) @ vec[:, pos].T
        self.jacobian = jacobian(self.cov_beta, self.varpar)
        self.vcov_beta = self.cov_beta(self.varpar)

    def cov_beta(self, varpar):
        """``sigma^2 (R_X' R_X)^-1`` at ``varpar = (theta, sigma)``."""
        dec = self.model.decompose(varpar[:-1])
        li = np.linalg.inv(dec.Lx)
        return varpar[-1] ** 2 * (li.T @ li)

    def df(self, L):
        """Denominator degrees of freedom of the contrast(s) ``L`` (rows of a 2-d array).

        For one row ``l``: ``2 (l' C l)^2 / (g' A g)``, ``g_k = l' J_k l``.
        """
        L = np.atleast_2d(np.asarray(L, dtype=float))
        out = np.empty(len(L))
        for r, l in enumerate(L):
            var = l @ self.vcov_beta @ l
            g = np.array([l @ J @ l for J in self.jacobian])
            denom = g @ self.vcov_varpar @ g
            out[r] = 2.0 * var**2 / denom if denom > 0 else np.inf
        return out

    def coefficient_table(self, beta):
        """Estimate, SE, df, t and two-sided p of every fixed effect."""
        beta = np.asarray(beta, dtype=float)
        se = np.sqrt(np.diag(self.vcov_beta))
        df = self.df(np.eye(len(beta)))
        t = beta / se
        p = 2.0 * stats.t.sf(np.abs(t), df)
        return {"estimate": beta, "se": se, "df": df, "t": t, "p": p}
