"""Bounded minimisation of a smooth objective of a few parameters, with a log.

The profiled deviance has no closed-form gradient here, so it is differentiated by
central differences (one-sided at a bound) and minimised by L-BFGS-B. Each evaluation
is cheap: it costs nothing in the number of rows. A few Newton steps on a
finite-difference Hessian finish the job, and convergence is judged on the Newton
decrement there (the predicted further improvement, which does not depend on how the
parameters are scaled), not on the optimiser's stopping message: a fit that is at its
optimum is reported as converged.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize


@dataclass
class OptimizeResult:
    x: np.ndarray
    fun: float
    converged: bool
    n_iter: int
    n_evaluations: int
    gradient: np.ndarray
    hessian: np.ndarray
    message: str
    log: list = field(default_factory=list)


def finite_difference_gradient(fun, x, f0, lower, step=1e-6):
    """Central-difference gradient; forward at a lower bound that a step would cross."""
    g = np.empty_like(x)
    for i in range(len(x)):
        h = step * max(1.0, abs(x[i]))
        xp = x.copy()
        xp[i] += h
        fp = fun(xp)
        if x[i] - h >= lower[i]:
            xm = x.copy()
            xm[i] -= h
            g[i] = (fp - fun(xm)) / (2 * h)
        else:
            g[i] = (fp - f0) / h
    return g


def finite_difference_hessian(fun, x, f0, free, step=1e-4):
    """Central-difference Hessian over the ``free`` coordinates (others left 0)."""
    k = len(x)
    H = np.zeros((k, k))
    h = step * np.maximum(1.0, np.abs(x))
    idx = np.flatnonzero(free)

    def at(i, si, j=None, sj=0):
        z = x.copy()
        z[i] += si * h[i]
        if j is not None:
            z[j] += sj * h[j]
        return fun(z)

    for a, i in enumerate(idx):
        H[i, i] = (at(i, 1) - 2 * f0 + at(i, -1)) / h[i] ** 2
        for j in idx[a + 1 :]:
            H[i, j] = H[j, i] = (at(i, 1, j, 1) - at(i, 1, j, -1) - at(i, -1, j, 1) + at(i, -1, j, -1)) / (4 * h[i] * h[j])
    return H


def newton_decrement(g, H, free, flat_tol=1e-8):
    """Predicted decrease of the objective by one Newton step on the free coordinates.

    Returns ``(decrease, step)``. Directions where the objective is flat (the Hessian's
    eigenvalue is ~0 and so is the slope: parameters the data cannot tell apart) add
    nothing; a negative curvature, or a slope along a flat direction, gives +inf: no
    minimum in sight.
    """
    step = np.zeros_like(g)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return 0.0, step
    lam, vec = np.linalg.eigh(H[np.ix_(idx, idx)])
    gv = vec.T @ g[idx]
    scale = max(1.0, float(np.abs(lam).max()))
    flat = np.abs(lam) <= flat_tol * scale
    if np.any(lam < -flat_tol * scale) or np.any(np.abs(gv[flat]) > 1e-4):
        return np.inf, step
    coef = np.where(flat, 0.0, gv / np.where(flat, 1.0, lam))
    step[idx] = -(vec @ coef)
    return 0.5 * float(gv @ coef), step


def polish(fun, x, lower, max_steps=10, decrement_tol=1e-7):
    """Newton steps on the coordinates off their bounds, accepted while they improve.

    L-BFGS-B on a badly scaled objective (a random slope whose variance is tiny next
    to the intercept's) stops on a flat stretch before the optimum; Newton's method is
    indifferent to the scaling. Returns ``(x, f, g, H, decrease)`` at the last point.
    """
    f = fun(x)
    for _ in range(max_steps + 1):
        g = finite_difference_gradient(fun, x, f, lower)
        free = ~((x <= lower + 1e-12) & (g > 0))
        H = finite_difference_hessian(fun, x, f, free)
        decrease, step = newton_decrement(g, H, free)
        if decrease <= decrement_tol or not np.isfinite(decrease):
            break
        t, improved = 1.0, False
        while t > 1e-4:
            cand = np.maximum(x + t * step, lower)
            fc = fun(cand)
            if fc < f:
                x, f, improved = cand, fc, True
                break
            t /= 2
        if not improved:
            break
    return x, f, g, H, decrease


def minimize_bounded(fun, x0, lower, max_iter=1000, tol=1e-12, decrement_tol=1e-6, verbose=0):
    """Minimise ``fun`` subject to ``x >= lower``.

    Parameters
    ----------
    fun : callable
        Objective of a 1-d float array; may return +inf where undefined.
    x0, lower : ndarray
        Start and lower bounds (``-inf`` where unbounded).
    max_iter : int
        Largest number of L-BFGS-B iterations.
    tol : float
        Relative change of the objective below which L-BFGS-B stops.
    decrement_tol : float
        Largest predicted further decrease of ``fun`` (the Newton decrement over the
        coordinates off their bounds) accepted as converged.
    verbose : int
        Print each evaluation when > 0.
    """
    log = []
    lower = np.asarray(lower, dtype=float)
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]

    def logged(x):
        f = fun(x)
        log.append((x.copy(), f))
        if verbose:
            print(f"[skmlm] eval {len(log):4d}  objective {f:.10f}  theta {np.array2string(x, precision=6)}")
        return f

    def with_gradient(x):
        f = logged(x)
        return f, finite_difference_gradient(logged, x, f, lower)

    res = minimize(
        with_gradient, np.asarray(x0, dtype=float), jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-8, "maxcor": 20},
    )
    x, f, g, H, decrease = polish(logged, np.maximum(res.x, lower), lower)
    converged = bool(np.isfinite(f) and decrease <= decrement_tol)
    return OptimizeResult(x, f, converged, int(res.nit), len(log), g, H, str(res.message), log)
