"""Likelihood profiles and profile confidence intervals of a linear or generalized linear
mixed model (lme4's ``profile`` / ``confint(method = "profile")``).

For one parameter ``psi`` (a fixed effect, or a variance parameter on the sd/cor scale of
:mod:`.varpar`) the profile is the signed square root of the deviance increase::

    zeta(v) = sign(v - psi_hat) sqrt(min { d : psi = v } - d_hat)

with every other parameter re-optimised. The interval at level ``1 - alpha`` is where
``zeta = -+ z_{1 - alpha/2}``. As lme4 does, a REML fit is profiled on its ML refit.

lme4 evaluates ``zeta`` on a grid and interpolates a spline; here each end of the
interval is a root of ``zeta(v) -+ z``, found by bracketing and Brent's method, each
evaluation warm-started from the nearest one already made. No evaluation touches the
data rows:

* a fixed effect ``beta_j = v`` moves ``v x_j`` into an offset: the cross-products of
  ``[X_{-j}, y - v x_j]`` are a linear map of those of ``[X y]``, so the reduced model is
  the profiled ML criterion of :mod:`.lmm` on transformed cross-products, minimised over
  ``theta``;
* a variance parameter fixed at ``v``: the deviance of :func:`.varpar.ml_deviance` is
  minimised over the other sd's, correlations and sigma.

A GLMM (:class:`GeneralizedProfiler`) has no profiled-out parameters: its Laplace (or AGQ)
deviance is minimised over every other coordinate of ``[theta, beta, log(dispersion)]``.
"""

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

from .derived import derived_model
from .optimize import finite_difference_hessian, minimize_bounded
from .varpar import VarianceParameters, ml_deviance


def ml_version(model):
    """The ML criterion of a :class:`~.lmm.LinearMixedModel` (the same cross-products)."""
    return model if not model.reml else derived_model(model, reml=False)


def fit_theta(model, theta0):
    """Minimise the profiled criterion of ``model`` from ``theta0``; returns (theta, deviance)."""
    opt = minimize_bounded(
        model.objective, np.asarray(theta0, dtype=float), model.theta_lower,
        gradient=model.gradient if model.has_gradient else None, derivative_free=model.costly_evaluation,
    )
    return opt.x, opt.fun


def with_offset_column(model, j, value):
    """The model with fixed effect ``j`` held at ``value``: ``X`` loses column ``j`` and
    ``y`` becomes ``y - value x_j``, by a linear map of the cross-products."""
    p = model.p
    keep = [i for i in range(p) if i != j]
    M = np.zeros((p + 1, p))
    M[keep, np.arange(p - 1)] = 1.0
    M[p, p - 1] = 1.0
    M[j, p - 1] = -value
    return derived_model(model, xy_map=M)


def _minimize_smooth(fun, x0, lower, upper, scale):
    """L-BFGS-B on ``fun`` in scaled coordinates with a central-difference gradient."""
    x0 = np.asarray(x0, dtype=float)
    if x0.size == 0:
        return x0, fun(x0)
    lo, hi = lower / scale, upper / scale
    bounds = [(a if np.isfinite(a) else None, b if np.isfinite(b) else None) for a, b in zip(lo, hi)]

    def f(z):
        return fun(z * scale)

    def fg(z):
        f0 = f(z)
        g = np.empty_like(z)
        for i in range(len(z)):
            h = 1e-6 * max(1.0, abs(z[i]))
            zp, zm = z.copy(), z.copy()
            zp[i] = min(z[i] + h, hi[i])
            zm[i] = max(z[i] - h, lo[i])
            fp, fm = f(zp), f(zm)
            if not np.isfinite(fp) and np.isfinite(fm) and zm[i] < z[i]:
                g[i] = (f0 - fm) / (z[i] - zm[i])
            elif not np.isfinite(fm) and np.isfinite(fp) and zp[i] > z[i]:
                g[i] = (fp - f0) / (zp[i] - z[i])
            else:
                g[i] = (fp - fm) / max(zp[i] - zm[i], 1e-300)
        return f0, g

    z0 = np.clip(x0 / scale, lo, hi)
    res = minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-7, "maxcor": 20})
    return res.x * scale, float(res.fun)


def _bracketed_root(f, a, fa, b, fb, xtol, max_iter=50):
    """Root of ``f`` between ``a`` and ``b`` (``fa``, ``fb`` of opposite signs or zero).

    The Illinois variant of regula falsi: secant steps, which converge in a few
    iterations on a nearly linear ``f`` such as a profile ``zeta``, kept inside the
    bracket; a bisection when the bracket fails to shrink.
    """
    if fa == 0:
        return a
    if fb == 0:
        return b
    side = 0
    for _ in range(max_iter):
        c = b - fb * (b - a) / (fb - fa)
        if not (min(a, b) < c < max(a, b)):
            c = 0.5 * (a + b)
        fc = f(c)
        if fc == 0 or abs(b - a) < xtol:
            return c
        if np.sign(fc) == np.sign(fb):
            b, fb = c, fc
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb *= 0.5
            side = 1
        if abs(fc) < 1e-9:
            return c
    return c


class Profiler:
    """Profiles of every parameter of a fitted linear mixed model, on the ML deviance.

    Parameters
    ----------
    model : LinearMixedModel
        The core model (ML or REML: a REML model is refitted by ML first, as lme4 does).
    theta : ndarray
        The fitted ``theta`` (a start for the ML refit when ``model`` is REML).
    """

    def __init__(self, model, theta):
        self.model = ml_version(model)
        theta = np.asarray(theta, dtype=float)
        if model.reml:
            theta, _ = fit_theta(self.model, theta)
        est = self.model.estimates(theta)
        self.theta = theta
        self.beta = est["beta"]
        self.sigma = float(np.sqrt(est["sigma2"]))
        self.se_beta = np.sqrt(np.diag(est["cov_beta"]))
        self.d0 = float(est["deviance"])
        self.vp = VarianceParameters(self.model.factors)
        self.phi = self.vp.from_theta(theta, self.sigma)
        self.n_evaluations = 0
        self._phi_se = None

    # -- the deviance on the sd/cor scale --------------------------------------------
    def deviance_phi(self, phi):
        self.n_evaluations += 1
        theta, sigma = self.vp.to_theta(phi)
        return ml_deviance(self.model, theta, sigma)

    def _scale(self):
        s = np.abs(self.phi).copy()
        floor = 1e-3 * self.sigma
        s[self.vp.kinds != "cor"] = np.maximum(s[self.vp.kinds != "cor"], floor)
        s[self.vp.kinds == "cor"] = 1.0
        return s

    def phi_standard_errors(self):
        """Rough standard errors of ``phi`` from the Hessian of the deviance (first steps only)."""
        if self._phi_se is None:
            phi = self.phi
            free = (phi > self.vp.lower() + 1e-8) & (phi < self.vp.upper() - 1e-8)
            H = finite_difference_hessian(self.deviance_phi, phi.copy(), self.d0, free)
            se = np.full(len(phi), np.nan)
            idx = np.flatnonzero(free)
            try:
                Hf = H[np.ix_(idx, idx)]
                cov = 2.0 * np.linalg.inv(Hf)
                se[idx] = np.sqrt(np.clip(np.diag(cov), 0, None))
            except np.linalg.LinAlgError:
                pass
            self._phi_se = se
        return self._phi_se

    # -- profiles ---------------------------------------------------------------------
    def variance_zeta(self, k, value, start):
        """``(zeta, phi at the constrained minimum)`` for variance parameter ``k`` at ``value``."""
        others = np.array([i for i in range(len(self.phi)) if i != k])
        lower, upper, scale = self.vp.lower()[others], self.vp.upper()[others], self._scale()[others]
        lower = np.where(self.vp.kinds[others] == "sigma", 1e-8 * self.sigma, lower)
        full = start.copy()
        full[k] = value

        def fun(x):
            full[others] = x
            return self.deviance_phi(full)

        x, d = _minimize_smooth(fun, start[others], lower, upper, scale)
        full[others] = x
        return self._signed_root(d, value - self.phi[k]), full.copy()

    def fixed_zeta(self, j, value, start):
        """``(zeta, theta at the constrained minimum)`` for fixed effect ``j`` at ``value``."""
        red = with_offset_column(self.model, j, value)
        if red.has_gradient:
            lower = red.theta_lower
            bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]

            def fg(t):
                f = red.objective(t)
                g = red.gradient(t) if np.isfinite(f) else np.full_like(t, np.nan)
                return f, g

            res = minimize(fg, np.maximum(start, lower), jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 500, "ftol": 1e-14, "gtol": 1e-8, "maxcor": 20})
            theta, d = res.x, float(res.fun)
            self.n_evaluations += int(res.nfev)
        else:
            theta, d = _minimize_smooth(red.objective, start, red.theta_lower, np.full(len(start), np.inf),
                                        np.maximum(np.abs(self.theta), 1e-2))
        return self._signed_root(d, value - self.beta[j]), theta

    def _signed_root(self, d, direction):
        return float(np.sign(direction) * np.sqrt(max(d - self.d0, 0.0)))

    def _start(self, which):
        """Where a profile starts: ``theta`` for a fixed effect's, ``phi`` for a variance's."""
        return self.theta.copy() if which == "beta" else self.phi.copy()

    # -- intervals --------------------------------------------------------------------
    def _end(self, zeta_at, center, start, step, target, bound):
        """The value on one side of ``center`` where ``zeta = target`` (or ``bound``)."""
        cache = {center: (0.0, start)}

        def z(v):
            nearest = min(cache, key=lambda u: abs(u - v))
            zv, arg = zeta_at(v, cache[nearest][1])
            cache[v] = (zv, arg)
            return zv

        inside, v = center, center + step
        for _ in range(60):
            if np.isfinite(bound) and (v - bound) * np.sign(step) >= 0:
                v = bound
                zb = z(v)
                if abs(zb) < abs(target):
                    return bound
                break
            zv = z(v)
            if abs(zv) >= abs(target):
                break
            inside = v
            # zeta is close to linear: extrapolate through the centre, a little beyond the target
            ratio = min(4.0, 1.1 * abs(target) / max(abs(zv), 1e-3))
            v = center + (v - center) * max(ratio, 1.1)
        else:  # pragma: no cover - a profile that never reaches the target
            return np.nan
        return _bracketed_root(lambda u: z(u) - target, inside, cache[inside][0] - target, v,
                               cache[v][0] - target, xtol=1e-7 * abs(step))

    def interval(self, which, k, level=0.95):
        """Profile interval of fixed effect (``which="beta"``) or variance parameter ``k``."""
        zc = norm.ppf(0.5 + level / 2.0)
        if which == "beta":
            center = float(self.beta[k])
            se = self.se_beta[k]

            def zeta_at(v, start):
                return self.fixed_zeta(k, v, start)

            start, lo_b, hi_b = self._start(which), -np.inf, np.inf
        else:
            center = float(self.phi[k])
            se = self.phi_standard_errors()[k]
            kind = self.vp.kinds[k]
            if not (np.isfinite(se) and se > 0):
                se = 0.5 * abs(center) if kind != "cor" and center > 0 else 0.2

            def zeta_at(v, start):
                return self.variance_zeta(k, v, start)

            start = self._start(which)
            lo_b, hi_b = self.vp.lower()[k], self.vp.upper()[k]
            if kind == "sigma":
                lo_b = 0.0
        lo_step = -zc * se
        hi_step = zc * se
        if np.isfinite(lo_b):
            lo_step = -min(zc * se, 0.9 * (center - lo_b)) if center - lo_b > 1e-10 else 0.0
        if np.isfinite(hi_b):
            hi_step = min(zc * se, 0.9 * (hi_b - center)) if hi_b - center > 1e-10 else 0.0
        lower = lo_b if lo_step == 0.0 else self._end(zeta_at, center, start, lo_step, -zc, lo_b)
        upper = hi_b if hi_step == 0.0 else self._end(zeta_at, center, start, hi_step, zc, hi_b)
        return lower, upper

    def confint(self, level=0.95, parameters=None):
        """Intervals of every variance parameter then every fixed effect, in lme4's order.

        Returns ``(names, lower, upper)``; ``parameters`` restricts to some of
        ``("variance", "beta")``.
        """
        parameters = ("variance", "beta") if parameters is None else parameters
        lo, hi = [], []
        if "variance" in parameters:
            for k in range(len(self.phi)):
                a, b = self.interval("variance", k, level)
                lo.append(a)
                hi.append(b)
        if "beta" in parameters:
            for j in range(len(self.beta)):
                a, b = self.interval("beta", j, level)
                lo.append(a)
                hi.append(b)
        return np.array(lo), np.array(hi)


def minimize_some(model, x, free, tol=1e-10):
    """Minimise a GLMM's deviance over the coordinates ``free`` of ``x`` (user units), the
    others held; returns ``(x, deviance)``. The search runs in the model's standard
    coordinates, on its analytic gradient where it has one (one grouping factor), else
    on central differences."""
    xs = model.units.to_search(x)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return np.array(x, dtype=float), model.search_objective(xs)
    lower = np.concatenate([model.theta_lower, np.full(len(xs) - model.n_theta, -np.inf)])[idx]

    def fun(z):
        full = xs.copy()
        full[idx] = z
        return full

    if model.has_gradient:
        def fg(z):
            f, g = model.search_value_and_gradient(fun(z))
            return f, (g[idx] if np.isfinite(f) else np.full(len(z), np.nan))

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(fg, np.maximum(xs[idx], lower), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 1000, "ftol": tol, "gtol": 1e-8, "maxcor": 20})
        z, d = res.x, float(res.fun)
    else:
        z, d = _minimize_smooth(lambda z: model.search_objective(fun(z)), xs[idx], lower,
                                np.full(len(idx), np.inf), np.ones(len(idx)))
    return model.units.from_search(fun(z)), d


class GeneralizedProfiler(Profiler):
    """Profiles of the variance parameters (sd/cor) and fixed effects of a fitted GLMM, on
    its Laplace (or AGQ) deviance, every other parameter (the dispersion included)
    re-optimised: lme4's ``profile`` of a ``glmer`` fit.

    Parameters
    ----------
    model : GeneralizedMixedModel
    x : ndarray
        The fitted ``[theta, beta, log(dispersion)]`` (user units).
    cov_beta : ndarray
        The fixed effects' covariance (their standard errors set the first steps).
    """

    def __init__(self, model, x, cov_beta):
        self.model = model
        self.x = np.asarray(x, dtype=float)
        nt = model.n_theta
        self.theta, self.beta = self.x[:nt], self.x[nt : nt + model.p]
        self.sigma = 1.0  # no residual SD: the floor of the sd's scale is 1e-3
        self.se_beta = np.sqrt(np.diag(cov_beta))
        self.d0 = model.objective(self.x)
        self.vp = VarianceParameters(model.factors, has_sigma=False)
        self.phi = self.vp.from_theta(self.theta)
        self.n_evaluations = 0
        self._phi_se = None
        # where every factor has one term, sd = theta: a variance profile fixes a coordinate of x
        self._theta_is_phi = all(f.q == 1 for f in model.factors)

    def deviance_phi(self, phi):
        """The deviance at the sd/cor ``phi``, the fixed effects and dispersion at the fit's."""
        self.n_evaluations += 1
        theta, _ = self.vp.to_theta(phi)
        if theta is None:
            return np.inf
        return self.model.objective(np.concatenate([theta, self.x[len(self.theta) :]]))

    def variance_zeta(self, k, value, start):
        """``(zeta, x at the constrained minimum)`` for variance parameter ``k`` at ``value``."""
        if self._theta_is_phi:
            x = start.copy()
            x[k] = value
            free = np.ones(len(x), dtype=bool)
            free[k] = False
            x, d = minimize_some(self.model, x, free)
            return self._signed_root(d, value - self.phi[k]), x
        # sd's and correlations: the other phi's, the fixed effects and the dispersion free
        nv, nt = len(self.phi), len(self.theta)
        others = np.array([i for i in range(nv) if i != k])
        phi0 = self.vp.from_theta(start[:nt])
        z0 = np.concatenate([phi0[others], start[nt:]])
        lower = np.concatenate([self.vp.lower()[others], np.full(len(start) - nt, -np.inf)])
        upper = np.concatenate([self.vp.upper()[others], np.full(len(start) - nt, np.inf)])
        scale = np.concatenate([self._scale()[others], np.maximum(self.se_beta, 1e-3),
                                np.ones(len(start) - nt - len(self.beta))])

        def assemble(z):
            phi = phi0.copy()
            phi[k] = value
            phi[others] = z[: len(others)]
            theta, _ = self.vp.to_theta(phi)
            return None if theta is None else np.concatenate([theta, z[len(others) :]])

        def fun(z):
            x = assemble(z)
            self.n_evaluations += 1
            return np.inf if x is None else self.model.objective(x)

        z, d = _minimize_smooth(fun, z0, lower, upper, scale)
        return self._signed_root(d, value - self.phi[k]), assemble(z)

    def fixed_zeta(self, j, value, start):
        """``(zeta, x at the constrained minimum)`` for fixed effect ``j`` at ``value``."""
        x = start.copy()
        pos = len(self.theta) + j
        x[pos] = value
        free = np.ones(len(x), dtype=bool)
        free[pos] = False
        x, d = minimize_some(self.model, x, free)
        return self._signed_root(d, value - self.beta[j]), x

    def _start(self, which):
        """Every profile starts from the whole fitted ``x``."""
        return self.x.copy()

    def dispersion_zeta(self, value, start):
        """``(zeta, x at the constrained minimum)`` with ``log(dispersion)`` held at ``value``."""
        x = start.copy()
        x[-1] = value
        free = np.ones(len(x), dtype=bool)
        free[-1] = False
        x, d = minimize_some(self.model, x, free)
        return self._signed_root(d, value - self.x[-1]), x

    def interval(self, which, k, level=0.95):
        """As :meth:`Profiler.interval`; ``which="dispersion"``: the dispersion's interval,
        profiled on its log scale (as glmmTMB), returned on its own scale."""
        if which != "dispersion":
            return super().interval(which, k, level)
        zc = norm.ppf(0.5 + level / 2.0)
        center = float(self.x[-1])
        # a first step from the curvature along log(dispersion) alone (the others held)
        h = 1e-3
        f = [self.model.objective(np.r_[self.x[:-1], center + d]) for d in (-h, h)]
        curvature = (f[0] + f[1] - 2.0 * self.d0) / h**2
        se = np.sqrt(2.0 / curvature) if np.isfinite(curvature) and curvature > 0 else 0.5
        ends = [self._end(self.dispersion_zeta, center, self._start(which), s * zc * se, s * zc, np.inf * s)
                for s in (-1.0, 1.0)]
        return tuple(float(np.exp(e)) for e in ends)
