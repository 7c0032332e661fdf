"""Standard units for a GLMM's search, so that a fit does not depend on the data's units.

The user's parameters are ``x = [theta, beta, log(dispersion)]`` on the scale of the
columns given. The search runs on a design in standard units:

* each column of ``X`` divided by its root mean square (``beta`` scales inversely);
* each factor's random-effect covariates ``z = z' A``: over their root mean square, and,
  for a factor with an intercept and correlated slopes, slopes centred at their means
  (``z'_j = (z_j - m_j) / s_j``), which decorrelates the intercept from the slopes as
  the linear model's search does (lme4's is left with a correlation near -1 where a
  slope's covariate is far from 0).

Then ``b' = A b`` and the relative covariance ``T' T'^T = A T T^T A^T``: ``T'`` is the
lower-triangular factor of ``A T`` (an LQ decomposition, which also serves a singular
``T``). The map is linear in ``beta`` and the dispersion, smooth in ``theta``.
"""

import numpy as np

from .design import RandomFactor, split_theta


def _rms(a):
    """Root mean square of each column of ``a`` (1 for a column of zeros)."""
    r = np.sqrt(np.einsum("ij,ij->j", a, a) / max(1, len(a)))
    r[r == 0] = 1.0
    return r


def lower_factor(M):
    """The lower-triangular ``L`` with non-negative diagonal and ``L L' = M M'``."""
    if M.shape[0] == 1:
        return np.abs(M)
    L = np.linalg.qr(M.T, mode="r").T
    return L * np.where(np.diag(L) < 0, -1.0, 1.0)[None, :]


#: The map of a random intercept alone (read-only, shared).
_IDENTITY = np.eye(1)
_IDENTITY.flags.writeable = False


def _covariate_map(f):
    """``A`` with ``z = z' A`` (see the module docstring) for one factor."""
    if f.terms == ["(Intercept)"]:  # a column of ones: already in standard units
        return _IDENTITY
    z = f.z
    if f.q > 1 and not f.diagonal and f.terms[0] == "(Intercept)":
        mean = z.mean(axis=0)
        mean[0] = 0.0
        scale = _rms(z - mean)
        scale[0] = 1.0
        A = np.diag(scale)
        A[0, 1:] = mean[1:]
        return A
    return np.diag(_rms(z))


class StandardUnits:
    """The map between the user's ``x`` and the search's standard ``xs``.

    Parameters
    ----------
    factors : list of RandomFactor
    X : ndarray of shape (n, p)
    n_dispersion : int

    Attributes
    ----------
    factors : list of RandomFactor
        The factors in standard units (``z' = z A^-1``).
    X : ndarray
        ``X`` in standard units.
    linear : bool
        Whether the map is a scaling of each coordinate (no factor centred): then
        ``xs = x * scale``, signs kept (the scalar path's search crosses theta = 0).
    """

    def __init__(self, factors, X, n_dispersion):
        self.user_factors = list(factors)
        self.maps = [_covariate_map(f) for f in factors]
        self.inverse_maps = [A if A is _IDENTITY else np.linalg.inv(A) if A.shape[0] > 1 else 1.0 / A
                             for A in self.maps]
        self.factors = [
            f if A is _IDENTITY else RandomFactor(f.name, f.codes, f.levels, f.z @ Ai, f.terms, f.diagonal)
            for f, A, Ai in zip(factors, self.maps, self.inverse_maps)
        ]
        self.x_scale = _rms(X) if X.shape[1] else np.ones(0)
        self.X = X / self.x_scale
        self.n_theta = sum(f.n_theta for f in factors)
        self.p = X.shape[1]
        self.n_dispersion = n_dispersion
        self.linear = all(A.shape[0] == 1 or np.count_nonzero(A - np.diag(np.diag(A))) == 0 for A in self.maps)
        self.theta_scale = np.concatenate(
            [A.diagonal()[f._tri[0]] for f, A in zip(factors, self.maps)] if factors else [np.zeros(0)]
        )
        #: ``xs = x * scale`` where the map is linear (a scaling of each coordinate)
        self.scale = np.concatenate([self.theta_scale, self.x_scale, np.ones(n_dispersion)])

    def _map_theta(self, theta, maps, source, target):
        """``T' = lower_factor(A T)`` per factor (centred factors: not a mere scaling)."""
        out = []
        for f, g, A, th in zip(source, target, maps, split_theta(source, np.asarray(theta, dtype=float))):
            out.append(g.theta_from_cholesky(lower_factor(A @ f.cholesky_factor(th))))
        return np.concatenate(out) if out else np.zeros(0)

    def to_search(self, x):
        """``xs`` from the user's ``x``."""
        x = np.asarray(x, dtype=float)
        if self.linear:
            return x * self.scale
        nt, p = self.n_theta, self.p
        theta = self._map_theta(x[:nt], self.maps, self.user_factors, self.factors)
        return np.concatenate([theta, x[nt : nt + p] * self.x_scale, x[nt + p :]])

    def from_search(self, xs):
        """The user's ``x`` from ``xs``."""
        xs = np.asarray(xs, dtype=float)
        if self.linear:
            return xs / self.scale
        nt, p = self.n_theta, self.p
        theta = self._map_theta(xs[:nt], self.inverse_maps, self.factors, self.user_factors)
        return np.concatenate([theta, xs[nt : nt + p] / self.x_scale, xs[nt + p :]])

    def jacobian(self, x, step=1e-6):
        """``d xs / d x`` at ``x``: diagonal where the map is a scaling; the theta block by
        central differences of the closed-form map where a factor is centred (a map of a
        few numbers, so its derivative is as exact as rounding allows)."""
        if self.linear:
            return np.diag(self.scale)
        x = np.asarray(x, dtype=float)
        nt = self.n_theta
        J = np.diag(np.concatenate([np.ones(nt), self.x_scale, np.ones(self.n_dispersion)]))
        for k in range(nt):
            h = step * max(1.0, abs(x[k]))
            xp, xm = x.copy(), x.copy()
            xp[k] += h
            xm[k] -= h
            J[:nt, k] = (self.to_search(xp)[:nt] - self.to_search(xm)[:nt]) / (2 * h)
        return J
