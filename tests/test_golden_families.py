"""MixedGLMRegressor against lme4's glmer (binomial with trials, Poisson) and glmmTMB
(NB2, Gamma) on the family reference cases of tests/golden/families (made by the R
scripts there), and the units of X never changing a GLMM's fit.

Tolerances: the log-likelihood at least the reference's minus 1e-4 (lme4 stops PIRLS and
its search early, so skmlm's is often a little higher), fixed effects within 1e-3
relative, variance components within 1e-2, the dispersion within 1e-2, standard errors
within 2e-2 (lme4's finite-difference Hessian at its looser optimum), profile intervals
within 1e-3 relative (lme4 interpolates a spline through its profile).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmlm import (
    MixedGammaRegressor, MixedGLMRegressor, MixedLogisticClassifier, MixedNegativeBinomialRegressor, r2_nakagawa,
)

from golden_cases import assert_dispersion_as_glmmtmb

HERE = Path(__file__).parent / "golden" / "families"
FAMILY = {"binomial": "binomial", "poisson": "poisson", "nbinom2": "negative_binomial", "Gamma": "gamma"}
CASES = ["cbpp_trials_laplace", "grouseticks_poisson", "sim_poisson_offset_slope", "salamanders_nb2", "sim_gamma_log"]


def _load(name):
    return json.loads((HERE / f"{name}.json").read_text()), pd.read_csv(HERE / f"{name}.csv")


def _fit(ref, df, **params):
    groups = df[[t["group"] for t in ref["random_terms"]]].astype(str)
    slopes = {t["group"]: list(t["slopes"]) for t in ref["random_terms"]}
    m = MixedGLMRegressor(family=FAMILY[ref["family"]], link=ref["link"], random_slopes=slopes, **params)
    return m.fit(
        df[ref["fixed"]], df["y"], groups=groups,
        sample_weight=df[ref["trials"]] if ref["trials"] else None,
        offset=df[ref["offset"]] if ref["offset"] else None,
    )


@pytest.fixture(scope="module", params=CASES)
def case(request):
    ref, df = _load(request.param)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a correct fit of a reference case warns of nothing
        m = _fit(ref, df)
    return ref, df, m


def test_log_likelihood_reaches_the_reference(case):
    ref, _, m = case
    assert m.converged_
    assert m.log_likelihood_ >= ref["logLik"] - 1e-4
    assert m.log_likelihood_ <= ref["logLik"] + 1e-3  # the same optimum, not another model
    assert m.aic_ == pytest.approx(-2 * m.log_likelihood_ + 2 * ref["df"])


def test_fixed_effects_and_standard_errors(case):
    ref, _, m = case
    beta = np.r_[m.intercept_, m.coef_]
    np.testing.assert_allclose(beta, list(ref["fixef"].values()), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(m.coef_cov_)), list(ref["fixef_se"].values()), rtol=2e-2)
    assert list(m.fixed_effects_.index) == list(ref["fixef"])


def test_variance_components_and_dispersion(case):
    ref, _, m = case
    for vc in ref["varcorr"]:
        got = m.random_covariance_[vc["group"]].to_numpy()
        expected = np.atleast_2d(vc["covariance"])
        np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2 * np.abs(expected).max())
    assert_dispersion_as_glmmtmb(m, FAMILY[ref["family"]], ref["dispersion"])


def test_conditional_modes(case):
    ref, _, m = case
    for block in ref["ranef"]:
        got = m.random_effects_[block["group"]].loc[[str(v) for v in block["levels"]]].to_numpy()
        np.testing.assert_allclose(got, np.array(block["values"]), atol=2e-3)


def test_nakagawa_r2_as_performance(case):
    """performance::r2_nakagawa (insight's lognormal approximation, the null model refitted)."""
    ref, _, m = case
    name = "poisson_offset_ri" if ref["name"] == "sim_poisson_offset_slope" else ref["name"]
    if ref["name"] == "sim_poisson_offset_slope":
        return  # its R^2 reference is of the random-intercept model (test_poisson_offset_intercept)
    expected = json.loads((HERE / f"inference_{name}.json").read_text())["r2_nakagawa"]
    got = r2_nakagawa(m)
    # grouseticks: R's refit of the null model did not converge (its warnings are in the
    # JSON), so its mu, and the distribution variance from it, are off by ~1%
    rel = 1e-2 if ref["name"] == "grouseticks_poisson" else 2e-3
    assert got["var_residual"] == pytest.approx(expected["var_residual"], rel=rel)
    assert got["var_random"] == pytest.approx(expected["var_random"], rel=1e-2)
    assert got["r2_marginal"] == pytest.approx(expected["marginal"], rel=1e-2)
    assert got["r2_conditional"] == pytest.approx(expected["conditional"], rel=1e-2)


def test_summary_names_family_link_and_dispersion(case):
    ref, _, m = case
    text = m.summary()
    # R's names: Gamma, and MASS's "Negative Binomial(theta)" as glmer.nb prints it
    name = {"nbinom2": f"Negative Binomial({round(m.dispersion_, 4):.4f})".rstrip("0"), "Gamma": "Gamma"}
    assert f"Family: {name.get(ref['family'], ref['family'])}  ( {ref['link']} )" in text
    assert "(Laplace\n  Approximation)" in text  # wrapped as lme4 wraps it
    # lme4 shows a Gamma GLMM's scale as the Residual row (sigma^2 = phi)
    assert ("\n Residual " in text) == (ref["family"] == "Gamma")


def _inference(name):
    return json.loads((HERE / f"inference_{name}.json").read_text())


def _poisson_ri(n_agq=1):
    ref, df = _load("sim_poisson_offset_slope")
    m = MixedGLMRegressor(family="poisson", n_quadrature_points=n_agq)
    return m.fit(df[["x"]], df["y"], groups=df["g_g"], offset=df["offset"])


@pytest.mark.parametrize("n_agq", [1, 9])
def test_poisson_offset_intercept(n_agq):
    """Laplace and adaptive quadrature; lme4's nAGQ > 1 logLik lacks the saturated model's
    constant, which logLik_full restores."""
    inf = _inference("poisson_offset_ri" if n_agq == 1 else "poisson_offset_ri_agq9")
    m = _poisson_ri(n_agq)
    assert m.log_likelihood_ >= inf.get("logLik_full", inf["logLik"]) - 1e-4
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], list(inf["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(m.coef_cov_)), list(inf["fixef_se"].values()), rtol=2e-2)


def _check_profile(m, inf, rtol=1e-3):
    cp = inf["confint_profile"]
    ci = m.confint(method="profile")
    assert list(ci.index) == cp["names"]
    np.testing.assert_allclose(ci.iloc[:, 0], np.array(cp["lower"], dtype=float), rtol=rtol)
    np.testing.assert_allclose(ci.iloc[:, 1], np.array(cp["upper"], dtype=float), rtol=rtol)


def test_profile_intervals_poisson():
    _check_profile(_poisson_ri(), _inference("poisson_offset_ri"))


def test_profile_intervals_binomial_with_trials():
    ref, df = _load("cbpp_trials_laplace")
    _check_profile(_fit(ref, df), _inference("cbpp_trials_laplace"))


def test_profile_intervals_logistic_classifier():
    inf = _inference("cbpp_binary_laplace")
    df = pd.read_csv(Path(__file__).parent / "golden" / "cbpp_binary_laplace.csv")
    ref = json.loads((Path(__file__).parent / "golden" / "cbpp_binary_laplace.json").read_text())
    groups = [t["group"] for t in ref["random_terms"]]
    m = MixedLogisticClassifier().fit(df[ref["fixed"]], df["y"], groups=df[groups[0]])
    _check_profile(m, inf)


def test_profile_intervals_correlated_slope():
    """sd's and a correlation profiled on lme4's scale (within 2e-3: lme4's spline)."""
    ref, df = _load("sim_poisson_offset_slope")
    _check_profile(_fit(ref, df), _inference("sim_poisson_offset_slope"), rtol=2e-3)


# -- units --------------------------------------------------------------------------------

SCALES = [1e-6, 1.0, 10.0, 1e6]


def _assert_same_fit(fits, scales):
    """Fits of a model with its slope column multiplied by ``scales``: the same likelihood,
    estimates rescaled by the same factor, the same verdicts."""
    base_ll = fits[1].log_likelihood_
    b0 = fits[1]
    for m, c in zip(fits, scales):
        assert m.converged_ and not m.singular_
        assert m.log_likelihood_ == pytest.approx(base_ll, abs=1e-6)
        assert m.intercept_ == pytest.approx(b0.intercept_, rel=1e-5, abs=1e-7)
        assert m.coef_[0] * c == pytest.approx(b0.coef_[0], rel=1e-5)
        scale = np.array([1.0, c])
        for f, cov in m.random_covariance_.items():
            np.testing.assert_allclose(cov.to_numpy() * np.outer(scale, scale), b0.random_covariance_[f].to_numpy(),
                                       rtol=1e-4, atol=1e-8 * np.abs(b0.random_covariance_[f].to_numpy()).max())
        se = np.sqrt(np.diag(m.coef_cov_)) * np.r_[1.0, c, np.ones(len(m.coef_) - 1)]
        np.testing.assert_allclose(se, np.sqrt(np.diag(b0.coef_cov_)), rtol=1e-4)


def _units_data(family, seed=5):
    rng = np.random.default_rng(seed)
    m, k = 40, 25
    g = np.repeat(np.arange(m), k)
    x = rng.normal(3.0, 1.0, m * k)  # far from 0: the intercept and slope correlate
    b0, b1 = rng.normal(0, 0.5, m), rng.normal(0, 0.3, m)
    eta = 0.2 + 0.3 * x / 3 + b0[g] + b1[g] * (x - 3) / 3
    mu = np.exp(eta) if family != "binomial" else 1 / (1 + np.exp(-eta))
    y = {
        "poisson": lambda: rng.poisson(mu),
        "negative_binomial": lambda: rng.negative_binomial(3.0, 3.0 / (3.0 + mu)),
        "gamma": lambda: rng.gamma(4.0, mu / 4.0),
        "binomial": lambda: rng.binomial(8, mu) / 8,
    }[family]()
    return x, y.astype(float), g


@pytest.mark.parametrize("family", ["poisson", "negative_binomial", "gamma", "binomial"])
def test_units_of_a_slope_column_do_not_change_the_fit(family):
    x, y, g = _units_data(family)
    w = np.full(len(y), 8.0) if family == "binomial" else None
    fits = [
        MixedGLMRegressor(family=family, random_slopes=["x"]).fit(pd.DataFrame({"x": x * c}), y, groups=g,
                                                                 sample_weight=w)
        for c in SCALES
    ]
    _assert_same_fit(fits, SCALES)


def test_units_classifier_reaches_lme4_on_unscaled_education():
    """ESS: y = (stflife >= 8) ~ eduyrs + (1 + eduyrs | cntry), eduyrs in years (0-25):
    lme4's and glmmTMB's optimum at every unit of eduyrs, not a singular fit short of it."""
    ref = json.loads((HERE / "logit_eduyrs_slope.json").read_text())
    df = pd.read_csv(HERE / "logit_eduyrs_slope.csv")
    fits = [
        MixedLogisticClassifier(random_slopes=["eduyrs"]).fit(pd.DataFrame({"eduyrs": df["eduyrs"] * c}), df["y"],
                                                              groups=df["cntry"])
        for c in SCALES
    ]
    _assert_same_fit(fits, SCALES)
    assert fits[1].log_likelihood_ >= ref["logLik"] - 1e-4
    np.testing.assert_allclose(np.r_[fits[1].intercept_, fits[1].coef_], list(ref["fixef"].values()), rtol=1e-3)


def test_dispersion_faces_match_the_generic_estimator():
    ref, df = _load("salamanders_nb2")
    generic = _fit(ref, df)
    face = MixedNegativeBinomialRegressor().fit(df[ref["fixed"]], df["y"], groups=df["g_site"].astype(str))
    assert face.log_likelihood_ == pytest.approx(generic.log_likelihood_, abs=1e-8)
    ref, df = _load("sim_gamma_log")
    face = MixedGammaRegressor().fit(df[ref["fixed"]], df["y"], groups=df["g_g"].astype(str))
    assert face.log_likelihood_ >= ref["logLik"] - 1e-4


# -- the dispersion's interval and diagnostics ----------------------------------------------

@pytest.mark.parametrize("name", ["salamanders_nb2", "sim_gamma_log"])
def test_dispersion_profile_interval_matches_glmmtmb(name):
    """glmmTMB profiles its dispersion model's intercept ``d~(Intercept)``: log(theta) for
    NB2, log(shape) = -log(phi) for the Gamma. The same interval on the dispersion's scale."""
    ref, df = _load(name)
    m = _fit(ref, df)
    cp = _inference(name)["confint_profile"]
    i = cp["names"].index("d~(Intercept)")
    lo, hi = cp["lower"][i], cp["upper"][i]
    expected = np.exp([lo, hi]) if ref["family"] == "nbinom2" else np.exp([-hi, -lo])
    ci = m.confint(parm=".dispersion")
    assert ci.index.tolist() == [".dispersion"]
    np.testing.assert_allclose(ci.to_numpy()[0], expected, rtol=1e-3)
    assert ci.iloc[0, 0] < m.dispersion_ < ci.iloc[0, 1]
    wald = m.confint(method="wald")  # as lme4: no Wald interval for a variance parameter
    assert wald.index.tolist()[:2] == [".sig01", ".dispersion"] and wald.iloc[:2].isna().all().all()
    assert m.confint(parm=["dispersion"], names="descriptive").shape == (1, 2)


def test_dispersion_in_convergence_and_bootstrap():
    ref, df = _load("sim_gamma_log")
    m = _fit(ref, df)
    conv = m.convergence_
    assert conv["gradient"].index[-1] == "log_dispersion"
    assert conv["max_abs_gradient"] < 1e-3
    assert conv["gradient_sd"].index.tolist() == [".sig01", ".dispersion", "(Intercept)", "x"]
    boot = m.parametric_bootstrap(4, random_state=1)
    assert boot.columns.tolist() == [".sig01", ".dispersion", "(Intercept)", "x"]
    assert (boot[".dispersion"] > 0).all() and boot[".dispersion"].std() > 0
