"""r2_nakagawa, the ICC and variance_reduction against R's performance package and lme4
(tests/golden/reporting_r2.json, made by make_reporting.R)."""

import json

import numpy as np
import pytest
from golden_cases import GOLDEN
from reporting_models import fitted, golden

from skmlm import MixedLinearRegressor, r2_nakagawa, variance_components, variance_reduction
from skmlm.datasets import load_sleepstudy

R2 = {k: v for k, v in golden("r2").items() if k != "versions"}
KEYS = ["r2_marginal", "r2_conditional", "icc_adjusted", "icc_conditional", "var_fixed", "var_random", "var_residual"]


@pytest.mark.parametrize("case", sorted(R2))
def test_r2_and_icc_match_performance(case):
    ref = R2[case]
    m = fitted(case)
    assert m.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-5)  # the same optimum
    got = r2_nakagawa(m)
    # flat likelihoods (the binomial cbpp, the random slope of ess_bw_slope_cross_ml): the
    # optima of two optimisers agree in logLik to 1e-8 but in the variances to ~3e-5 only
    rel = 2e-4 if case.startswith("cbpp") else 1e-4
    for k in KEYS:
        assert got[k] == pytest.approx(ref[k], rel=rel, abs=1e-9), k
    assert m.icc_ == pytest.approx(ref["icc_adjusted"], rel=rel)


def test_formulas():
    m = fitted("sleepstudy_rs_reml")
    v = variance_components(m)
    r = r2_nakagawa(m)
    total = v["var_fixed"] + v["var_random"] + v["var_residual"]
    assert r["r2_marginal"] == pytest.approx(v["var_fixed"] / total)
    assert r["r2_conditional"] == pytest.approx((v["var_fixed"] + v["var_random"]) / total)
    # random slopes: the random-effect variance is the mean of z' Sigma z over the rows
    days = load_sleepstudy()["Days"].to_numpy()
    S = m.random_covariance_["Subject"].to_numpy()
    z = np.column_stack([np.ones_like(days), days])
    assert v["var_random"] == pytest.approx(np.einsum("ij,jk,ik->i", z, S, z).mean())
    # fixed part: variance (ddof=1) of X beta
    assert v["var_fixed"] == pytest.approx(np.var(m.intercept_ + days * m.coef_[0], ddof=1))


def test_logistic_uses_the_latent_scale():
    v = variance_components(fitted("cbpp_binary_laplace"))
    assert v["var_residual"] == pytest.approx(np.pi**2 / 3)


def _lme4_variances(name):
    ref = json.loads((GOLDEN / f"{name}.json").read_text())
    return ref["sigma"] ** 2, ref["varcorr"][0]["covariance"][0][0]


@pytest.mark.parametrize("name", ["ess_edu_ml", "ess_bw_gni_ml"])
def test_variance_reduction_against_lme4_variances(name):
    s0, t0 = _lme4_variances("ess_null_ml")
    s1, t1 = _lme4_variances(name)
    got = variance_reduction(fitted(name), fitted("ess_null_ml"))
    assert list(got.index) == ["level 1", "level 2", "total"]
    np.testing.assert_allclose(got["null"], [s0, t0, s0 + t0], rtol=1e-5)
    np.testing.assert_allclose(got["model"], [s1, t1, s1 + t1], rtol=1e-5)
    expected = [(s0 - s1) / s0, (t0 - t1) / t0, ((s0 + t0) - (s1 + t1)) / (s0 + t0)]
    np.testing.assert_allclose(got["reduction"], expected, rtol=1e-4)


def test_variance_reduction_errors():
    with pytest.raises(TypeError, match="r2_nakagawa"):
        variance_reduction(fitted("cbpp_binary_laplace"), fitted("cbpp_null_laplace"))
    with pytest.raises(ValueError, match="different numbers of rows"):
        variance_reduction(fitted("ess_edu_ml"), fitted("sleepstudy_ri_reml"))
    with pytest.raises(ValueError, match="no grouping factor"):
        variance_reduction(fitted("ess_edu_ml"), fitted("ess_null_ml"), factor="school")
    df = load_sleepstudy()
    m = MixedLinearRegressor(random_intercept=False, random_slopes=["Days"]).fit(
        df[["Days"]], df["Reaction"], groups=df["Subject"])
    with pytest.raises(ValueError, match="no random intercept"):
        variance_reduction(m, m)


def test_r2_rejects_other_objects():
    with pytest.raises(TypeError):
        r2_nakagawa("model")
    with pytest.raises(Exception, match="not fitted"):
        r2_nakagawa(MixedLinearRegressor())
