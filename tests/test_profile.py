"""Profile confidence intervals against lme4's ``confint(method = "profile")``.

Reference values: tests/golden/inference_*.json, made by tests/golden/make_inference.R.
lme4 interpolates a spline through a grid of profile points; skmlm solves for the ends
exactly. The two agree to ~1e-4 on sleepstudy; where lme4's grid is coarse relative to
the curvature of the profile, its spline is off by up to ~3e-5 of the interval's width.
"""

import json

import numpy as np
import pytest
from scipy.stats import norm

from golden_cases import GOLDEN, estimator_inputs, load_case
from skmlm import MixedLinearRegressor
from skmlm._core.lmm import LinearMixedModel
from skmlm._core.statistics import LinearMixedStatistics
from skmlm._core.profile import Profiler, with_offset_column


def _fit(name):
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    return MixedLinearRegressor(**params).fit(X, y, groups=groups), (X, y, groups)


def _reference(name):
    return json.loads((GOLDEN / f"inference_{name}.json").read_text())


@pytest.fixture(scope="module")
def sleepstudy_ml():
    model, _ = _fit("sleepstudy_rs_ml")
    return model, _reference("sleepstudy_rs_ml")


def test_profile_sleepstudy_rs_ml_within_1e3_of_lme4(sleepstudy_ml):
    model, ref = sleepstudy_ml
    got = model.confint(method="profile")
    exp = ref["confint_profile"]
    assert list(got.index) == exp["names"]
    np.testing.assert_allclose(got.iloc[:, 0], exp["lower"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(got.iloc[:, 1], exp["upper"], atol=1e-3, rtol=0)


def test_wald_sleepstudy_rs_ml_within_1e3_of_lme4(sleepstudy_ml):
    model, ref = sleepstudy_ml
    got = model.confint(method="wald")
    exp = ref["confint_wald"]
    assert list(got.index) == exp["names"]
    lo = np.array([np.nan if v is None else v for v in exp["lower"]], dtype=float)
    hi = np.array([np.nan if v is None else v for v in exp["upper"]], dtype=float)
    np.testing.assert_allclose(got.iloc[:, 0], lo, atol=1e-3, rtol=0)  # NaN where lme4 has NA
    np.testing.assert_allclose(got.iloc[:, 1], hi, atol=1e-3, rtol=0)


def test_profile_ends_are_where_zeta_crosses_the_normal_quantile(sleepstudy_ml):
    model, _ = sleepstudy_ml
    prof = model._profiler()
    ci = model.confint(method="profile", level=0.9)
    z = norm.ppf(0.95)
    zeta_lo, _ = prof.variance_zeta(0, ci.iloc[0, 0], prof.phi.copy())
    zeta_hi, _ = prof.fixed_zeta(1, ci.loc["Days"].iloc[1], prof.theta.copy())
    assert zeta_lo == pytest.approx(-z, abs=1e-5)
    assert zeta_hi == pytest.approx(z, abs=1e-5)


@pytest.mark.parametrize(
    "name", ["sleepstudy_ri_ml", "sleepstudy_rs_reml", "sleepstudy_diag_reml", "dyestuff_reml",
             "penicillin_crossed_reml", "pastes_nested_reml"],
)
def test_profile_other_models(name):
    """One and two factors, crossed and nested, diagonal covariance, REML fits (profiled
    on their ML refit, as lme4), an interval ending on the bound 0 (pastes)."""
    model, _ = _fit(name)
    got = model.confint()
    exp = _reference(name)["confint_profile"]
    assert list(got.index) == exp["names"]
    width = np.array(exp["upper"]) - np.array(exp["lower"])
    tol = np.maximum(1e-3, 1e-4 * width)  # lme4's spline: see the module docstring
    assert np.all(np.abs(got.iloc[:, 0].to_numpy() - exp["lower"]) <= tol)
    assert np.all(np.abs(got.iloc[:, 1].to_numpy() - exp["upper"]) <= tol)


def test_parm_selects_rows_and_names_can_be_descriptive(sleepstudy_ml):
    model, _ = sleepstudy_ml
    fixed = model.confint(parm="beta_", method="profile")
    assert list(fixed.index) == ["(Intercept)", "Days"]
    one = model.confint(parm=[".sigma"], method="profile")
    assert list(one.index) == [".sigma"]
    d = model.confint(method="wald", names="descriptive")
    assert list(d.index[:4]) == ["sd_(Intercept)|g_Subject", "cor_Days.(Intercept)|g_Subject", "sd_Days|g_Subject",
                                 "sigma"]
    assert list(model.confint(method="wald", level=0.9).columns) == ["5 %", "95 %"]


def test_fixed_effect_offset_equals_refit_on_modified_data():
    """Holding beta_j at v through the cross-products equals building the model on y - v x_j."""
    name = "penicillin_crossed_reml"
    ref, data = load_case("sleepstudy_rs_ml")
    X, y, groups, params = estimator_inputs(ref, data)
    est = MixedLinearRegressor(**params).fit(X, y, groups=groups)
    d = MixedLinearRegressor(**params)._prepare_fit(X, y, groups, None)  # the rows, as the fit saw them

    def core(d, Xf, y):
        return LinearMixedModel(LinearMixedStatistics.from_rows(d["factors"], Xf, y, d["w"]), reml=False)

    model = core(d, d["Xf"], d["y"])
    red = with_offset_column(model, 1, 7.5)
    direct = core(d, d["Xf"][:, [0]], d["y"] - 7.5 * d["Xf"][:, 1])
    theta = np.array([0.8, 0.1, 0.3])
    assert red.objective(theta) == pytest.approx(direct.objective(theta), rel=1e-12)
    np.testing.assert_allclose(red.gradient(theta), direct.gradient(theta), rtol=1e-8)
    # two factors: the second block's cross-products follow too
    ref2, data2 = load_case(name)
    X2, y2, g2, p2 = estimator_inputs(ref2, data2)
    d2 = MixedLinearRegressor(**p2)._prepare_fit(X2, y2, g2, None)
    m2 = core(d2, d2["Xf"], d2["y"])
    r2 = with_offset_column(m2, 0, 22.0)
    dir2 = core(d2, d2["Xf"][:, []], d2["y"] - 22.0)
    assert r2.objective(np.array([1.2, 3.0])) == pytest.approx(dir2.objective(np.array([1.2, 3.0])), rel=1e-12)


def test_profiler_of_reml_fit_uses_ml_refit():
    reml, _ = _fit("sleepstudy_rs_reml")
    ml, _ = _fit("sleepstudy_rs_ml")
    p = Profiler(reml._core_model(), reml.theta_)
    np.testing.assert_allclose(p.theta, ml.theta_, rtol=1e-4, atol=1e-6)
    assert p.d0 == pytest.approx(ml.deviance_, abs=1e-6)
