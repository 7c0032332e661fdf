"""The profiled deviance at a fixed theta against a dense, obviously correct computation."""

import numpy as np
import pytest

from skmlm._core.blocks import batched_cholesky, batched_solve_lower, batched_solve_upper_t
from skmlm._core.design import RandomFactor, split_theta
from skmlm._core.lmm import LinearMixedModel
from skmlm._core.statistics import LinearMixedStatistics


def statistics(factors, X, y, w):
    return LinearMixedStatistics.from_rows(factors, X, y, w)


def dense_inputs(stats):
    """What :class:`DenseGradient` reads of the statistics: ``(Z'WZ, Z'W[X y], [X y]'W[X y], n)``."""
    every = range(len(stats.factors))
    return stats.random_cross_dense(every), stats.random_x_cross(every), stats.xy_cross, stats.n


def lmm(factors, X, y, w, reml):
    """The core model of rows, through their statistics."""
    return LinearMixedModel(statistics(factors, X, y, w), reml)


def dense_deviance(factors, theta, X, y, w, reml):
    """-2 log-likelihood of y ~ N(X beta, sigma^2 (Z Lambda Lambda' Z' + W^-1)), profiled."""
    n, p = X.shape
    zl = []
    for f, th in zip(factors, split_theta(factors, theta)):
        Z = f.design_matrix().toarray()
        zl.append(Z @ np.kron(np.eye(f.n_levels), f.cholesky_factor(th)))
    ZL = np.hstack(zl)
    V = ZL @ ZL.T + np.diag(1 / w)
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    dof = n - p if reml else n
    s2 = r @ Vi @ r / dof
    dev = dof * np.log(2 * np.pi * s2) + np.linalg.slogdet(V)[1] + dof
    if reml:
        dev += np.linalg.slogdet(X.T @ Vi @ X)[1]
    return dev, beta, s2


def random_problem(seed, kinds):
    """A small data set with the random-effect structure named by ``kinds``."""
    rng = np.random.default_rng(seed)
    n = 120
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    y = X @ [1.0, 0.5, -2.0] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    factors = []
    for k, (m, slopes, diagonal) in enumerate(kinds):
        codes = rng.integers(0, m, size=n)
        z = np.column_stack([np.ones(n)] + [X[:, 1 + j] for j in range(slopes)])
        terms = ["(Intercept)"] + [f"x{j}" for j in range(slopes)]
        factors.append(RandomFactor(f"g{k}", codes, np.arange(m), z, terms, diagonal))
        y = y + rng.normal(size=m)[codes]
    return factors, X, y, w


KINDS = {
    "intercept": [(8, 0, False)],
    "correlated slopes": [(10, 2, False)],
    "diagonal slopes": [(10, 1, True)],
    "crossed": [(12, 0, False), (7, 1, False)],
    "crossed intercepts": [(12, 0, False), (7, 0, False)],
    "crossed uncorrelated slopes": [(12, 1, True), (7, 0, False)],
    "three factors": [(15, 1, False), (6, 0, False), (4, 0, False)],
    "slopes in the second block": [(20, 0, False), (5, 1, False)],
}


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_deviance_equals_dense_computation(kind, reml):
    factors, X, y, w = random_problem(1, KINDS[kind])
    model = lmm(factors, X, y, w, reml)
    rng = np.random.default_rng(2)
    for _ in range(3):
        theta = model.theta_start + rng.uniform(-0.4, 0.4, size=len(model.theta_start))
        theta = np.maximum(theta, model.theta_lower)
        expected, beta, s2 = dense_deviance(factors, theta, X, y, w, reml)
        assert model.objective(theta) == pytest.approx(expected, rel=1e-10)
        est = model.estimates(theta)
        np.testing.assert_allclose(est["beta"], beta, rtol=1e-8)
        assert est["sigma2"] == pytest.approx(s2, rel=1e-8)


def test_dense_block_over_the_memory_share_is_a_clear_error(monkeypatch):
    """The second block is held dense: where it would take more than its share of the
    physical memory, the error names its order, its size and the memory."""
    import skmlm._core.lmm as core

    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 0)
    factors, X, y, w = random_problem(5, KINDS["crossed"])
    model = lmm(factors, X, y, w, False)
    size = model.cp.second_size
    monkeypatch.setattr(core, "physical_memory", lambda: 2 * 8 * size * size - 1)
    with pytest.raises(MemoryError, match=rf"{size} random effects.*dense {size} x {size} matrix.*more memory"):
        model.objective(model.theta_start)
    monkeypatch.setattr(core, "physical_memory", lambda: 2 * 8 * size * size)
    assert np.isfinite(model.objective(model.theta_start))


def test_sparse_products_agree_with_pair_expansion(monkeypatch):
    """Where the pair list would be too long, L21 L21' comes from sparse products."""
    import skmlm._core.coupling as coupling

    factors, X, y, w = random_problem(3, KINDS["three factors"])
    theta = np.array([0.8, 0.3, 0.5, 1.2, 0.4])
    expected = lmm(factors, X, y, w, True).objective(theta)
    monkeypatch.setattr(coupling, "MAX_PAIRS", 0)
    monkeypatch.setattr(coupling, "PAIRS_PER_ENTRY", 0)
    model = lmm(factors, X, y, w, True)
    assert model.cp.second.pairs is None
    assert model.objective(theta) == pytest.approx(expected, rel=1e-12)


def test_sparse_products_reused_while_the_largest_factors_theta_stays(monkeypatch):
    """The coupled square depends on the largest factor's theta only: a step in the other
    factors' thetas reuses it, and the deviance is that of a model evaluated afresh."""
    import skmlm._core.coupling as coupling
    import skmlm._core.lmm as core

    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 0)
    monkeypatch.setattr(coupling, "MAX_PAIRS", 0)
    monkeypatch.setattr(coupling, "PAIRS_PER_ENTRY", 0)
    factors, X, y, w = random_problem(3, KINDS["three factors"])
    theta = np.array([0.8, 0.3, 0.5, 1.2, 0.4])
    other = theta + np.array([0.0, 0.0, 0.0, 0.3, -0.1])  # the last two: the smaller factors'
    model = lmm(factors, X, y, w, True)
    squares = model.cp.second._squares
    model.objective(theta)
    first = squares[-1][1]
    value = model.objective(other)
    assert len(squares) == 1 and squares[-1][1] is first
    assert value == lmm(factors, X, y, w, True).objective(other)
    steps = [theta + np.array([h, 0.0, 0.0, 0.0, 0.0]) for h in (0.1, 0.2, 0.3)]
    moved = [model.objective(t) for t in steps]
    assert moved == [lmm(factors, X, y, w, True).objective(t) for t in steps]
    assert len(squares) == coupling.SQUARES_KEPT and all(s is not first for _, s in squares)  # the oldest left


def test_conditional_modes_equal_dense_blup():
    """b = Lambda Lambda' Z' V^-1 (y - X beta) (times sigma^2 / sigma^2)."""
    factors, X, y, w = random_problem(4, KINDS["crossed"])
    model = lmm(factors, X, y, w, True)
    theta = np.array([0.7, 1.3, 0.2, 0.5])
    est = model.estimates(theta)
    blocks = []
    for f, th in zip(factors, split_theta(factors, theta)):
        lam = np.kron(np.eye(f.n_levels), f.cholesky_factor(th))
        blocks.append((f.design_matrix().toarray(), lam))
    Z = np.hstack([b[0] for b in blocks])
    from scipy.linalg import block_diag

    L = block_diag(*[b[1] for b in blocks])
    V = Z @ L @ L.T @ Z.T + np.diag(1 / w)
    b = L @ L.T @ Z.T @ np.linalg.solve(V, y - X @ est["beta"])
    got = np.concatenate([est["random_effects"][f.name].ravel() for f in factors])
    np.testing.assert_allclose(got, b, rtol=1e-8, atol=1e-10)


def test_batched_routines_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 3, 3))
    spd = a @ np.swapaxes(a, 1, 2) + 3 * np.eye(3)
    L = batched_cholesky(spd)
    np.testing.assert_allclose(L, np.linalg.cholesky(spd), rtol=1e-12)
    b = rng.normal(size=(50, 3, 2))
    np.testing.assert_allclose(batched_solve_lower(L, b), np.linalg.solve(L, b), rtol=1e-10)
    np.testing.assert_allclose(batched_solve_upper_t(L, b), np.linalg.solve(np.swapaxes(L, 1, 2), b), rtol=1e-10)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_analytic_gradient_equals_finite_differences(kind, reml):
    from skmlm._core.optimize import finite_difference_gradient

    factors, X, y, w = random_problem(1, KINDS[kind])
    model = lmm(factors, X, y, w, reml)
    assert model.has_gradient
    theta = model.theta_start + np.random.default_rng(5).uniform(-0.3, 0.3, len(model.theta_start))
    fd = finite_difference_gradient(model.objective, theta, model.objective(theta), model.theta_lower)
    np.testing.assert_allclose(model.gradient(theta), fd, atol=1e-5 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("reml", [False, True])
def test_centred_search_is_the_same_model(reml):
    """The deviance on centred slope covariates at theta_c equals the user's at the mapped theta."""
    from skmlm._core.centring import centre_factors, raw_modes, raw_theta

    factors, X, y, w = random_problem(6, KINDS["correlated slopes"])
    factors[0].z[:, 1:] += 5.0  # slope covariates far from 0
    centred_stats, maps = centre_factors(statistics(factors, X, y, w))
    assert maps[0] is not None
    raw_model = lmm(factors, X, y, w, reml)
    centred_model = LinearMixedModel(centred_stats, reml)
    centred = centred_stats.factors
    theta_c = centred_model.theta_start + np.random.default_rng(0).uniform(-0.3, 0.3, 6)
    theta = raw_theta(centred, maps, split_theta(centred, theta_c))
    assert raw_model.objective(theta) == pytest.approx(centred_model.objective(theta_c), rel=1e-10)
    modes = raw_modes(centred, maps, centred_model.estimates(theta_c)["random_effects"])
    np.testing.assert_allclose(modes["g0"], raw_model.estimates(theta)["random_effects"]["g0"], atol=1e-8)


def test_moment_start_recovers_simulated_covariance():
    """With many levels and rows per level, the moment estimates are near the truth:
    intercept SD 2, slope SD 0.5, correlation 0.5, residual SD 1 (theta relative to it)."""
    from skmlm._core.start import moment_start

    rng = np.random.default_rng(3)
    m, per = 400, 25
    codes = np.repeat(np.arange(m), per)
    x = rng.normal(size=m * per)
    S = np.array([[4.0, 0.5], [0.5, 0.25]])
    b = rng.multivariate_normal([0, 0], S, size=m)
    y = 1 + 0.3 * x + b[codes, 0] + b[codes, 1] * x + rng.normal(size=m * per)
    f = RandomFactor("g", codes, np.arange(m), np.column_stack([np.ones_like(x), x]), ["(Intercept)", "x"])
    theta = moment_start(statistics([f], np.column_stack([np.ones_like(x), x]), y, np.ones_like(y)))
    np.testing.assert_allclose(theta, f.theta_from_cholesky(np.linalg.cholesky(S)), rtol=0.15, atol=0.05)


def assert_start_is_reml_optimum(factors, y):
    """The moment start of ``y ~ 1`` with these random intercepts is the REML optimum."""
    from skmlm._core.optimize import minimize_bounded
    from skmlm._core.start import moment_start

    n = len(y)
    X, w = np.ones((n, 1)), np.ones(n)
    model = lmm(factors, X, y, w, True)
    opt = minimize_bounded(model.objective, np.ones(len(factors)), model.theta_lower, gradient=model.gradient)
    np.testing.assert_allclose(moment_start(statistics(factors, X, y, w)), opt.x, rtol=1e-5)


def test_moment_start_of_balanced_nested_design_is_the_reml_optimum():
    """Casks nested in batches, balanced (as lme4's Pastes): the outer factor's
    coefficients carry the inner spread and the inner ones lose a degree of freedom per
    outer level; corrected for both, the moments are the ANOVA estimates, which are the
    REML optimum of a balanced design."""
    from skmlm._core.start import nesting_parents

    rng = np.random.default_rng(6)
    n_batch, casks, per = 12, 3, 2
    batch = np.repeat(np.arange(n_batch), casks * per)
    cask = np.repeat(np.arange(n_batch * casks), per)
    y = 60 + 1.5 * rng.normal(size=n_batch)[batch] + 3.0 * rng.normal(size=n_batch * casks)[cask] + rng.normal(size=len(batch))
    n = len(y)
    one = np.ones((n, 1))
    factors = [RandomFactor("cask", cask, np.arange(n_batch * casks), one, ["(Intercept)"]),
               RandomFactor("batch", batch, np.arange(n_batch), one.copy(), ["(Intercept)"])]
    assert list(nesting_parents(statistics(factors, one, y, np.ones(n)))) == [0]
    assert_start_is_reml_optimum(factors, y)


@pytest.mark.parametrize("reml", [True, False])
def test_moment_start_of_balanced_one_way_design_is_the_optimum(reml):
    """A balanced one-way design: the moments are the ANOVA estimates (REML) or, with
    the between-level spread over m rather than m - 1 levels, the ML ones."""
    from skmlm._core.optimize import minimize_bounded
    from skmlm._core.start import moment_start

    rng = np.random.default_rng(8)
    m, per = 15, 6
    codes = np.repeat(np.arange(m), per)
    y = 3 + 1.2 * rng.normal(size=m)[codes] + rng.normal(size=m * per)
    n = len(y)
    factors = [RandomFactor("g", codes, np.arange(m), np.ones((n, 1)), ["(Intercept)"])]
    X, w = np.ones((n, 1)), np.ones(n)
    model = lmm(factors, X, y, w, reml)
    start = moment_start(model.statistics, reml)
    opt = minimize_bounded(model.objective, np.ones(1), model.theta_lower, gradient=model.gradient)
    np.testing.assert_allclose(start, opt.x, rtol=1e-5)


def test_moment_start_keeps_off_zero_and_declines_undetermined_levels():
    """No spread between levels still starts off 0 (a stationary point); levels whose own
    regression is undetermined (one row for an intercept and a slope) give no start."""
    from skmlm._core.start import moment_start

    rng = np.random.default_rng(4)
    n = 200
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = 1 + x + rng.normal(size=n)
    codes = np.arange(n) % 10
    f = RandomFactor("g", codes, np.arange(10), np.ones((n, 1)), ["(Intercept)"])
    theta = moment_start(statistics([f], X, y - (np.bincount(codes, y) / np.bincount(codes))[codes] + y.mean(), np.ones(n)))
    assert theta[0] > 0
    one_row = RandomFactor("h", np.arange(n), np.arange(n), X.copy(), ["(Intercept)", "x"])
    assert moment_start(statistics([one_row], X, y, np.ones(n))) is None


def test_bfgs_update_meets_the_secant_condition():
    """The updated Hessian maps the step to the change of gradient, stays symmetric and
    positive definite; no update where the curvature along the step is not positive."""
    from skmlm._core.optimize import bfgs_update

    H = np.array([[2.0, 0.3], [0.3, 1.0]])
    s, y = np.array([0.1, -0.2]), np.array([0.3, -0.1])
    H1 = bfgs_update(H, s, y)
    np.testing.assert_allclose(H1 @ s, y)
    np.testing.assert_allclose(H1, H1.T)
    assert np.all(np.linalg.eigvalsh(H1) > 0)
    assert bfgs_update(H, s, -y) is None


def _coupled_quadratic(coupling=1.0):
    """A smooth function of 5 parameters in blocks (3, 2), its cross-block curvature
    scaled by ``coupling``; its gradient (counting calls) and exact Hessian."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((5, 5))
    A = a @ a.T + 5 * np.eye(5)
    A[:3, 3:] *= coupling
    A[3:, :3] *= coupling
    calls = []

    def fun(x):
        return 0.5 * x @ A @ x + 0.1 * np.sum(x**3)

    def grad(x):
        calls.append(x.copy())
        return A @ x + 0.3 * x**2

    def hess(x):
        return A + np.diag(0.6 * x)

    return fun, grad, hess, calls


def test_block_jacobian_steps_on_the_blocks_and_completes_to_the_whole_hessian():
    """Without curvature across the blocks the rough Hessian is the exact one, from as
    many gradients as the largest block has coordinates (0 across the blocks); with it,
    the completed Hessian is the whole one, from one gradient per coordinate in all; with
    one block the first is whole at once."""
    from skmlm._core.optimize import block_jacobian

    x = np.array([0.3, -0.2, 0.5, 0.1, -0.4])
    blocks = np.array([0, 0, 0, 1, 1])
    same = blocks[:, None] == blocks[None, :]
    fun, grad, hess, calls = _coupled_quadratic(coupling=0.0)
    H, complete = block_jacobian(grad, x, grad(x), blocks)
    assert len(calls) == 1 + 3
    np.testing.assert_allclose(H, hess(x), rtol=1e-5, atol=1e-5)
    assert np.all(H[~same] == 0)

    fun, grad, hess, calls = _coupled_quadratic()
    H, complete = block_jacobian(grad, x, grad(x), blocks)
    assert np.all(H[~same] == 0)
    np.testing.assert_allclose(complete(), hess(x), rtol=1e-5, atol=1e-5)
    assert len(calls) == 1 + 5
    H1, none = block_jacobian(grad, x, grad(x), np.zeros(5, int))  # one block
    assert none is None
    np.testing.assert_allclose(H1, hess(x), rtol=1e-5, atol=1e-5)


def test_rough_first_hessian_steps_but_never_judges():
    """Newton steps from a rough first Hessian reach the optimum a whole one reaches; at
    an optimum from the start, the Hessian judging it is the whole one (completed)."""
    from skmlm._core.optimize import block_jacobian, gradient_jacobian, polish

    fun, grad, hess, calls = _coupled_quadratic()
    blocks = np.array([0, 0, 0, 1, 1])
    lower = np.full(5, -np.inf)

    def whole(x, f, g, free):
        return gradient_jacobian(grad, x, free, lower, g0=g)

    def rough(x, f):
        g = grad(x)
        H, complete = block_jacobian(grad, x, g, blocks)
        return g, H, lambda: (g, complete())

    def gradient(x, f):
        return grad(x)

    x0 = np.array([0.3, -0.2, 0.5, 0.1, -0.4])
    ref = polish(fun, gradient, whole, x0, lower, max_steps=20, update=True)
    out = polish(fun, gradient, whole, x0, lower, max_steps=20, update=True, first=rough)
    assert out[4] <= 1e-7 and ref[4] <= 1e-7
    assert abs(out[1] - ref[1]) <= 1e-9
    at_optimum = out[0]
    judged = polish(fun, gradient, whole, at_optimum, lower, max_steps=20, update=True, first=rough)
    np.testing.assert_allclose(judged[3], hess(judged[0]), rtol=1e-4, atol=1e-4)
    assert np.any(judged[3][:3, 3:] != 0)


def test_newton_first_with_updates_reaches_the_optimum_of_a_slope_model():
    """Newton-first steps on BFGS-updated Hessians end where a search with a fresh
    finite-difference Hessian at every step ends (a random slope far from its start)."""
    from skmlm._core.optimize import minimize_bounded

    factors, X, y, w = random_problem(11, [(15, 1, False)])
    model = lmm(factors, X, y, w, False)
    start = np.array([1.0, 0.0, 1.0]) * model.theta_scale
    unbounded = np.full(3, -np.inf)
    opt = minimize_bounded(model.objective, start, unbounded, gradient=model.gradient, scale=model.theta_scale)
    ref = minimize_bounded(model.objective, start, model.theta_lower, gradient=model.gradient, scale=model.theta_scale)
    assert opt.converged and ref.converged
    assert opt.fun <= ref.fun + 1e-7


def test_finite_difference_schemes_on_a_cubic():
    """The stencil and the cheap-cross Hessian agree with the exact derivatives of a
    smooth function to the order of their step."""
    from skmlm._core.optimize import finite_difference_hessian, stencil_derivatives

    def fun(x):
        return x[0] ** 2 + 3 * x[0] * x[1] + 2 * x[1] ** 2 + 0.1 * x[0] ** 3 + x[2] ** 2 * x[1]

    x = np.array([0.5, -1.0, 2.0])
    g_exact = np.array([2 * x[0] + 3 * x[1] + 0.3 * x[0] ** 2, 3 * x[0] + 4 * x[1] + x[2] ** 2, 2 * x[2] * x[1]])
    H_exact = np.array([[2 + 0.6 * x[0], 3, 0], [3, 4, 2 * x[2]], [0, 2 * x[2], 2 * x[1]]])
    g, H = stencil_derivatives(fun, x, fun(x))
    np.testing.assert_allclose(g, g_exact, atol=1e-6)
    np.testing.assert_allclose(H, H_exact, atol=1e-3)
    H2 = finite_difference_hessian(fun, x, fun(x), np.ones(3, bool), cross="forward")
    np.testing.assert_allclose(H2, H_exact, atol=1e-3)


def test_curved_forward_gradient_and_its_error_bound_on_a_cubic():
    """Forward differences less the known curvature give the gradient to the order of
    the step times the Hessian's error; after a step, the drift estimated from the
    quadratic model's miss bounds the Hessian's change (a quadratic: no drift)."""
    from skmlm._core.optimize import curved_forward_gradient, hessian_drift

    def fun(x):
        return x[0] ** 2 + 3 * x[0] * x[1] + 2 * x[1] ** 2 + 0.1 * x[0] ** 3

    def grad(x):
        return np.array([2 * x[0] + 3 * x[1] + 0.3 * x[0] ** 2, 3 * x[0] + 4 * x[1]])

    def hess(x):
        return np.array([[2 + 0.6 * x[0], 3.0], [3.0, 4.0]])

    x0 = np.array([0.5, -1.0])
    g, h = curved_forward_gradient(fun, x0, fun(x0), hess(x0))
    np.testing.assert_allclose(g, grad(x0), atol=1e-8)
    x1 = x0 + np.array([0.3, -0.2])
    g1, h1 = curved_forward_gradient(fun, x1, fun(x1), hess(x0))  # the Hessian of the point before
    drift = hessian_drift(fun(x0), grad(x0), hess(x0), x1 - x0, fun(x1))
    true_drift = np.abs(np.diag(hess(x1) - hess(x0))).max()
    assert drift >= true_drift
    assert np.all(np.abs(g1 - grad(x1)) <= 0.5 * h1 * drift + 1e-8)
    assert hessian_drift(1.0, np.zeros(2), np.eye(2), np.array([0.1, 0.2]), 1.0 + 0.5 * 0.05) == pytest.approx(0.0)


def test_newton_first_search_reaches_the_derivative_free_optimum(monkeypatch):
    """A crossed design whose evaluations count as costly (no analytic gradient: its
    second block, 150 levels, is put over the bound of the blocked gradient here): the
    search from the moment start (Newton steps on finite differences) ends where COBYQA
    from the one-factor start does, and where the search with the blocked gradient does."""
    import skmlm._core.lmm as core
    from skmlm._core.optimize import minimize_bounded
    from skmlm._core.search import fit_lmm
    from skmlm._core.start import moment_start, one_factor_start

    rng = np.random.default_rng(5)
    n, m1, m2 = 3000, 400, 150
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    c1, c2 = rng.integers(0, m1, n), rng.integers(0, m2, n)
    y = X @ [1.0, 0.5] + rng.normal(size=m1)[c1] + 0.5 * rng.normal(size=m2)[c2] + rng.normal(size=n)
    w = np.ones(n)
    factors = [RandomFactor(f"g{k}", c, np.arange(m), np.ones((n, 1)), ["(Intercept)"])
               for k, (c, m) in enumerate([(c1, m1), (c2, m2)])]
    with_gradient = lmm(factors, X, y, w, True)
    assert with_gradient._blocked_gradient is not None and not with_gradient.costly_evaluation
    _, by_gradient, _ = fit_lmm(statistics(factors, X, y, w), True)
    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 100)
    model = lmm(factors, X, y, w, True)
    assert model.costly_evaluation and not model.has_gradient
    common = dict(scale=model.theta_scale, derivative_free=True)
    start = moment_start(statistics(factors, X, y, w))
    newton = minimize_bounded(model.objective, start, model.theta_lower, search_radius=0.02, newton_first=True, **common)
    cobyqa = minimize_bounded(
        model.objective, one_factor_start(statistics(factors, X, y, w), True), model.theta_lower, search_radius=0.05, **common
    )
    assert newton.converged and cobyqa.converged
    assert newton.fun <= cobyqa.fun + 1e-7
    np.testing.assert_allclose(newton.x, cobyqa.x, atol=1e-4)
    assert by_gradient.converged and by_gradient.fun <= newton.fun + 1e-7
    assert by_gradient.n_evaluations < newton.n_evaluations
    np.testing.assert_allclose(by_gradient.x, newton.x, atol=1e-4)


def scalar_problem(seed, p, slope, weighted):
    """One factor with one random term: an intercept, or a slope alone; p fixed columns."""
    rng = np.random.default_rng(seed)
    n, m = 150, 12
    codes = rng.integers(0, m, size=n)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])[:, :p]
    z = rng.normal(size=(n, 1)) + 0.5 if slope else np.ones((n, 1))
    y = X.sum(axis=1) + rng.normal(size=m)[codes] * z[:, 0] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, size=n) if weighted else np.ones(n)
    f = RandomFactor("g", codes, np.arange(m), z, ["x" if slope else "(Intercept)"])
    return [f], X, y, w


SCALAR_CASES = [(3, False, False), (3, False, True), (1, True, True), (0, False, False), (2, True, False)]


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("p, slope, weighted", SCALAR_CASES)
def test_scalar_path_equals_the_general_paths(p, slope, weighted, reml):
    """One scalar random term goes the closed-form way (:mod:`.scalar_lmm`): its deviance,
    gradient and estimates equal the blocked factorisation's and the dense path's."""
    from skmlm._core.dense_gradient import DenseGradient

    factors, X, y, w = scalar_problem(11, p, slope, weighted)
    model = lmm(factors, X, y, w, reml)
    assert model._scalar and model.has_hessian and model._dense_gradient is None
    dense = DenseGradient(factors, *dense_inputs(statistics(factors, X, y, w)), reml)
    for t in (0.4, 1.3, -0.9):  # the search runs without bounds: t < 0 is the same model
        theta = np.array([t])
        assert model.objective(theta) == pytest.approx(model.deviance_from(model.decompose(theta)), rel=1e-12)
        np.testing.assert_allclose(model.gradient(theta), dense(theta), rtol=1e-9)
    est = model.estimates(np.array([0.8]))
    model._scalar, model._dense_gradient = False, dense
    ref = model.estimates(np.array([0.8]))
    for key in ("beta", "sigma2", "cov_beta", "deviance"):
        np.testing.assert_allclose(est[key], ref[key], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(est["random_effects"]["g"], ref["random_effects"]["g"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("p, slope, weighted", SCALAR_CASES)
def test_scalar_hessian_equals_finite_differences(p, slope, weighted, reml):
    factors, X, y, w = scalar_problem(12, p, slope, weighted)
    model = lmm(factors, X, y, w, reml)
    for t in (0.3, 1.1, -0.7):
        theta, h = np.array([t]), 1e-5
        fd = (model.gradient(theta + h) - model.gradient(theta - h)) / (2 * h)
        np.testing.assert_allclose(model.hessian(theta)[0], fd, rtol=1e-6)


def test_moment_start_of_balanced_crossed_design_is_the_reml_optimum():
    """Plates crossed with samples, every pair once (as lme4's Penicillin): the levels of
    both factors span the constant, so the residual keeps one more degree of freedom than
    their count suggests; with it the moments are the ANOVA estimates, the REML optimum."""
    rng = np.random.default_rng(9)
    n_plate, n_sample = 20, 5
    plate = np.repeat(np.arange(n_plate), n_sample)
    sample = np.tile(np.arange(n_sample), n_plate)
    y = 20 + 0.8 * rng.normal(size=n_plate)[plate] + 2.0 * rng.normal(size=n_sample)[sample] + 0.5 * rng.normal(size=len(plate))
    n = len(y)
    factors = [RandomFactor("plate", plate, np.arange(n_plate), np.ones((n, 1)), ["(Intercept)"]),
               RandomFactor("sample", sample, np.arange(n_sample), np.ones((n, 1)), ["(Intercept)"])]
    assert_start_is_reml_optimum(factors, y)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("slope", [False, True])
def test_scalar_moments_equal_the_level_regressions(slope, reml):
    """The scalar moment start (one random term, from the cross-products) is the estimator
    that the level-by-level regressions over the rows give, imprecise levels left out alike."""
    from skmlm._core.start import moment_start, scalar_moments

    rng = np.random.default_rng(13)
    m = 25
    codes = np.concatenate([np.repeat(np.arange(m - 3), 12), np.arange(m - 3, m)])  # 3 one-row levels
    n = len(codes)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    z = (x + 0.3)[:, None] if slope else np.ones((n, 1))
    y = 1 + x + 0.7 * rng.normal(size=m)[codes] * z[:, 0] + rng.normal(size=n)
    f = RandomFactor("g", codes, np.arange(m), z, ["x" if slope else "(Intercept)"])
    model = lmm([f], X, y, np.ones(n), reml)
    np.testing.assert_allclose(scalar_moments(model.statistics, reml), moment_start(model.statistics, reml), rtol=1e-12)


def test_newton_decrement_cholesky_path_equals_eigen_path():
    """A clearly positive definite Hessian goes the Cholesky way; flat and indefinite ones
    the eigen way. Both give the decrement and step of the free coordinates' Newton step."""
    from skmlm._core.optimize import newton_decrement

    rng = np.random.default_rng(21)
    for k in (1, 2, 4, 7):
        for _ in range(50):
            a = rng.normal(size=(k, k))
            H = a @ a.T + rng.uniform(0.01, 2.0) * np.eye(k)
            g = rng.normal(size=k)
            free = rng.random(k) < 0.8
            decrease, step = newton_decrement(g, H, free)
            idx = np.flatnonzero(free)
            expected = np.zeros(k)
            if idx.size:
                expected[idx] = -np.linalg.solve(H[np.ix_(idx, idx)], g[idx])
            assert decrease == pytest.approx(-0.5 * float(g @ expected), rel=1e-10, abs=1e-14)
            np.testing.assert_allclose(step, expected, rtol=1e-9, atol=1e-12)
    # a flat direction with no slope adds nothing; negative curvature promises no minimum
    decrease, step = newton_decrement(np.array([1e-5, 0.0]), np.diag([1.0, 1e-12]), np.ones(2, bool))
    assert decrease == pytest.approx(5e-11) and step[1] == 0.0
    assert newton_decrement(np.array([1.0, 0.0]), np.diag([1.0, -1.0]), np.ones(2, bool))[0] == np.inf


@pytest.mark.parametrize("chunk", [1 << 18, 3])
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("q1", [1, 2])
def test_pair_expansion_equals_the_explicit_sum(q1, direct, chunk, monkeypatch):
    """``sum_g A_g W_g A_g'`` from the listed pairs, with a row per entry of the block
    (small blocks) or per entry that occurs (large ones), against the sum itself; the
    pairs listed in one chunk of rows or in many."""
    import scipy.sparse as sp

    import skmlm._core.coupling as coupling

    monkeypatch.setattr(coupling, "PAIR_CHUNK", chunk)
    if not direct:
        monkeypatch.setattr(coupling, "MAX_DIRECT_ENTRIES", 0)
    rng = np.random.default_rng(17)
    size, m1 = 9, 6
    a21 = sp.random(size, m1 * q1, density=0.4, random_state=3, format="csr")
    w = rng.normal(size=(m1, q1, q1))
    w = w @ np.swapaxes(w, 1, 2)  # symmetric, as K1 K1'
    dense = a21.toarray()
    expected = sum(dense[:, g * q1:(g + 1) * q1] @ w[g] @ dense[:, g * q1:(g + 1) * q1].T for g in range(m1))
    pairs = coupling.PairExpansion(a21, q1)
    assert (pairs.entries is None) == direct
    np.testing.assert_allclose(pairs(w), expected, atol=1e-12)
    c = rng.normal(size=(size, size))
    c = c + c.T
    explicit = [dense[:, g * q1:(g + 1) * q1].T @ c @ dense[:, g * q1:(g + 1) * q1] for g in range(m1)]
    np.testing.assert_allclose(pairs.adjoint(c), np.array(explicit), atol=1e-12)
    out = pairs.lower_difference(np.ones((size, size)), w)
    lower = np.tril_indices(size)
    np.testing.assert_allclose(out[lower], 1.0 - expected[lower], atol=1e-12)
    np.testing.assert_array_equal(out[np.triu_indices(size, 1)], 1.0)


@pytest.mark.parametrize("chunk", [1 << 18, 3])
@pytest.mark.parametrize("q1", [1, 2])
def test_packed_pair_expansion_lists_the_lower_triangle_in_packed_storage(q1, chunk, monkeypatch):
    """With ``packed``, the entries are the positions of the lower triangle in the
    rectangular full packed array, and each carries the sum of its pairs."""
    import scipy.sparse as sp

    import skmlm._core.coupling as coupling
    from skmlm._core.packed import packed_positions, packed_size

    monkeypatch.setattr(coupling, "PAIR_CHUNK", chunk)
    rng = np.random.default_rng(5)
    m1 = 6
    for size in (9, 10):  # odd and even orders: two layouts
        a21 = sp.random(size, m1 * q1, density=0.4, random_state=size, format="csr")
        w = rng.normal(size=(m1, q1, q1))
        w = w @ np.swapaxes(w, 1, 2)
        dense = a21.toarray()
        expected = sum(dense[:, g * q1:(g + 1) * q1] @ w[g] @ dense[:, g * q1:(g + 1) * q1].T for g in range(m1))
        pairs = coupling.PairExpansion(a21, q1, packed=True)
        out = np.zeros(packed_size(size))
        out[pairs.entries] = pairs.matrix @ w.ravel()
        rows, cols = np.tril_indices(size)
        np.testing.assert_allclose(out[packed_positions(rows, cols, size)], expected[rows, cols], atol=1e-12)


SEVERAL_FACTORS = [k for k in KINDS if len(KINDS[k]) > 1]


@pytest.mark.parametrize("route", ["pairs, every entry", "pairs, entries that occur", "sparse products", "packed"])
@pytest.mark.parametrize("kind", SEVERAL_FACTORS)
def test_blocked_route_with_sparse_second_block_equals_dense_computation(kind, route, monkeypatch):
    """The blocked factorisation (the route of many levels, forced here on a small design),
    with Z2'WZ2 held sparse, in each of its ways of forming L21 L21' (and, for scalar
    factors after the largest, with their Schur complement in packed storage)."""
    import skmlm._core.coupling as coupling
    import skmlm._core.lmm as core

    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 0)
    if route == "pairs, entries that occur":
        monkeypatch.setattr(coupling, "MAX_DIRECT_ENTRIES", 0)
    if route == "packed":
        if not all(q == 0 for _, q, _ in KINDS[kind][1:]):
            pytest.skip("packed storage is for scalar factors after the largest")
        monkeypatch.setattr(coupling, "MIN_PACKED_ENTRIES", 0)
    if route == "sparse products":
        monkeypatch.setattr(coupling, "MAX_PAIRS", 0)
        monkeypatch.setattr(coupling, "PAIRS_PER_ENTRY", 0)
    factors, X, y, w = random_problem(5, KINDS[kind])
    for reml in (False, True):
        model = lmm(factors, X, y, w, reml)
        assert model._dense_gradient is None
        assert model.cp.second.packed == (route == "packed")
        theta = np.maximum(model.theta_start + 0.3, model.theta_lower)
        expected, beta, s2 = dense_deviance(factors, theta, X, y, w, reml)
        assert model.objective(theta) == pytest.approx(expected, rel=1e-10)
        np.testing.assert_allclose(model.estimates(theta)["beta"], beta, rtol=1e-8)


@pytest.mark.parametrize("kind", SEVERAL_FACTORS)
def test_sparse_and_dense_cross_products_agree(kind):
    factors, X, y, w = random_problem(6, KINDS[kind])
    stats = statistics(factors, X, y, w)
    for order in ([0, 1], [1, 0], list(range(len(factors)))[1:]):
        np.testing.assert_array_equal(stats.random_cross_sparse(order).toarray(), stats.random_cross_dense(order))


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("kind", SEVERAL_FACTORS)
def test_blocked_gradient_equals_dense_gradient(kind, direct, monkeypatch):
    """Several factors whose second block is small and the whole too large for the dense
    route take the gradient of :mod:`.blocked_gradient`: the same as the dense one's,
    ML and REML, at a start and at a point with a negative covariance entry."""
    import skmlm._core.coupling as coupling
    import skmlm._core.lmm as core
    from skmlm._core.dense_gradient import DenseGradient

    if not direct:
        monkeypatch.setattr(coupling, "MAX_DIRECT_ENTRIES", 0)
    factors, X, y, w = random_problem(8, KINDS[kind])
    stats = statistics(factors, X, y, w)
    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", LinearMixedModel(stats, False).cp.second_size)
    rng = np.random.default_rng(4)
    for reml in (False, True):
        model = LinearMixedModel(stats, reml)
        assert model._dense_gradient is None and model._blocked_gradient is not None and model.has_gradient
        dense = DenseGradient(factors, *dense_inputs(stats), reml)
        for theta in (model.theta_start + 0.2, model.theta_start + rng.uniform(-0.8, 0.8, len(model.theta_start))):
            np.testing.assert_allclose(model.gradient(theta), dense(theta), rtol=1e-8, atol=1e-9)
            assert model.objective(theta) == pytest.approx(dense_deviance(factors, theta, X, y, w, reml)[0], rel=1e-10)


@pytest.mark.parametrize("slopes", [0, 1])
def test_nested_factor_takes_its_schur_complement_by_levels(slopes, monkeypatch):
    """A factor nested in the largest one (inner levels within outer ones, the outer in
    block 2): block 2's Schur complement is block diagonal, factorised level by level.
    Deviance, gradient, estimates and conditional covariances equal the dense ones."""
    import skmlm._core.lmm as core
    from skmlm._core.condvar import lmm_conditional_covariances
    from skmlm._core.dense_gradient import DenseGradient

    rng = np.random.default_rng(3)
    n, m_in, m_out = 300, 40, 8
    inner = rng.integers(0, m_in, n)
    outer = inner % m_out
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.5] + rng.normal(size=m_out)[outer] + rng.normal(size=m_in)[inner] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    z = np.column_stack([np.ones(n)] + [X[:, 1]] * slopes)
    terms = ["(Intercept)"] + ["x"] * slopes
    factors = [RandomFactor("outer", outer, np.arange(m_out), z, terms),
               RandomFactor("inner", inner, np.arange(m_in), z, terms)]
    stats = statistics(factors, X, y, w)
    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", m_out * z.shape[1])  # the blocked route
    for reml in (False, True):
        model = LinearMixedModel(stats, reml)
        # its search is derivative-free (cheap evaluations); the gradient holds all the same
        assert model.cp.second.level_blocks is not None and model._blocked_gradient is None
        model._blocked_gradient = core.BlockedGradient(model)
        theta = model.theta_start * 0.7 + 0.1
        expected, beta, s2 = dense_deviance(factors, theta, X, y, w, reml)
        assert model.objective(theta) == pytest.approx(expected, rel=1e-10)
        assert model.decompose(theta).L22.ndim == 3
        dense = DenseGradient(factors, *dense_inputs(stats), reml)
        np.testing.assert_allclose(model.gradient(theta), dense(theta), rtol=1e-8, atol=1e-9)
        est = model.estimates(theta)
        np.testing.assert_allclose(est["beta"], beta, rtol=1e-8)
        covs = lmm_conditional_covariances(model, theta, est["sigma2"])
        model.cp.second.level_blocks = None  # the dense factorisation of block 2, as for crossed factors
        model._last_decomposition = None
        assert model.decompose(theta).L22.ndim == 2
        for a, b in zip(covs, lmm_conditional_covariances(model, theta, est["sigma2"])):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        ref = model.estimates(theta)
        for name in est["random_effects"]:
            np.testing.assert_allclose(est["random_effects"][name], ref["random_effects"][name], rtol=1e-9, atol=1e-12)

