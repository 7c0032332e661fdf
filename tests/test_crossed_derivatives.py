"""The gradient and Hessian of two crossed scalar factors held packed
(:mod:`skmlm._core.crossed_derivatives`), against finite differences of the deviance, and
the fit they drive against the fit of the other routes."""

import numpy as np
import pytest

import skmlm._core.coupling as coupling
import skmlm._core.lmm as core
from skmlm._core.design import RandomFactor
from skmlm._core.search import fit_lmm
from skmlm._core.statistics import LinearMixedStatistics


def crossed_statistics(seed=3, n=900, levels=(45, 36), weights=True, y_scale=1.0):
    """Two crossed random intercepts, a covariate, prior weights."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.4] + rng.normal(size=n)
    factors = []
    for k, m in enumerate(levels):
        codes = rng.integers(0, m, size=n)
        factors.append(RandomFactor(f"g{k}", codes, np.arange(m), np.ones((n, 1)), ["(Intercept)"], False))
        y = y + (0.9 - 0.4 * k) * rng.normal(size=m)[codes]
    w = rng.uniform(0.5, 2.0, size=n) if weights else None
    return LinearMixedStatistics.from_rows(factors, X, y * y_scale, w)


@pytest.fixture
def packed_route(monkeypatch):
    """Small crossed designs onto the packed route (no dense or blocked gradient)."""
    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 0)
    monkeypatch.setattr(coupling, "MIN_PACKED_ENTRIES", 0)


def central_gradient(fun, theta, h):
    return np.array([(fun(theta + h * e) - fun(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("theta", [[0.8, 0.45], [1.4, -0.3], [0.05, 2.0], [0.6, 0.0]])
def test_derivatives_equal_finite_differences_of_the_deviance(packed_route, reml, theta):
    model = core.LinearMixedModel(crossed_statistics(), reml)
    assert model._crossed is not None and model.has_hessian and not model.costly_evaluation
    theta = np.array(theta)
    g, H = model.gradient(theta), model.hessian(theta)
    fd_g = central_gradient(model.objective, theta, 1e-5)
    np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-5 * np.abs(fd_g).max())
    # the Hessian against central differences of the exact gradient: its two estimated
    # terms (the coupling norms) are good to a fraction of a percent of themselves
    fd_H = np.column_stack([central_gradient(lambda t, i=i: model.gradient(t)[i], theta, 1e-5) for i in range(2)]).T
    np.testing.assert_allclose(H, H.T)
    np.testing.assert_allclose(H, fd_H, rtol=0, atol=1e-3 * np.abs(fd_H).max())
    if theta[1] == 0.0:  # a variance at 0: the deviance is even in its theta
        assert g[1] == 0.0 and np.isfinite(H).all()


def test_the_factor_order_does_not_matter(packed_route):
    """The larger factor is batched, the other packed, whichever comes first."""
    s = crossed_statistics(levels=(30, 48))
    model = core.LinearMixedModel(s, False)
    assert model.cp.order == [1, 0]
    theta = np.array([0.5, 1.1])
    fd_g = central_gradient(model.objective, theta, 1e-5)
    np.testing.assert_allclose(model.gradient(theta), fd_g, rtol=1e-6)


def fit(statistics, reml):
    model, opt, est = fit_lmm(statistics, reml)
    return model, opt, est


@pytest.mark.parametrize("reml", [False, True])
def test_fit_reaches_the_optimum_of_the_dense_route(reml, monkeypatch):
    """The Newton search on these derivatives ends where the dense route's search does,
    in two or three evaluations (one Newton step from the moment start, sometimes two)."""
    s = crossed_statistics()
    dense_model, dense_opt, dense_est = fit(s, reml)
    assert dense_model._crossed is None
    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 0)
    monkeypatch.setattr(coupling, "MIN_PACKED_ENTRIES", 0)
    model, opt, est = fit(s, reml)
    assert model._crossed is not None and opt.converged
    assert opt.n_evaluations <= 4
    assert opt.fun == pytest.approx(dense_opt.fun, abs=1e-6)
    np.testing.assert_allclose(opt.x, dense_opt.x, rtol=1e-3)
    np.testing.assert_allclose(est["beta"], dense_est["beta"], rtol=1e-4)


def test_fit_does_not_depend_on_the_units_of_y(packed_route):
    """Rescaling y leaves theta, and rescales beta."""
    _, opt1, est1 = fit(crossed_statistics(), False)
    _, opt2, est2 = fit(crossed_statistics(y_scale=1000.0), False)
    np.testing.assert_allclose(opt2.x, opt1.x, rtol=1e-4)
    np.testing.assert_allclose(est2["beta"], 1000.0 * est1["beta"], rtol=1e-4)


def test_rough_derivatives_are_the_derivatives_in_single_precision(packed_route):
    model = core.LinearMixedModel(crossed_statistics(), False)
    theta = np.array([0.8, 0.45])
    g, H = model.gradient(theta), model.hessian(theta)
    g_rough, H_rough = model.rough_derivatives(theta)
    np.testing.assert_allclose(g_rough, g, rtol=1e-4, atol=1e-6 * np.abs(g).max())
    np.testing.assert_allclose(H_rough, H, rtol=1e-4)


def test_rough_derivatives_judge_no_point():
    """A first point where the rough derivatives promise convergence is judged on the
    gradient and Hessian: the search goes on to the optimum."""
    from skmlm._core.optimize import minimize_bounded

    def fun(x):
        return float(((x - 1.0) ** 2).sum())

    res = minimize_bounded(
        fun, np.zeros(2), np.full(2, -np.inf), gradient=lambda x: 2.0 * (x - 1.0),
        hessian=lambda x: 2.0 * np.eye(2), rough_derivatives=lambda x: (np.zeros(2), 2.0 * np.eye(2)),
        final_step=False,
    )
    assert res.converged
    np.testing.assert_allclose(res.x, 1.0)
