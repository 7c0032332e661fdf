"""Satterthwaite degrees of freedom and p-values against lmerTest.

Reference values: tests/golden/inference_*.json (``satterthwaite``: lmerTest's
``summary(m)$coefficients``), made by tests/golden/make_inference.R.
"""

import json

import numpy as np
import pytest

from golden_cases import GOLDEN, case_names, estimator_inputs, load_case
from skmlm import MixedLinearRegressor
from skmlm._core.satterthwaite import Satterthwaite

CASES = case_names("gaussian")


def _fit(name):
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    return ref, MixedLinearRegressor(**params).fit(X, y, groups=groups)


def _lmertest(name):
    return json.loads((GOLDEN / f"inference_{name}.json").read_text())["satterthwaite"]


def test_sleepstudy_rs_reml_df_and_p_within_1e3_of_lmertest():
    _, m = _fit("sleepstudy_rs_reml")
    exp = _lmertest("sleepstudy_rs_reml")
    table = m.fixed_effects_table()
    assert list(table.index) == exp["names"]
    np.testing.assert_allclose(table["df"], exp["df"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(table["Pr(>|t|)"], exp["p"], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(table["t value"], exp["t"], rtol=1e-4)
    np.testing.assert_allclose(table["Std. Error"], exp["se"], rtol=1e-4)
    # the existing columns are untouched
    np.testing.assert_allclose(table["t value"], m.fixed_effects_["t value"])


@pytest.mark.parametrize("name", CASES)
def test_at_lme4_parameters_every_gaussian_case(name):
    """At lme4's own theta and sigma the computation is lmerTest's to ~1e-6, on every case
    (ML and REML, one to two factors, a singular fit); at skmlm's optimum, which differs
    where lme4 stopped early, the df follow theta."""
    ref, m = _fit(name)
    exp = _lmertest(name)
    inf = json.loads((GOLDEN / f"inference_{name}.json").read_text())  # lmerTest's own fit
    s = Satterthwaite(m._core_model(), np.array(inf["theta"]), inf["sigma"])
    beta = np.array(inf["fixef"])
    tab = s.coefficient_table(beta)
    np.testing.assert_allclose(tab["df"], exp["df"], rtol=1e-5)
    np.testing.assert_allclose(tab["p"], exp["p"], rtol=1e-4, atol=1e-12)


def test_df_at_skmlm_optimum_close_to_lmertest():
    for name in ["sleepstudy_ri_ml", "sleepstudy_diag_reml", "dyestuff_reml", "pastes_nested_reml", "ess_bw_gni_ml"]:
        _, m = _fit(name)
        exp = _lmertest(name)
        np.testing.assert_allclose(m.fixed_effects_table()["df"], exp["df"], rtol=1e-3, err_msg=name)


def test_summary_prints_satterthwaite_tests():
    _, m = _fit("sleepstudy_rs_reml")
    text = m.summary()
    assert "t-tests use Satterthwaite's method" in text
    assert "Pr(>|t|)" in text and " df " in text
    assert "Signif. codes" in text


def test_interval_uses_t_quantile_with_satterthwaite_df():
    from scipy import stats

    _, m = _fit("dyestuff_reml")
    t = m.fixed_effects_table(level=0.9)
    q = stats.t.ppf(0.95, t["df"].iloc[0])
    assert t["5 %"].iloc[0] == pytest.approx(t["Estimate"].iloc[0] - q * t["Std. Error"].iloc[0])
    assert t["95 %"].iloc[0] == pytest.approx(t["Estimate"].iloc[0] + q * t["Std. Error"].iloc[0])
