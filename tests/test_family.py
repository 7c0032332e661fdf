"""The response families of skmlm._core.family: their log-likelihoods against scipy's
densities, and their analytic derivatives (in eta, and in the log-dispersion) against
central differences."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from skmlm._core.family import get_family

RNG = np.random.default_rng(0)
N = 6
CASES = [
    ("binomial", "logit", RNG.random(N), RNG.integers(1, 5, N).astype(float), 1.0),
    ("binomial", "probit", RNG.random(N), np.ones(N), 1.0),
    ("binomial", "cloglog", RNG.random(N), np.ones(N), 1.0),
    ("poisson", "log", RNG.poisson(2, N).astype(float), np.ones(N), 1.0),
    ("negative_binomial", "log", RNG.poisson(2, N).astype(float), np.full(N, 2.0), 1.7),
    ("gamma", "log", RNG.gamma(2, 1, N), np.ones(N), 0.4),
    ("gamma", "inverse", RNG.gamma(2, 1, N), np.ones(N), 0.4),
]


def _eta(link):
    eta = RNG.normal(0, 0.5, N)
    return eta + 2.0 if link == "inverse" else eta  # the inverse link's mean needs eta > 0


@pytest.mark.parametrize("name,link,y,w,dispersion", CASES)
def test_derivatives_in_eta_against_differences(name, link, y, w, dispersion):
    family, eta, h = get_family(name, link), _eta(link), 1e-5
    d1, W, W1, W2 = family.derivatives(y, eta, w, dispersion, order=4)
    assert len(family.derivatives(y, eta, w, dispersion, order=2)) == 2

    def at(e, order=4):
        return family.derivatives(y, e, w, dispersion, order=order)

    kernel = family.kernel(y, eta + h, w, dispersion) - family.kernel(y, eta - h, w, dispersion)
    np.testing.assert_allclose(d1, kernel / (2 * h), atol=1e-8)
    np.testing.assert_allclose(W, -(at(eta + h)[0] - at(eta - h)[0]) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(W1, (at(eta + h)[1] - at(eta - h)[1]) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(W2, (at(eta + h)[2] - at(eta - h)[2]) / (2 * h), atol=1e-8)


@pytest.mark.parametrize("name,link,y,w,dispersion", [c for c in CASES if c[0] in ("negative_binomial", "gamma")])
def test_derivatives_in_the_log_dispersion_against_differences(name, link, y, w, dispersion):
    family, eta, h = get_family(name, link), _eta(link), 1e-6
    dl, dd1, dW = family.dispersion_derivatives(y, eta, w, dispersion)
    up, down = dispersion * np.exp(h), dispersion * np.exp(-h)
    total = family.loglik(y, eta, w, up) - family.loglik(y, eta, w, down)
    constant_slope = family.constant_slopes_function(y, w)(dispersion)[0]
    assert dl.sum() + constant_slope == pytest.approx(total / (2 * h), abs=1e-6)
    for k, got in enumerate((dd1, dW)):
        diff = family.derivatives(y, eta, w, up)[k] - family.derivatives(y, eta, w, down)[k]
        np.testing.assert_allclose(got, diff / (2 * h), atol=1e-6)


@pytest.mark.parametrize("name,link,y,w,dispersion", [c for c in CASES if c[0] in ("negative_binomial", "gamma")])
def test_second_derivatives_in_the_log_dispersion_against_differences(name, link, y, w, dispersion):
    """The dispersion's second derivatives (in s twice, and W1 in s once) are the central
    differences of the first ones."""
    family, eta, h = get_family(name, link), _eta(link), 1e-6
    second = family.dispersion_second_derivatives(y, eta, w, dispersion)
    up, down = dispersion * np.exp(h), dispersion * np.exp(-h)
    first_up = family.dispersion_derivatives(y, eta, w, up)
    first_down = family.dispersion_derivatives(y, eta, w, down)
    for k in range(3):
        np.testing.assert_allclose(second[k], (first_up[k] - first_down[k]) / (2 * h), rtol=1e-6, atol=1e-7)
    W1 = [family.derivatives(y, eta, w, d, order=3)[2] for d in (up, down)]
    np.testing.assert_allclose(second[3], (W1[0] - W1[1]) / (2 * h), rtol=1e-6, atol=1e-7)
    slopes = family.constant_slopes_function(y, w)
    constant = family.constant_function(y, w)
    d1, d2 = slopes(dispersion)
    assert d1 == pytest.approx((constant(up) - constant(down)) / (2 * h), rel=1e-7, abs=1e-7)
    assert d2 == pytest.approx((slopes(up)[0] - slopes(down)[0]) / (2 * h), rel=1e-6, abs=1e-7)


def test_log_likelihoods_against_scipy():
    y = RNG.poisson(3, N).astype(float)
    eta = RNG.normal(1, 0.3, N)
    mu, ones = np.exp(eta), np.ones(N)
    assert get_family("poisson").loglik(y, eta, ones) == pytest.approx(stats.poisson.logpmf(y, mu).sum())
    k = 1.7
    assert get_family("negative_binomial").loglik(y, eta, ones, k) == pytest.approx(
        stats.nbinom.logpmf(y, k, k / (k + mu)).sum()
    )
    # a huge theta is the Poisson limit, to the digits (no cancellation of log-gammas)
    assert get_family("negative_binomial").loglik(y, eta, ones, 1e12) == pytest.approx(
        stats.poisson.logpmf(y, mu).sum(), abs=1e-9
    )
    yg, phi = RNG.gamma(2, 1, N), 0.4
    assert get_family("gamma").loglik(yg, eta, ones, phi) == pytest.approx(
        stats.gamma.logpdf(yg, 1 / phi, scale=mu * phi).sum()
    )
    trials, successes = np.array([3.0, 5, 2, 7, 1, 4]), np.array([1.0, 2, 0, 7, 1, 3])
    assert get_family("binomial").loglik(successes / trials, eta, trials) == pytest.approx(
        stats.binom.logpmf(successes, trials, expit(eta)).sum()
    )


def test_unknown_family_and_link():
    with pytest.raises(ValueError, match="family must be one of"):
        get_family("tweedie")
    with pytest.raises(ValueError, match="takes the link"):
        get_family("poisson", "identity")
