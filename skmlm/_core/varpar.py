"""Variance parameters on lme4's standard-deviation / correlation scale, and the deviance there.

The optimiser works on ``theta`` (the entries of each factor's relative Cholesky factor
``T``, covariance ``sigma^2 T T'``). Inference reports the parameters a reader knows:
per factor, in ``theta``'s order (lower triangle column by column), the standard
deviation of each term where ``theta`` has a diagonal entry and the correlation of two
terms where it has an off-diagonal one; then ``sigma``. This is lme4's ``"sdcor"``
scale and order (``.sig01``, ``.sig02``, ..., ``.sigma``).

:func:`ml_deviance` is the deviance with beta profiled out but sigma free::

    d(theta, sigma) = log det(Lambda'Z'WZ Lambda + I) + n log(2 pi sigma^2)
                      + pwrss(theta) / sigma^2 - sum log w

and :func:`reml_deviance` adds ``log det(R_X'R_X) - p log(2 pi sigma^2)``; both reduce to
the profiled criteria of :mod:`.lmm` at ``sigma^2 = pwrss / dof``.
"""

import numpy as np

from .design import split_theta
from .lmm import LOG_2PI


def _psd_cholesky(R):
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed).

    Returns None when ``R`` is not positive semi-definite.
    """
    q = R.shape[0]
    C = np.zeros_like(R)
    for j in range(q):
        d = R[j, j] - C[j, :j] @ C[j, :j]
        if d < -1e-10:
            return None
        C[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, q):
            off = R[i, j] - C[i, :j] @ C[j, :j]
            if C[j, j] > 0:
                C[i, j] = off / C[j, j]
            elif abs(off) > 1e-10:
                return None
    return C


class VarianceParameters:
    """Conversion between ``(theta, sigma)`` and lme4's sd/cor scale ``phi``.

    Parameters
    ----------
    factors : list of RandomFactor
    has_sigma : bool
        Whether the model has a residual SD (gaussian); the binomial model does not.
    """

    def __init__(self, factors, has_sigma=True):
        self.factors = list(factors)
        self.has_sigma = bool(has_sigma)
        kinds, names, descr = [], [], []
        for f in self.factors:
            rows, cols = f._tri
            for r, c in zip(rows, cols):
                if r == c:
                    kinds.append("sd")
                    descr.append(f"sd_{f.terms[r]}|{f.name}")
                else:
                    kinds.append("cor")
                    descr.append(f"cor_{f.terms[r]}.{f.terms[c]}|{f.name}")
        n = len(kinds)
        names = [f".sig{k + 1:02d}" for k in range(n)]
        if self.has_sigma:
            kinds.append("sigma")
            names.append(".sigma")
            descr.append("sigma")
        self.kinds = np.array(kinds)
        self.names = names
        self.descriptive_names = descr
        self.n_theta = n

    @property
    def size(self):
        return len(self.kinds)

    def lower(self):
        return np.where(self.kinds == "cor", -1.0, 0.0)

    def upper(self):
        return np.where(self.kinds == "cor", 1.0, np.inf)

    def from_theta(self, theta, sigma=1.0):
        """``phi`` (sd's and correlations per factor, then sigma) from ``theta``."""
        out = []
        for f, th in zip(self.factors, split_theta(self.factors, np.asarray(theta, dtype=float))):
            T = f.cholesky_factor(th)
            cov = sigma**2 * (T @ T.T)
            sd = np.sqrt(np.diag(cov))
            with np.errstate(invalid="ignore", divide="ignore"):
                cor = cov / np.outer(sd, sd)
            rows, cols = f._tri
            out.append(np.where(rows == cols, sd[rows], np.nan_to_num(cor[rows, cols])))
        if self.has_sigma:
            out.append([sigma])
        return np.concatenate(out) if out else np.zeros(0)

    def to_theta(self, phi):
        """``(theta, sigma)`` from ``phi``; ``(None, sigma)`` where the correlations are not
        a valid correlation matrix."""
        phi = np.asarray(phi, dtype=float)
        sigma = float(phi[-1]) if self.has_sigma else 1.0
        thetas, start = [], 0
        for f in self.factors:
            part = phi[start : start + f.n_theta]
            start += f.n_theta
            rows, cols = f._tri
            if f.diagonal or f.q == 1:
                thetas.append(part / sigma)
                continue
            R = np.eye(f.q)
            sd = np.zeros(f.q)
            for v, r, c in zip(part, rows, cols):
                if r == c:
                    sd[r] = v
                else:
                    R[r, c] = R[c, r] = v
            C = _psd_cholesky(R)
            if C is None:
                return None, sigma
            T = (sd[:, None] * C) / sigma
            thetas.append(T[rows, cols])
        return np.concatenate(thetas), sigma


def unprofiled_deviance(model, theta, sigma, reml):
    """ML deviance (beta profiled out) or REML criterion at ``(theta, sigma)``; +inf where undefined."""
    if theta is None or not sigma > 0:
        return np.inf
    try:
        dec = model.decompose(theta)
    except np.linalg.LinAlgError:
        return np.inf
    s2 = sigma * sigma
    dof = model.n - model.p if reml else model.n
    dev = dec.logdet_z + dof * (LOG_2PI + np.log(s2)) + dec.pwrss / s2 - model.cp.sum_log_weights
    return float(dev + dec.logdet_x if reml else dev)


def ml_deviance(model, theta, sigma):
    """ML deviance at ``(theta, sigma)``, beta profiled out; +inf where undefined."""
    return unprofiled_deviance(model, theta, sigma, reml=False)


def reml_deviance(model, theta, sigma):
    """REML criterion at ``(theta, sigma)`` (does not depend on beta); +inf where undefined."""
    return unprofiled_deviance(model, theta, sigma, reml=True)
