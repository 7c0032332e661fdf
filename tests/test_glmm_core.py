"""The binomial GLMM core: PIRLS, the Laplace and AGQ deviances, the analytic gradient,
each against a dense, obviously-correct computation."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import expit
from scipy.stats import gamma as gamma_distribution, nbinom

from skmlm._core.design import RandomFactor, split_theta
from skmlm._core.glmm import GeneralizedMixedModel, fit_glmm, product_rule
from skmlm._core.optimize import finite_difference_gradient
from skmlm._generalized import population_average_mean
from skmlm._core.family import get_family


def _data(seed=0, n=240, m1=12, m2=5, slopes=True, crossed=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    c1 = rng.integers(0, m1, n)
    c1[:m1] = np.arange(m1)
    eta = 0.3 + 0.7 * x + rng.normal(0, 0.8, m1)[c1]
    z1 = np.column_stack([np.ones(n), x]) if slopes else np.ones((n, 1))
    factors = [RandomFactor("a", c1, np.arange(m1), z1, ["(Intercept)", "x"][: z1.shape[1]])]
    if crossed:
        c2 = rng.integers(0, m2, n)
        c2[:m2] = np.arange(m2)
        eta = eta + rng.normal(0, 0.6, m2)[c2]
        factors.append(RandomFactor("b", c2, np.arange(m2), np.ones((n, 1)), ["(Intercept)"]))
    y = (rng.random(n) < expit(eta)).astype(float)
    X = np.column_stack([np.ones(n), x])
    w = rng.uniform(0.5, 2.0, n)
    return factors, X, y, w


def _dense_laplace(factors, X, y, w, theta, beta):
    """Newton on the dense penalised deviance, then the Laplace formula with slogdet."""
    Z = np.hstack([f.design_matrix().toarray() for f in factors])
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    start = 0
    for f, th in zip(factors, split_theta(factors, theta)):
        T = f.cholesky_factor(th)
        for j in range(f.n_levels):
            Lam[start + j * f.q : start + (j + 1) * f.q, start + j * f.q : start + (j + 1) * f.q] = T
        start += f.n_levels * f.q
    ZL = Z @ Lam
    u = np.zeros(Z.shape[1])
    for _ in range(100):
        mu = expit(X @ beta + ZL @ u)
        g = ZL.T @ (w * (y - mu)) - u
        H = ZL.T @ (ZL * (w * mu * (1 - mu))[:, None]) + np.eye(len(u))
        step = np.linalg.solve(H, g)
        u = u + step
        if np.abs(step).max() < 1e-13:
            break
    eta = X @ beta + ZL @ u
    mu = expit(eta)
    H = ZL.T @ (ZL * (w * mu * (1 - mu))[:, None]) + np.eye(len(u))
    dev = -2 * np.sum(w * (y * eta - np.log1p(np.exp(eta))))
    return dev + u @ u + np.linalg.slogdet(H)[1]


@pytest.mark.parametrize("slopes,crossed", [(False, False), (True, False), (False, True), (True, True)])
def test_laplace_deviance_against_dense(slopes, crossed):
    factors, X, y, w = _data(slopes=slopes, crossed=crossed)
    model = GeneralizedMixedModel(factors, X, y, w)
    theta = np.array([0.9, 0.2, 0.5][: factors[0].n_theta] + ([0.7] if crossed else []))
    beta = np.array([0.2, 0.6])
    assert model.deviance(theta, beta) == pytest.approx(_dense_laplace(factors, X, y, w, theta, beta), abs=1e-8)


def test_agq_deviance_against_numerical_integration():
    """One scalar random effect per level: the k-point AGQ deviance tends to the exact
    integral, computed level by level with scipy's adaptive quadrature."""
    factors, X, y, w = _data(slopes=False)
    f = factors[0]
    theta, beta = np.array([1.1]), np.array([0.2, 0.6])
    exact = 0.0
    for j in range(f.n_levels):
        rows = f.codes == j
        eta0 = X[rows] @ beta

        def integrand(b):
            eta = eta0 + theta[0] * b
            return np.exp(np.sum(w[rows] * (y[rows] * eta - np.log1p(np.exp(eta))))) * np.exp(-b * b / 2) / np.sqrt(2 * np.pi)

        exact += -2 * np.log(quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    dev25 = GeneralizedMixedModel(factors, X, y, w, n_agq=25).deviance(theta, beta)
    dev1 = GeneralizedMixedModel(factors, X, y, w, n_agq=1).deviance(theta, beta)
    assert dev25 == pytest.approx(exact, abs=1e-7)
    assert abs(dev1 - exact) > 1e-4  # the Laplace approximation is an approximation


def test_product_rule_agq_against_grid_integration():
    """Intercept and slope on one factor: the product rule against a fine 2-d grid."""
    factors, X, y, w = _data(slopes=True, n=120, m1=6)
    f = factors[0]
    theta, beta = np.array([0.9, 0.3, 0.4]), np.array([0.2, 0.6])
    T = f.cholesky_factor(theta)
    grid = np.linspace(-9, 9, 721)
    h = grid[1] - grid[0]
    U = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    logphi = -0.5 * (U**2).sum(1) - np.log(2 * np.pi)
    exact = 0.0
    for j in range(f.n_levels):
        rows = f.codes == j
        eta = (X[rows] @ beta)[None, :] + U @ (T.T @ f.z[rows].T)
        ll = (w[rows] * (y[rows] * eta - np.log1p(np.exp(eta)))).sum(1) + logphi
        exact += -2 * (np.log(np.exp(ll - ll.max()).sum() * h * h) + ll.max())
    dev = GeneralizedMixedModel(factors, X, y, w, n_agq=15).deviance(theta, beta)
    assert dev == pytest.approx(exact, abs=1e-5)


@pytest.mark.parametrize("n_agq,slopes", [(1, False), (1, True), (7, False), (3, True)])
def test_analytic_gradient_against_finite_differences(n_agq, slopes):
    factors, X, y, w = _data(slopes=slopes)
    model = GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq)
    x = np.array(([0.8, 0.25, 0.45] if slopes else [0.8]) + [0.1, 0.5])
    f, g = model.value_and_gradient(x)
    assert f == pytest.approx(model.objective(x), abs=1e-9)
    fd = finite_difference_gradient(model.objective, x, f, np.full(len(x), -np.inf), step=1e-5)
    np.testing.assert_allclose(g, fd, atol=2e-5 * max(1.0, np.abs(g).max()))


def _crossed_counts(family, observation_level=False, slopes=False, seed=1, n=600):
    """Poisson-type data with two crossed factors (one observation-level: a sparse L21)."""
    rng = np.random.default_rng(seed)
    a = np.arange(n) if observation_level else rng.integers(0, 25, n)
    b = rng.integers(0, 30 if observation_level else 10, n)
    x, x2 = rng.normal(size=n), rng.normal(2.0, 1.0, n)
    eta = 0.3 + 0.4 * x + rng.normal(0, 0.5, n)[a] + rng.normal(0, 0.4, n)[b] + slopes * 0.3 * rng.normal(size=n)[b] * x2
    mu = np.exp(eta)
    y = {"poisson": lambda: rng.poisson(mu), "negative_binomial": lambda: rng.negative_binomial(2, 2 / (2 + mu)),
         "gamma": lambda: rng.gamma(3.0, mu / 3.0)}[family]().astype(float)

    def factor(name, codes, z, terms):
        levels, codes = np.unique(codes, return_inverse=True)
        return RandomFactor(name, codes, levels, z, terms)

    fa = factor("a", a, np.ones((n, 1)), ["(Intercept)"])
    fb = factor("b", b, np.column_stack([np.ones(n), x2]) if slopes else np.ones((n, 1)),
                ["(Intercept)", "x2"] if slopes else ["(Intercept)"])
    return [fb, fa], np.column_stack([np.ones(n), x]), y


@pytest.mark.parametrize("family,observation_level,slopes", [
    ("poisson", False, False), ("poisson", True, False), ("negative_binomial", False, True),
    ("gamma", True, True),
])
def test_laplace_gradient_of_several_factors_against_finite_differences(family, observation_level, slopes):
    """Crossed factors, an observation-level factor (a sparse L21), slopes in block 2, a dispersion."""
    factors, X, y = _crossed_counts(family, observation_level, slopes)
    model = GeneralizedMixedModel(factors, X, y, np.ones(len(y)), get_family(family))
    assert model.has_gradient
    xs = np.r_[0.7 + 0.1 * np.arange(model.n_theta), model.beta_start + 0.1, [0.3] * model.n_dispersion]
    f, g = model.search_value_and_gradient(xs)
    assert f == pytest.approx(model.search_objective(xs), rel=1e-12)
    fd = np.array([(model.search_objective(xs + e) - model.search_objective(xs - e)) / 2e-5
                   for e in 1e-5 * np.eye(len(xs))])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_pirls_modes_solve_the_penalised_equations():
    factors, X, y, w = _data(crossed=True)
    model = GeneralizedMixedModel(factors, X, y, w)
    theta, beta = np.array([0.9, 0.2, 0.5, 0.7]), np.array([0.2, 0.6])
    m = model.mode(theta, beta)
    pr = model.pirls
    r = w * (y - expit(m.eta))
    g1, g2 = pr._gradient_u(r)
    assert np.abs(g1 - m.u1).max() < 1e-9 and np.abs(g2 - m.u2).max() < 1e-9
    joint = pr.joint_mode(np.zeros(2))
    r = w * (y - expit(joint.eta))
    assert np.abs(X.T @ r).max() < 1e-9  # beta solves its score equation too


def test_fit_several_factors_matches_one_factor_path_when_second_is_tiny():
    """The search of several factors reaches the optimum of the Laplace deviance: its
    gradient there is ~0 (central differences)."""
    factors, X, y, w = _data(crossed=True, slopes=False)
    model = GeneralizedMixedModel(factors, X, y, w)
    opt = fit_glmm(model)
    assert opt.converged
    g = finite_difference_gradient(model.objective, opt.x, opt.fun, np.r_[model.theta_lower, -np.inf, -np.inf])
    free = opt.x > np.r_[model.theta_lower, -np.inf, -np.inf] + 1e-6
    assert np.abs(g[free]).max() < 1e-3


def test_product_rule_weights():
    nodes, weights = product_rule(5, 2)
    assert nodes.shape == (25, 2) and weights.sum() == pytest.approx(1.0)
    assert (weights * nodes[:, 0] ** 2).sum() == pytest.approx(1.0)


def test_population_average_probability():
    eta, var = np.array([-1.0, 0.0, 2.0, 0.5]), np.array([0.5, 2.0, 0.0, 4.0])
    got = population_average_mean(get_family("binomial"), eta, var)
    for e, v, p in zip(eta, var, got):
        exact = expit(e) if v == 0 else quad(lambda b: expit(e + np.sqrt(v) * b) * np.exp(-b * b / 2) / np.sqrt(2 * np.pi), -40, 40)[0]
        assert p == pytest.approx(exact, abs=1e-7)
    assert got[1] == pytest.approx(0.5)


def _scalar_data(slope_only, seed=3):
    """One scalar random term: an intercept, or (slope_only) a slope without intercept."""
    factors, X, y, w = _data(seed=seed, slopes=False)
    f = factors[0]
    if slope_only:
        f = RandomFactor("a", f.codes, f.levels, X[:, 1:2].copy(), ["x"])
    return [f], X, y, w


@pytest.mark.parametrize("slope_only,n_agq", [(False, 1), (True, 1), (False, 9), (True, 5)])
def test_scalar_path_matches_the_general_path(slope_only, n_agq):
    """The level-by-level path (Laplace, or AGQ) gives the general path's deviance and
    gradient, and the same at -theta (the deviance is even in theta; its theta slope odd)."""
    factors, X, y, w = _scalar_data(slope_only)
    model = GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq)
    general = GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq, scalar_path=False)
    assert model.scalar is not None and general.scalar is None
    for x in (np.array([0.8, 0.1, 0.5]), np.array([2.5, -1.0, 1.5]), np.array([0.05, 0.3, 0.2])):
        f_gen, g_gen = general.value_and_gradient(x)
        f_sc, g_sc = model.value_and_gradient(x)
        assert f_sc == pytest.approx(f_gen, abs=1e-9)
        np.testing.assert_allclose(g_sc, g_gen, atol=1e-7)
        mirror = np.r_[-1.0, 1.0, 1.0]
        f_mirror, g_mirror = model.value_and_gradient(x * mirror)
        assert f_mirror == pytest.approx(f_sc, abs=1e-9)
        np.testing.assert_allclose(g_mirror, g_sc * mirror, atol=1e-7)


@pytest.mark.parametrize("slope_only,n_agq", [(False, 1), (True, 1), (False, 9)])
def test_scalar_path_search_reaches_the_general_optimum(slope_only, n_agq):
    """The scalar path's Newton search ends where L-BFGS-B on the general path ends, and
    the estimates (and the Hessian behind the standard errors) agree."""
    factors, X, y, w = _scalar_data(slope_only)
    fast = GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq)
    general = GeneralizedMixedModel(factors, X, y, w, n_agq=n_agq, scalar_path=False)
    opt_fast, opt_general = fit_glmm(fast), fit_glmm(general)
    assert opt_fast.converged and opt_general.converged
    assert opt_fast.fun <= opt_general.fun + 1e-8
    np.testing.assert_allclose(opt_fast.x, opt_general.x, atol=1e-4)
    np.testing.assert_allclose(opt_fast.hessian, opt_general.hessian, rtol=1e-3, atol=1e-3)
    est_fast = fast.estimates(opt_fast.x)
    est_general = general.estimates(opt_fast.x)
    assert est_fast["deviance"] == pytest.approx(est_general["deviance"], abs=1e-9)
    np.testing.assert_allclose(est_fast["eta"], est_general["eta"], atol=1e-8)
    np.testing.assert_allclose(est_fast["random_effects"]["a"], est_general["random_effects"]["a"], atol=1e-8)


def _assert_exact_hessian(scalar, x, h=1e-5):
    """Assert that the scalar path's exact Hessian at ``x`` is the central-difference
    Jacobian of its analytic gradient; return it."""
    _, _, H = scalar.value_gradient_exact_hessian(x)
    fd = np.column_stack([
        (scalar.value_and_gradient(x + h * e)[1] - scalar.value_and_gradient(x - h * e)[1]) / (2 * h)
        for e in np.eye(len(x))
    ])
    np.testing.assert_allclose(H, fd, atol=1e-5 * max(1.0, np.abs(fd).max()))
    return H


@pytest.mark.parametrize("slope_only", [False, True])
def test_scalar_path_exact_hessian_against_finite_differences(slope_only):
    """The scalar path's exact Hessian is the central-difference Jacobian of its gradient;
    its approximate one agrees on the beta block to a few percent."""
    factors, X, y, w = _scalar_data(slope_only)
    scalar = GeneralizedMixedModel(factors, X, y, w).scalar
    for x in (np.array([0.8, 0.1, 0.5]), np.array([-1.7, 0.4, -0.2]), np.array([0.0, 0.3, 0.2])):
        H = _assert_exact_hessian(scalar, x)
        _, _, approx = scalar.value_gradient_hessian(x)
        np.testing.assert_allclose(approx[1:, 1:], H[1:, 1:], rtol=0.05, atol=0.05 * np.abs(H).max())


def test_scalar_joint_mode_matches_pirls():
    """lme4's first stage on the scalar path: beta and the modes solve their joint
    penalised equations, as the general PIRLS's joint mode (converged tightly here; as
    the search's start it stops at a loose tolerance)."""
    factors, X, y, w = _scalar_data(slope_only=False)
    model = GeneralizedMixedModel(factors, X, y, w)
    beta = model.scalar.joint_mode(0.9, np.zeros(2), tol=1e-14)
    model.pirls.set_theta(np.array([0.9]))
    np.testing.assert_allclose(beta, model.pirls.joint_mode(np.zeros(2)).beta, atol=1e-7)


@pytest.mark.parametrize("slope_only", [False, True])
def test_scalar_em_start_lands_nearer_than_one_em_step(slope_only):
    """The search's start for theta (two EM steps and Aitken's extrapolation) is nearer the
    optimum than one EM step where that step leaves far (the slope: 0.64 against 0.29), no
    farther where lme4's start is already near (the intercept: 1 against 1.05); the modes
    are left near their values at the start (solving them there moves them little)."""
    factors, X, y, w = _scalar_data(slope_only=slope_only)
    model = GeneralizedMixedModel(factors, X, y, w)
    scalar = model.scalar
    optimum = abs(fit_glmm(model).x[0] * model.units.scale[0])  # theta in the search's units
    beta = scalar.joint_mode(1.0, model.beta_start)
    eta = scalar.offset + scalar.X.dot(beta) + scalar.z * scalar._on_rows(scalar.u)
    one_step = scalar.em_theta(1.0, eta)[0]
    start = scalar.em_start(1.0, beta)
    assert abs(start - optimum) < abs(one_step - optimum) + 1e-3
    if slope_only:
        assert abs(start - optimum) < 0.6 * abs(one_step - optimum)
    u_moved = scalar.u.copy()
    u_solved, _ = scalar.mode(start, beta)
    assert np.abs(u_solved - u_moved).max() < 0.1 * np.abs(u_solved).max()


@pytest.mark.parametrize("name,link", [("negative_binomial", "log"), ("gamma", "log"), ("gamma", "inverse")])
def test_scalar_path_dispersion_hessian_against_finite_differences(name, link):
    """With a dispersion parameter, the exact Hessian's dispersion row and column (written
    out, the modes moving with it) are the central differences of the analytic gradient."""
    factors, X, y, w = _scalar_data(slope_only=False)
    rng = np.random.default_rng(5)
    eta = 0.3 + 0.4 * X[:, 1] + rng.normal(0, 0.5, factors[0].n_levels)[factors[0].codes]
    if name == "gamma":
        mean = np.exp(eta) if link == "log" else 1.0 / (1.5 + 0.3 * np.tanh(eta))
        y = rng.gamma(3.0, mean / 3.0)
    else:
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(eta))).astype(float)
    model = GeneralizedMixedModel(factors, X, y, np.ones_like(y), family=get_family(name, link))
    scalar = model.scalar
    x0 = np.array([0.6, 0.8, 0.2, 0.3]) if link == "inverse" else np.array([0.6, 0.3, 0.4, 0.5])
    for x in (x0, x0 * np.r_[-1.5, 1.0, 1.0, -2.0]):
        _assert_exact_hessian(scalar, x)


def _dispersion_data(name, seed=8, n=150, m=10):
    """One random intercept, NB2 (size 2) or Gamma (phi 0.4) outcomes with a log link."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    codes = rng.integers(0, m, n)
    codes[:m] = np.arange(m)
    mu = np.exp(0.4 + 0.5 * x + rng.normal(0, 0.6, m)[codes])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float) if name == "negative_binomial" \
        else rng.gamma(1 / 0.4, mu * 0.4)
    return [RandomFactor("a", codes, np.arange(m), np.ones((n, 1)), ["(Intercept)"])], np.column_stack([np.ones(n), x]), y


def _log_density(name, y, mu, dispersion):
    """The family's log-likelihood per row, from scipy's distributions."""
    if name == "negative_binomial":
        return nbinom.logpmf(y, dispersion, dispersion / (dispersion + mu))
    return gamma_distribution.logpdf(y, 1.0 / dispersion, scale=mu * dispersion)


@pytest.mark.parametrize("name", ["negative_binomial", "gamma"])
def test_dispersion_agq_deviance_against_numerical_integration(name):
    """With a dispersion parameter (NB2's size, the Gamma's phi), the 25-point AGQ deviance
    is the exact integral of the marginal likelihood, level by level with scipy's quad."""
    factors, X, y = _dispersion_data(name)
    f = factors[0]
    theta, beta, dispersion = 0.7, np.array([0.3, 0.45]), 1.7 if name == "negative_binomial" else 0.45
    exact = 0.0
    for j in range(f.n_levels):
        rows = f.codes == j
        eta0 = X[rows] @ beta

        def integrand(b):
            return np.exp(np.sum(_log_density(name, y[rows], np.exp(eta0 + theta * b), dispersion)) - b * b / 2)

        exact += -2 * np.log(quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0] / np.sqrt(2 * np.pi))
    family = get_family(name, "log")
    dev25 = GeneralizedMixedModel(factors, X, y, np.ones_like(y), family=family, n_agq=25).deviance(
        np.array([theta]), beta, dispersion)
    assert dev25 == pytest.approx(exact, abs=1e-7)


@pytest.mark.parametrize("name", ["negative_binomial", "gamma"])
def test_dispersion_agq_gradient_against_finite_differences(name):
    """The AGQ gradient in ``(theta, beta, log(dispersion))``, the dispersion's coordinate
    included (its direct effect on every node's likelihood, and the nodes moving with it)."""
    factors, X, y = _dispersion_data(name)
    model = GeneralizedMixedModel(factors, X, y, np.ones_like(y), family=get_family(name, "log"), n_agq=7)
    for x in (np.array([0.7, 0.3, 0.45, 0.5]), np.array([-1.2, 0.1, 0.6, -0.8])):
        f, g = model.value_and_gradient(x)
        fd = finite_difference_gradient(model.objective, x, f, np.full(len(x), -np.inf), central=True, step=1e-5)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["negative_binomial", "gamma"])
def test_dispersion_agq_fit_reaches_its_optimum(name):
    """A fit by quadrature ends where the AGQ gradient vanishes, near the Laplace fit (the
    two approximations differ little with 15 rows per level); with two factors, an error."""
    factors, X, y = _dispersion_data(name)
    family = get_family(name, "log")
    model = GeneralizedMixedModel(factors, X, y, np.ones_like(y), family=family, n_agq=9)
    res = fit_glmm(model)
    assert res.converged
    assert np.abs(model.value_and_gradient(res.x)[1]).max() < 1e-3
    laplace = fit_glmm(GeneralizedMixedModel(factors, X, y, np.ones_like(y), family=family))
    np.testing.assert_allclose(res.x, laplace.x, atol=0.05)
    crossed = factors + [RandomFactor("b", factors[0].codes % 3, np.arange(3), np.ones((len(y), 1)), ["(Intercept)"])]
    with pytest.raises(ValueError, match="one grouping factor with one random term"):
        GeneralizedMixedModel(crossed, X, y, np.ones_like(y), family=family, n_agq=9)


def test_row_order_does_not_change_the_fit():
    """A one-factor model computes on its rows sorted by level: the fit on shuffled rows is
    the fit on sorted rows, and its linear predictor comes back in the given row order."""
    factors, X, y, w = _data(seed=3, slopes=True)
    f = factors[0]
    order = np.argsort(f.codes, kind="stable")
    by_level = [RandomFactor("a", f.codes[order], f.levels, f.z[order], f.terms)]
    given = GeneralizedMixedModel(factors, X, y, w)
    sorted_ = GeneralizedMixedModel(by_level, X[order], y[order], w[order])
    assert given.rows is not None and sorted_.rows is None
    res_given, res_sorted = fit_glmm(given), fit_glmm(sorted_)
    assert res_given.fun == pytest.approx(res_sorted.fun, abs=1e-8)
    np.testing.assert_allclose(res_given.x, res_sorted.x, atol=1e-5)
    eta_given = given.estimates(res_sorted.x)["eta"]
    eta_sorted = sorted_.estimates(res_sorted.x)["eta"]
    np.testing.assert_allclose(eta_given[order], eta_sorted, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("route", ["dense", "pairs", "pairs_by_entry", "packed", "sparse_products", "nested"])
def test_pirls_factorisation_on_every_route_of_the_coupling_block(monkeypatch, route):
    """PIRLS's factorisation (the linear model's, of cross-products reweighted in place on
    their pattern) against the dense ``M = Lambda' Z' W Z Lambda + I`` augmented by X, on
    each route of the coupling block, after an earlier reweighting (nothing of it left)."""
    from skmlm._core import coupling
    from skmlm._core.pirls import PIRLS

    if route != "dense":
        monkeypatch.setattr(coupling, "MAX_DENSE_A21", 0)
    if route == "pairs_by_entry":
        monkeypatch.setattr(coupling, "MAX_DIRECT_ENTRIES", 0)
    if route == "packed":
        monkeypatch.setattr(coupling, "MIN_PACKED_ENTRIES", 0)
    if route == "sparse_products":
        monkeypatch.setattr(coupling, "MAX_PAIRS", -1)
        monkeypatch.setattr(coupling, "PAIRS_PER_ENTRY", 0)
    rng = np.random.default_rng(7)
    n, m1 = 400, 40
    a = rng.integers(0, m1, n)
    a[:m1] = np.arange(m1)
    b = a // 8 if route == "nested" else rng.integers(0, 12, n)
    x, x2 = rng.normal(size=n), rng.normal(size=n)
    slopes = route in ("pairs", "nested")
    zb = np.column_stack([np.ones(n), x2]) if slopes else np.ones((n, 1))
    levels_b, b = np.unique(b, return_inverse=True)
    factors = [RandomFactor("b", b, levels_b, zb, ["(Intercept)", "x2"][: zb.shape[1]]),
               RandomFactor("a", a, np.arange(m1), np.column_stack([np.ones(n), x]), ["(Intercept)", "x"])]
    X = np.column_stack([np.ones(n), x])
    pr = PIRLS(factors, X, rng.poisson(2.0, n).astype(float), np.ones(n), get_family("poisson"))
    second = pr.cross.second
    taken = {"dense": second.dense, "pairs": second.pairs is not None and second.pairs.entries is None,
             "pairs_by_entry": second.pairs is not None and second.pairs.entries is not None and not second.packed,
             "packed": second.packed, "sparse_products": second.pairs is None and not second.dense,
             "nested": second.level_blocks is not None}
    assert taken[route]
    theta = np.array([0.7, 0.2, 0.4][: 1 + 2 * slopes] + [0.9, -0.3, 0.5])
    pr.set_theta(theta)
    W = rng.uniform(0.2, 3.0, n)
    pr.factorize(rng.uniform(0.2, 3.0, n), joint=True)  # values to be replaced
    fac = pr.factorize(W, joint=True)
    # the dense reference, in PIRLS's order of the blocks (the largest factor first)
    ordered = [factors[k] for k in pr.order]
    pieces = split_theta(factors, theta)
    Z = np.hstack([f.design_matrix().toarray() for f in ordered])
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    start = 0
    for k in pr.order:
        f, size = factors[k], factors[k].n_levels * factors[k].q
        Lam[start : start + size, start : start + size] = np.kron(np.eye(f.n_levels), f.cholesky_factor(pieces[k]))
        start += size
    V = Z @ Lam
    M = V.T @ (W[:, None] * V) + np.eye(V.shape[1])
    C = V.T @ (W[:, None] * X)
    S = X.T @ (W[:, None] * X) - C.T @ np.linalg.solve(M, C)
    assert fac.logdet == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-10)
    np.testing.assert_allclose(fac.Lx @ fac.Lx.T, S, rtol=1e-9)
    r1, r2, rx = rng.normal(size=(pr.m1, pr.q1)), rng.normal(size=pr.q2), rng.normal(size=2)
    x1, x2_, bx = fac.solve(r1, r2, rx)
    full = np.linalg.solve(np.block([[M, C], [C.T, X.T @ (W[:, None] * X)]]), np.concatenate([r1.ravel(), r2, rx]))
    np.testing.assert_allclose(np.concatenate([x1.ravel(), x2_, bx]), full, rtol=1e-8, atol=1e-10)
    plain = pr.factorize(W)
    y1, y2, _ = plain.solve(r1, r2)
    np.testing.assert_allclose(np.concatenate([y1.ravel(), y2]), np.linalg.solve(M, np.concatenate([r1.ravel(), r2])),
                               rtol=1e-8, atol=1e-10)
    with pytest.raises(RuntimeError, match="reweighted"):
        fac.solve(r1, r2, rx)
