"""Bounded minimisation of a smooth objective of a few parameters, with a log.

The objective is minimised by L-BFGS-B with its analytic gradient where the caller has
one, else with central differences (one-sided at a bound). Each evaluation is cheap: it
costs nothing in the number of rows. A few Newton steps on a finite-difference Hessian
finish the job, and convergence is judged on the Newton
decrement there (the predicted further improvement, which does not depend on how the
parameters are scaled), not on the optimiser's stopping message: a fit that is at its
optimum is reported as converged.
"""

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from scipy.linalg import lapack
from scipy.optimize import Bounds, minimize


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


def finite_difference_gradient(fun, x, f0, lower, step=1e-6, central=True):
    """Central-difference gradient; forward at a lower bound that a step would cross, or
    throughout with ``central=False`` (half the evaluations, for a rough search)."""
    g = np.empty_like(x)
    for i in range(len(x)):
        h = step * max(1.0, abs(x[i]))
        xp = x.copy()
        xp[i] += h
        fp = fun(xp)
        if central and x[i] - h >= lower[i]:
            xm = x.copy()
            xm[i] -= h
            g[i] = (fp - fun(xm)) / (2 * h)
        else:
            g[i] = (fp - f0) / h
    return g


def _stencil(fun, x, f0, idx, step, cross):
    """``(plus, minus, H, h)``: ``fun`` at ``x +- h_i`` for ``i`` in ``idx``, the Hessian
    over those coordinates (others left 0) and the steps ``h``; see
    :func:`finite_difference_hessian`."""
    k = len(x)
    H, plus, minus = np.zeros((k, k)), np.zeros(k), np.zeros(k)
    h = step * np.maximum(1.0, np.abs(x))

    def at(i, si, j=None, sj=0):
        z = x.copy()
        z[i] += si * h[i]
        if j is not None:
            z[j] += sj * h[j]
        return fun(z)

    for i in idx:
        plus[i], minus[i] = at(i, 1), at(i, -1)
        H[i, i] = (plus[i] - 2 * f0 + minus[i]) / h[i] ** 2
    if cross is None:  # the diagonal only
        return plus, minus, H, h
    for a, i in enumerate(idx):
        for j in idx[a + 1 :]:
            if cross == "forward":
                H[i, j] = (at(i, 1, j, 1) - plus[i] - plus[j] + f0) / (h[i] * h[j])
            else:
                H[i, j] = (at(i, 1, j, 1) - at(i, 1, j, -1) - at(i, -1, j, 1) + at(i, -1, j, -1)) / (4 * h[i] * h[j])
            H[j, i] = H[i, j]
    return plus, minus, H, h


def finite_difference_hessian(fun, x, f0, free, step=1e-4, cross="central"):
    """Central-difference Hessian over the ``free`` coordinates (others left 0).

    ``cross="forward"`` takes each mixed derivative from one more evaluation, at
    ``x + h_i + h_j``, and the ``x + h_i`` the diagonal needed anyway: ``k (k + 3) / 2``
    evaluations instead of ``2 k^2``, with an error of order ``h`` relative, ample for a
    Newton step or a standard error.
    """
    return _stencil(fun, x, f0, np.flatnonzero(free), step, cross)[2]


def stencil_derivatives(fun, x, f0, step=1e-4, mixed=None):
    """Gradient and Hessian from one stencil: ``x +- h_i`` (central gradient and
    diagonal) and ``x + h_i + h_j`` (mixed terms), ``k (k + 3) / 2`` evaluations. Given
    ``mixed`` (a Hessian from before), its off-diagonal terms are kept and only the
    ``2 k`` evaluations of the gradient and the diagonal are made."""
    plus, minus, H, h = _stencil(fun, x, f0, np.arange(len(x)), step, "forward" if mixed is None else None)
    if mixed is not None:
        H = H + mixed - np.diag(np.diag(mixed))
    return (plus - minus) / (2 * h), H


#: Safety factor on the estimated change of the Hessian between two Newton points, which
#: bounds the error of :func:`curved_forward_gradient` (the cubic term's estimate from one
#: point is rough).
CUBIC_SAFETY = 10.0


#: Largest drift of the Hessian over a Newton step (:func:`hessian_drift`), relative to
#: its smallest diagonal entry, for which the next point's gradient is taken by
#: :func:`curved_forward_gradient` on the Hessian before; beyond it, the diagonal is
#: measured again (a start far from the optimum: ``insteval_like``).
CURVATURE_DRIFT = 0.1


def curved_forward_gradient(fun, x, f0, H, step=1e-4):
    """Gradient from ``k`` forward differences, their curvature bias removed with a known
    Hessian: ``g_i = (f(x + h_i) - f0) / h_i - H_ii h_i / 2``.

    After a Newton step the Hessian of the point before serves (its entries change by
    the third derivative times the step): half the evaluations of central differences.
    Returns ``(g, h)``; the error of ``g_i`` is ``h_i / 2`` times the error of ``H_ii``.
    """
    h = step * np.maximum(1.0, np.abs(x))
    g = np.empty(len(x))
    for i in range(len(x)):
        z = x.copy()
        z[i] += h[i]
        g[i] = (fun(z) - f0) / h[i] - 0.5 * H[i, i] * h[i]
    return g, h


def hessian_drift(f_before, g_before, H, s, f_after):
    """A bound on how much the Hessian's entries changed over a step ``s`` from a point
    with value, gradient and Hessian ``f_before, g_before, H`` to one with value
    ``f_after``: the quadratic model misses ``f_after`` by the cubic term ``m`` (about a
    sixth of the third derivative times ``|s|^3``), so the Hessian moved by about
    ``6 |m| / |s|^2`` (times ``CUBIC_SAFETY``)."""
    length2 = float(s @ s)
    if not length2 > 0:
        return 0.0
    miss = f_after - (f_before + float(g_before @ s) + 0.5 * float(s @ H @ s))
    return CUBIC_SAFETY * 6.0 * abs(miss) / length2


def gradient_jacobian(gradient, x, free, lower, step=1e-6, g0=None):
    """Hessian as the central-difference Jacobian of an analytic gradient (forward at a
    bound). Given the gradient ``g0`` at ``x``, forward differences throughout: half the
    gradients, and an error of order ``step`` relative, far below what the Newton
    decrement needs."""
    k = len(x)
    H = np.zeros((k, k))
    every = free.all()
    for i in range(k) if every else np.flatnonzero(free):
        h = step * max(1.0, abs(x[i]))
        xp = x.copy()
        xp[i] += h
        if g0 is not None:
            H[:, i] = (gradient(xp) - g0) / h
        elif x[i] - h >= lower[i]:
            xm = x.copy()
            xm[i] -= h
            H[:, i] = (gradient(xp) - gradient(xm)) / (2 * h)
        else:
            H[:, i] = (gradient(xp) - gradient(x)) / h
    return free_block((H + H.T) / 2, free)


def block_jacobian(gradient, x, g0, blocks, step=1e-6):
    """The Hessian's blocks (coordinates with equal ``blocks`` labels: the parameters of
    one grouping factor) as forward differences of an analytic gradient, one coordinate
    of every block perturbed together: as many gradients as the largest block has
    coordinates, not one per coordinate. The curvature across blocks (two factors'
    parameters together, small next to each factor's own) is taken as 0: it is left out
    of ``H`` and adds, times the ratio of the steps, to the entries within the blocks.
    A rough Hessian, good for a Newton step, not for judging convergence.

    Returns ``(H, complete)``: ``complete()`` gives the whole Hessian of
    :func:`gradient_jacobian` (forward differences) from the gradients taken here and
    one more per coordinate beyond the first of its group (``len(x)`` in all); it is
    None where ``H`` is whole already (one block).
    """
    k = len(x)
    h = step * np.maximum(1.0, np.abs(x))
    members, seen = [], {}  # members[r]: the r-th coordinate of every block
    for i, b in enumerate(blocks.tolist()):
        r = seen[b] = seen.get(b, -1) + 1
        if r == len(members):
            members.append([])
        members[r].append(i)
    same = np.equal.outer(blocks, blocks)
    H = np.zeros((k, k))
    groups = []
    for group in members:
        xp = x.copy()
        xp[group] += h[group]
        d = gradient(xp) - g0
        H[:, group] = np.where(same[:, group], d[:, None], 0.0) / h[group]
        groups.append((group, d))
    H = (H + H.T) / 2
    if len(seen) == 1:
        return H, None

    def complete():
        J = np.empty((k, k))
        for group, d in groups:  # d = sum over the group of (column j) h_j
            rest = d.copy()
            for j in group[1:]:
                xp = x.copy()
                xp[j] += h[j]
                J[:, j] = gradient(xp) - g0
                rest -= J[:, j]
                J[:, j] /= h[j]
            J[:, group[0]] = rest / h[group[0]]
        return (J + J.T) / 2

    return H, complete


def free_block(H, free):
    """``H`` with the rows and columns of coordinates that are not ``free`` set to 0."""
    return H if free.all() else np.where(np.outer(free, free), H, 0.0)


def newton_decrement(g, H, free, flat_tol=1e-8):
    """Predicted decrease of the objective by one Newton step on the free coordinates.

    Returns ``(decrease, step)``. Directions where the objective is flat (the Hessian's
    eigenvalue is ~0 and so is the slope: parameters the data cannot tell apart) add
    nothing; a negative curvature, or a slope along a flat direction, gives +inf: no
    minimum in sight.
    """
    step = np.zeros_like(g)
    if not free.any():
        return 0.0, step
    if free.all():  # the common case: no copies
        g_free, H_free = g, H
    else:
        idx = np.flatnonzero(free)
        g_free, H_free = g[idx], H[np.ix_(idx, idx)]
    if not (np.isfinite(g_free).all() and np.isfinite(H_free).all()):
        return np.inf, step
    # clearly positive definite (the usual case near an optimum): a Cholesky solve
    L, info = lapack.dpotrf(H_free, lower=1)
    if info == 0:
        pivots, trace = np.diagonal(L) ** 2, float(np.trace(H_free))
        # the smallest eigenvalue is at least det / largest^(k-1) >= prod(pivots) / trace^(k-1)
        if float(np.prod(pivots)) > flat_tol * max(1.0, trace) * trace ** (len(pivots) - 1):
            newton = lapack.dpotrs(L, g_free, lower=1)[0]
            step[free] = -newton
            return 0.5 * float(g_free.dot(newton)), step
    lam, vec = np.linalg.eigh(H_free)
    gv = vec.T @ g_free
    tol = flat_tol * max(1.0, float(np.abs(lam).max()))
    flat = np.abs(lam) <= tol
    if lam.min() < -tol or (flat.any() and np.abs(gv[flat]).max() > 1e-4):
        return np.inf, step
    coef = np.where(flat, 0.0, gv / np.where(flat, 1.0, lam))
    step[free] = -(vec @ coef)
    return 0.5 * float(gv @ coef), step


def diagonal_check(fun, x, lower, step=1e-4):
    """Gradient and diagonal Hessian from 2k evaluations; the Newton decrement they give.

    After a derivative-free search the point is usually at the optimum already; this
    confirms it at a third of the cost of a full finite-difference Hessian. Returns
    ``(x, f, g, H, decrease)`` as :func:`polish`; ``decrease`` is +inf where a coordinate
    sits on a bound or curves downward, so that the caller polishes properly.
    """
    f = fun(x)
    k = len(x)
    g, H = np.zeros(k), np.zeros((k, k))
    for i in range(k):
        h = step * max(1.0, abs(x[i]))
        if x[i] - h < lower[i]:
            return x, f, g, H, np.inf
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fp, fm = fun(xp), fun(xm)
        g[i] = (fp - fm) / (2 * h)
        H[i, i] = (fp - 2 * f + fm) / h**2
    d = np.diag(H)
    if not (np.all(np.isfinite(g)) and np.all(d > 0)):
        return x, f, g, H, np.inf
    return x, f, g, H, 0.5 * float(np.sum(g**2 / d))


def free_coordinates(x, lower, g):
    """The coordinates a Newton step may move: all but those at their bound with the
    gradient pushing them out of the domain."""
    return ~((x <= lower + 1e-12) & (g > 0))


def bfgs_update(H, s, y):
    """The BFGS update of a Hessian ``H`` along a step ``s`` whose gradient changed by
    ``y``; None where the curvature along the step is not positive (no update keeps ``H``
    positive definite then)."""
    sy = float(s @ y)
    Hs = H @ s
    sHs = float(s @ Hs)
    if not (sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)) and sHs > 0):
        return None
    return H - np.outer(Hs, Hs) / sHs + np.outer(y, y) / sy


def polish(fun, grad, hess, x, lower, max_steps=10, decrement_tol=1e-7, derivatives=None, update=False,
           final_step=True, first=None):
    """Newton steps on the coordinates off their bounds, accepted while they improve.

    L-BFGS-B on a badly scaled objective (a random slope whose variance is tiny next
    to the intercept's) stops on a flat stretch before the optimum; Newton's method is
    indifferent to the scaling. ``grad(x, f)`` and ``hess(x, f, g, free)`` give the
    derivatives, or ``derivatives(x, f)`` both at once. ``update``: after the first Hessian, BFGS
    updates along each step (with the gradient there) stand in for ``hess`` while every
    coordinate is free: superlinear convergence from the first Hessian, without ``k``
    gradients a step; once the updated Hessian promises convergence, a fresh one judges
    it. Once the decrement is below tolerance, its step is still taken if it is no
    worse: one evaluation for a quadratically converged point (none where the decrement is
    rounding, or with ``final_step=False``: where an evaluation is dear, the at most
    ``decrement_tol`` it gains is not worth it). ``first(x, f)``, if given, gives the
    first point's derivatives as ``(g, H, judge)``, cheaper and good for a step (a Hessian
    by blocks, :func:`block_jacobian`; an inversion in single precision): where they
    promise convergence (or no minimum), ``judge()`` gives the ``(g, H)`` that judge the
    point instead (``judge`` None: they are exact already). At most
    ``max_steps`` steps are taken (that last one counted); after the
    last, the derivatives are evaluated once more to judge the point, and no step is taken
    (``max_steps=0``: the point is judged only). Returns
    ``(x, f, g, H, decrease, steps)``; ``g``, ``H`` and ``decrease`` are those of the
    point before that last step.
    """
    f, steps = fun(x), 0
    H, last = None, None  # last: (step, gradient before it) of an accepted step
    for _ in range(max_steps + 1):
        updated, judge = None, None  # judge: exact derivatives where rough ones promise convergence
        if first is not None and H is None:
            g, H, judge = first(x, f)
            free = free_coordinates(x, lower, g)
        elif derivatives is not None:
            g, H = derivatives(x, f)
            free = free_coordinates(x, lower, g)
        else:
            g = grad(x, f)
            free = free_coordinates(x, lower, g)
            updated = bfgs_update(H, last[0], g - last[1]) if update and last is not None and free.all() else None
            H = updated if updated is not None else hess(x, f, g, free)
        decrease, step = newton_decrement(g, H, free)
        if judge is not None and not decrement_tol < decrease < np.inf:  # rough derivatives judge no point
            g, H = judge()
            free = free_coordinates(x, lower, g)
            decrease, step = newton_decrement(g, H, free)
        if updated is not None and not decrease > decrement_tol:
            # an updated Hessian promises convergence: a fresh one judges (an updated one is
            # right along the steps only, and misses a flat direction off them: a variance going to 0)
            H = hess(x, f, g, free)
            decrease, step = newton_decrement(g, H, free)
        if final_step and decrement_tol >= decrease > ROUNDING * max(1.0, abs(f)) and steps < max_steps:
            cand = np.maximum(x + step, lower)  # converged: one last step for precision
            fc = fun(cand)
            if fc <= f + 1e-14 * abs(f):  # no worse, up to rounding
                x, f, steps = cand, fc, steps + 1
            break
        if decrease <= decrement_tol or not np.isfinite(decrease) or steps >= max_steps:
            break
        t, improved = 1.0, False
        while t > 1e-4:
            cand = np.maximum(x + t * step, lower)
            fc = fun(cand)
            if fc < f:
                last = (cand - x, g)
                x, f, improved, steps = cand, fc, True, steps + 1
                break
            t /= 2
        if not improved:
            break
    return x, f, g, H, decrease, steps


#: A Newton decrement below this, relative to the objective, is rounding: the step it
#: promises is not worth its evaluation.
ROUNDING = 1e-13

#: Length of quasi_newton's first step (and of one after a restart), before BFGS has a
#: scale: short, as the search starts near the optimum (parameters are of order 1).
FIRST_STEP = 0.1


def quasi_newton(fun_and_grad, x, max_iter, hessian=None, gtol=1e-6, ftol=1e-12):
    """BFGS with a backtracking line search, for a few parameters without bounds.

    scipy's L-BFGS-B spends ~30 us per evaluation on its own bookkeeping, this loop ~20
    (``benchmarks/micro.py``): on a small model that is as much as the evaluation. ``fun_and_grad(x)`` returns
    ``(f, g)``, with ``f = +inf`` where undefined. Stops when the largest gradient entry
    is below ``gtol``, or when an iteration improves ``f``, or is predicted to, by less
    than ``ftol`` relative; :func:`polish` then judges convergence. ``hessian(x, g)``,
    if given, sets the first inverse Hessian (else a short step along the gradient).
    Returns ``(x, n_iter, message)``.
    """
    f, g = fun_and_grad(x)
    if not np.isfinite(f):
        return x, 0, "objective undefined at the start"
    k = len(x)

    def gradient_step(g):  # the inverse Hessian of a step of length <= FIRST_STEP along -g
        return np.eye(k) * (FIRST_STEP / max(FIRST_STEP, float(np.linalg.norm(g))))

    H = gradient_step(g)
    if hessian is not None:  # Newton's first step, when the start's curvature is convex
        lam, vec = np.linalg.eigh(hessian(x, g))
        if np.all(np.isfinite(lam)) and lam.min() > 1e-8 * max(1.0, lam.max()):
            H = (vec / lam) @ vec.T
    for n_iter in range(1, max_iter + 1):
        d = -(H @ g)
        slope = float(g @ d)
        if not slope < 0:  # lost its way: restart on the gradient
            H = gradient_step(g)
            d, slope = -(H @ g), -float(g @ H @ g)
        if -slope <= ftol * max(1.0, abs(f)):  # the predicted decrease is rounding noise
            return x, n_iter, "predicted decrease below rounding"
        t = 1.0
        while True:
            x_new = x + t * d
            f_new, g_new = fun_and_grad(x_new)
            if f_new <= f + 1e-4 * t * slope:  # Armijo; False for inf and NaN
                break
            if np.isfinite(f_new):  # minimum of the quadratic through f, slope and f_new
                t_new = -slope * t * t / (2.0 * (f_new - f - slope * t))
                t = min(max(t_new, 0.1 * t), 0.5 * t)
            else:
                t *= 0.1
            if t < 1e-12:
                return x, n_iter, "line search found no decrease"
        s, yv = x_new - x, g_new - g
        sy = float(s @ yv)
        f_old, x, f, g = f, x_new, f_new, g_new
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)):
            if n_iter == 1:
                H = np.eye(k) * (sy / float(yv @ yv))
            Hy = H @ yv
            Hys = Hy[:, None] * s[None, :]
            H = H + ((sy + yv @ Hy) / sy**2) * (s[:, None] * s[None, :]) - (Hys + Hys.T) / sy
        if np.max(np.abs(g)) <= gtol:
            return x, n_iter, "gradient below tolerance"
        if f_old - f <= ftol * max(1.0, abs(f)):
            return x, n_iter, "no further decrease"
    return x, max_iter, "iteration limit reached"


def minimize_bounded(
    fun, x0, lower, gradient=None, derivative_free=False, search_radius=0.25, scale=None, stationary=None,
    max_iter=1000, tol=1e-10, decrement_tol=1e-6, verbose=0, newton_first=False, hessian=None, blocks=None,
    final_step=True, rough_derivatives=None,
):
    """Minimise ``fun`` subject to ``x >= lower``.

    Parameters
    ----------
    fun : callable
        Objective of a 1-d float array; may return +inf where undefined.
    x0, lower : ndarray
        Start and lower bounds (``-inf`` where unbounded).
    gradient : callable, optional
        Analytic gradient of ``fun`` (NaN where ``fun`` is +inf); finite differences
        when None.
    derivative_free : bool
        Without a gradient, search with COBYQA (Powell's derivative-free trust-region
        method, as lme4's BOBYQA) instead of L-BFGS-B on finite differences: fewer
        evaluations, at a fixed cost per step that pays off when evaluations are dear.
    search_radius : float
        COBYQA's initial trust-region radius: smaller when ``x0`` is a good guess.
    stationary : ndarray, optional
        Values at which a coordinate is a stationary point whatever the others (a
        variance parameter at 0; NaN for none): a search that ends on one is probed off
        it and restarted. Default: the finite lower bounds.
    scale : ndarray, optional
        Typical sizes of the parameters: the search runs on ``x / scale``, where all
        are of similar size (the Newton decrement, and so convergence, is unaffected).
    max_iter : int
        Largest number of iterations, all counted: Newton steps (the first ones and the
        polishing ones), BFGS, L-BFGS-B and COBYQA iterations, over every restart.
        Evaluations that only judge a point (derivatives at the end) are not
        iterations. A search stopped by it reports ``converged`` only if the point where
        it stopped passes the convergence test.
    tol : float
        Relative change of the objective below which L-BFGS-B stops.
    decrement_tol : float
        Largest predicted further decrease of ``fun`` (the Newton decrement over the
        coordinates off their bounds) accepted as converged.
    verbose : int
        Print each evaluation when > 0.
    newton_first : bool
        Without a gradient, when ``x0`` is near the optimum: first try Newton steps on
        finite differences (a full stencil, then forward differences on its Hessian,
        :func:`curved_forward_gradient`, or where the Hessian moved over the step, the
        gradient and diagonal again with the mixed terms kept); COBYQA only if they do
        not converge. (With an analytic
        gradient and no bounds, Newton steps always come first, on BFGS updates of the
        first Hessian; BFGS only where they stop short.)
    hessian : callable, optional
        Exact Hessian of ``fun`` (with ``gradient``): Newton steps use it as it is, and
        neither finite differences nor BFGS updates are made.
    blocks : ndarray, optional
        A label per parameter (its grouping factor): with a gradient and no bounds, the
        first Newton step is taken on the Hessian's blocks alone (:func:`block_jacobian`).
    final_step : bool
        With a gradient and no bounds, whether the Newton steps from the start take the
        step of a converged point (:func:`polish`): False where an evaluation is dear.
    rough_derivatives : callable, optional
        With a gradient, a Hessian and no bounds: ``(gradient, Hessian)`` at the start,
        cheaper than ``gradient`` and ``hessian`` and good for the first Newton step (they
        judge no point: :func:`polish`).
    """
    if scale is not None:
        return _minimize_scaled(
            fun, x0, lower, gradient, np.asarray(scale, dtype=float), derivative_free=derivative_free,
            search_radius=search_radius, stationary=stationary, max_iter=max_iter, tol=tol,
            decrement_tol=decrement_tol, verbose=verbose, newton_first=newton_first, hessian=hessian,
            blocks=blocks, final_step=final_step, rough_derivatives=rough_derivatives,
        )
    log = []
    lower = np.asarray(lower, dtype=float)

    def logged(x):
        f = fun(x)
        log.append((x.copy(), f))
        if verbose:
            print(f"[skmlm] eval {len(log):4d}  objective {f:.10f}  theta {np.array2string(x, precision=6)}")
        return f

    if gradient is None:
        grad = lambda x, f: finite_difference_gradient(logged, x, f, lower)  # noqa: E731
        hess = lambda x, f, g, free: finite_difference_hessian(logged, x, f, free, cross="forward")  # noqa: E731
    else:
        grad = lambda x, f: gradient(x) if np.isfinite(f) else np.full_like(x, np.nan)  # noqa: E731
        if hessian is None:
            hess = lambda x, f, g, free: gradient_jacobian(  # noqa: E731
                gradient, x, free, lower, g0=g if not np.isfinite(lower).any() else None
            )
        else:
            hess = lambda x, f, g, free: free_block(hessian(x), free)  # noqa: E731

    def with_gradient(x):
        f = logged(x)
        if gradient is None:  # the search's own: forward differences, polish refines
            return f, finite_difference_gradient(logged, x, f, lower, central=False)
        return f, grad(x, f)

    unbounded_gradient = gradient is not None and not np.isfinite(lower).any()
    x, n_iter, message = np.asarray(x0, dtype=float), 0, "Newton steps"
    for attempt in range(MAX_RESTARTS + 1):
        decrease, judged = np.inf, False  # judged: f, g, H and decrease are those at x
        if attempt == 0 and (unbounded_gradient or (derivative_free and gradient is None and newton_first)):
            # Newton first: from a start near the optimum it converges in a few steps
            if unbounded_gradient:
                first = None
                if blocks is not None and hessian is None:
                    def first(z, fz):  # the Hessian by blocks; completed from its gradients to judge
                        gz = grad(z, fz)
                        Hz, complete = block_jacobian(gradient, z, gz, blocks)
                        return gz, Hz, None if complete is None else (lambda: (gz, complete()))
                elif rough_derivatives is not None and hessian is not None:
                    def first(z, fz):  # cheaper derivatives; the exact ones judge
                        def judge():
                            gz = grad(z, fz)
                            return gz, hess(z, fz, gz, free_coordinates(z, lower, gz))

                        return (*rough_derivatives(z), judge)
                x, f, g, H, decrease, steps = polish(
                    logged, grad, hess, x, lower, max_steps=min(QUASI_NEWTON_FIRST_STEPS, max_iter),
                    decrement_tol=decrement_tol, update=hessian is None, final_step=final_step, first=first,
                )
            else:  # a full stencil, then forward differences on its Hessian
                before = []  # (point, value, gradient, Hessian) of the last stencil

                def stencil(z, fz):
                    if not before:
                        g, H = stencil_derivatives(logged, z, fz)
                    else:
                        z0, f0, g0, H = before[-1]
                        drift = hessian_drift(f0, g0, H, z - z0, fz)
                        if drift <= CURVATURE_DRIFT * np.abs(np.diag(H)).min():
                            # the Hessian kept is the point before's: its drift over the
                            # step bounds the error of g, added to |g| so that convergence
                            # is judged on the worst case
                            g, h = curved_forward_gradient(logged, z, fz, H)
                            g = g + np.copysign(0.5 * h * drift, g)
                        else:  # the curvature moved: its diagonal measured again
                            g, H = stencil_derivatives(logged, z, fz, mixed=H)
                    before[:] = [(z.copy(), fz, g, H)]
                    return g, H

                x, f, g, H, decrease, steps = polish(
                    logged, None, None, x, lower, max_steps=min(NEWTON_FIRST_STEPS, max_iter),
                    decrement_tol=decrement_tol, derivatives=stencil, final_step=False,
                )
            n_iter, judged = n_iter + steps, True
        left = max_iter - n_iter
        if not decrease <= decrement_tol and left > 0:
            if derivative_free and gradient is None:
                res = minimize(
                    logged, x, method="COBYQA", bounds=Bounds(lower, np.inf),
                    options={"maxfev": 100 * max_iter, "maxiter": left, "initial_tr_radius": search_radius,
                             "final_tr_radius": 1e-5},
                )
            elif unbounded_gradient:
                if hessian is not None:
                    first_hessian = lambda z, g: hessian(z)  # noqa: E731
                else:
                    first_hessian = lambda z, g: gradient_jacobian(gradient, z, np.ones(len(z), bool), lower, g0=g)  # noqa: E731
                x_end, nit, msg = quasi_newton(with_gradient, x, left, hessian=first_hessian)
                res = SimpleNamespace(x=x_end, nit=nit, message=msg)
            else:
                bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
                res = minimize(
                    with_gradient, x, jac=True, method="L-BFGS-B", bounds=bounds,
                    options={"maxiter": left, "ftol": tol, "gtol": 1e-4, "maxcor": 20},
                )
            n_iter, message, judged = n_iter + int(res.nit), str(res.message), False
            x = np.maximum(res.x, lower)
            if derivative_free and gradient is None:  # COBYQA ends near the optimum: check cheaply
                x, f, g, H, decrease = diagonal_check(logged, x, lower)  # (the full Hessian judges a failure)
        if not decrease <= decrement_tol and not (judged and n_iter >= max_iter):
            # Newton steps while iterations are left; with none, the point is judged only
            x, f, g, H, decrease, steps = polish(
                logged, grad, hess, x, lower, max_steps=min(POLISH_STEPS, max_iter - n_iter)
            )
            n_iter += steps
        off = leave_bound(logged, x, f, lower if stationary is None else stationary)
        if off is None:
            break
        x = off
    converged = bool(np.isfinite(f) and decrease <= decrement_tol)
    if not converged and n_iter >= max_iter:
        message = f"iteration limit reached (max_iter={max_iter})"
    return OptimizeResult(x, f, converged, n_iter, len(log), g, H, message, log)


def _minimize_scaled(fun, x0, lower, gradient, scale, **options):
    """:func:`minimize_bounded` on ``x / scale``, with results mapped back to ``x``."""
    scaled_gradient = None if gradient is None else (lambda z: gradient(z * scale) * scale)
    outer = np.outer(scale, scale)
    if options.get("hessian") is not None:
        hessian = options["hessian"]
        options["hessian"] = lambda z: hessian(z * scale) * outer
    if options.get("rough_derivatives") is not None:
        rough = options["rough_derivatives"]

        def scaled_rough(z):
            g, H = rough(z * scale)
            return g * scale, H * outer

        options["rough_derivatives"] = scaled_rough
    if options.get("stationary") is not None:
        options["stationary"] = np.asarray(options["stationary"], dtype=float) / scale
    res = minimize_bounded(
        lambda z: fun(z * scale), np.asarray(x0, dtype=float) / scale, np.asarray(lower, dtype=float) / scale,
        gradient=scaled_gradient, **options,
    )
    res.x = res.x * scale
    res.gradient = res.gradient / scale
    res.hessian = res.hessian / np.outer(scale, scale)
    res.log = [(z * scale, f) for z, f in res.log]
    return res


def snap_to_bounds(fun, x, f, lower, tol):
    """``x`` with entries within ``tol`` of their lower bound set onto it, where no worse.

    A search without bounds approaches a variance of 0 only asymptotically; lme4 reports
    such a fit with the variance exactly 0. Returns ``(x, f)``.
    """
    near = (x > lower) & (x - lower < tol)
    if not near.any():
        return x, f
    cand = np.where(near, lower, x)
    fc = fun(cand)
    return (cand, fc) if fc <= f + 1e-10 * max(1.0, abs(f)) else (x, f)


#: Newton steps tried from the start before the main search (BFGS, or COBYQA without a
#: gradient) takes over.
NEWTON_FIRST_STEPS = 4

#: The same with an analytic gradient, where after the first step the Hessian is updated
#: (BFGS) rather than recomputed: a step costs one evaluation and one gradient.
QUASI_NEWTON_FIRST_STEPS = 8

#: Newton steps after the main search (BFGS, L-BFGS-B or COBYQA), while iterations are left.
POLISH_STEPS = 10

#: How often the optimiser is restarted off a bound where it stalled.
MAX_RESTARTS = 3

#: Distances off a bound tried before accepting a point on it.
BOUND_PROBES = (1.0, 0.1, 0.01, 0.001)


def leave_bound(fun, x, f, anchors):
    """A better point off the anchors than ``x``, or None when every probe is worse.

    A variance parameter of exactly 0 is a stationary point of the profiled deviance:
    its gradient there vanishes even when the optimum lies elsewhere, so a gradient
    method that steps onto it (a bound, or in a search without bounds a first step that
    lands on 0) can stay there. Before a point on an anchor (a finite entry of
    ``anchors``) is accepted, the coordinates on it are moved off by each of
    ``BOUND_PROBES``, together and, where several are on it, each alone; the best point
    that improves on ``f`` is returned to restart from.
    """
    at_bound = np.abs(x - anchors) <= 1e-12  # False where the anchor is NaN (none)
    if not at_bound.any():
        return None
    # all of them together, and with several, each alone (one variance may belong off its
    # bound while another stays on it, and moving both looks worse than moving neither)
    moves = [at_bound] + ([np.eye(len(x), dtype=bool)[i] for i in np.flatnonzero(at_bound)] if at_bound.sum() > 1 else [])
    best, best_f = None, f
    for move in moves:
        for t in BOUND_PROBES:
            cand = x.copy()
            cand[move] = anchors[move] + t
            fc = fun(cand)
            if fc < best_f - 1e-10 * max(1.0, abs(best_f)):
                best, best_f = cand, fc
    return best
