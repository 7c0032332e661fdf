"""compare_models against lme4's anova() (tests/golden/reporting_anova.json, make_reporting.R)."""

import warnings

import pickle

import numpy as np
import pandas as pd
import pytest
from reporting_models import ess_frame, fitted, golden
from scipy.stats import chi2

from skmlm import MixedLinearRegressor, compare_models

ANOVA = golden("anova")


def _num(values):
    return np.array([np.nan if v is None else v for v in values], dtype=float)


@pytest.mark.parametrize("case", sorted(ANOVA))
def test_matches_lme4_anova(case):
    ref = ANOVA[case]
    models = [fitted(n) for n in ref["models"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refit=False here compares REML fits with equal fixed effects
        t = compare_models(*models, names=ref["models"], refit=ref["refit"])
    assert list(t.index) == ref["models"]
    np.testing.assert_array_equal(t["npar"], ref["npar"])
    np.testing.assert_allclose(t["logLik"], ref["logLik"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(t["deviance"], ref["deviance"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(t["AIC"], ref["AIC"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(t["BIC"], ref["BIC"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(t["Chisq"], _num(ref["Chisq"]), rtol=0, atol=2e-5)
    np.testing.assert_array_equal(t["Df"], _num(ref["Df"]))
    np.testing.assert_allclose(t["Pr(>Chisq)"], _num(ref["p"]), rtol=1e-4, atol=1e-14)


def test_statistic_is_twice_the_loglik_difference():
    models = [fitted(n) for n in ("ess_null_ml", "ess_edu_ml", "ess_edu_slope_ml")]
    t = compare_models(*models)
    ll = np.array([m.log_likelihood_ for m in models])
    k = np.array([m.n_params_ for m in models])
    np.testing.assert_allclose(t["Chisq"].iloc[1:], 2 * np.diff(ll), rtol=1e-12)
    np.testing.assert_array_equal(t["Df"].iloc[1:], np.diff(k))
    np.testing.assert_allclose(t["Pr(>Chisq)"].iloc[1:], chi2.sf(2 * np.diff(ll), np.diff(k)), rtol=1e-12)
    assert list(t.index) == ["model1", "model2", "model3"]
    assert list(t["method"]) == ["ML"] * 3
    assert t.attrs["notes"] == []


def test_reml_models_are_refitted_by_ml_and_left_unchanged():
    m0, m1 = fitted("ess_null_reml"), fitted("ess_edu_reml")
    before = (m0.log_likelihood_, m1.log_likelihood_)
    t = compare_models(m0, m1, names=["null", "edu"])
    assert list(t["method"]) == ["ML (refit)"] * 2
    assert "refitted" in t.attrs["notes"][0]
    np.testing.assert_allclose(t["logLik"], [fitted("ess_null_ml").log_likelihood_,
                                             fitted("ess_edu_ml").log_likelihood_], atol=1e-6)
    assert (m0.log_likelihood_, m1.log_likelihood_) == before and m0.reml and m1.reml


def test_mixed_reml_and_ml_refits_only_the_reml_one():
    t = compare_models(fitted("ess_null_reml"), fitted("ess_edu_ml"))
    assert list(t["method"]) == ["ML (refit)", "ML"]
    np.testing.assert_allclose(t["logLik"].iloc[0], fitted("ess_null_ml").log_likelihood_, atol=1e-6)


def test_refit_false_warns_on_incomparable_likelihoods():
    with pytest.warns(UserWarning, match="different fixed effects"):
        compare_models(fitted("ess_null_reml"), fitted("ess_edu_reml"), refit=False)
    with pytest.warns(UserWarning, match="some by ML"):
        compare_models(fitted("ess_null_reml"), fitted("ess_edu_ml"), refit=False)


def test_models_are_ordered_by_their_number_of_parameters():
    """As lme4's anova: given larger first, the table still tests the larger model against
    the smaller one before it, with a positive Df."""
    a, b = fitted("ess_null_ml"), fitted("ess_edu_ml")
    fwd, rev = compare_models(a, b, names=["null", "edu"]), compare_models(b, a, names=["edu", "null"])
    pd.testing.assert_frame_equal(rev, fwd)
    assert list(rev.index) == ["null", "edu"] and rev["Df"].iloc[1] == 1
    assert "ordered by their number of parameters" in rev.attrs["notes"][0]


def test_refit_without_statistics_explains_what_to_do():
    df = ess_frame()
    m = MixedLinearRegressor().fit(df[["eduyrs"]], df["stflife"], groups=df["cntry"])
    del m.statistics_  # as after loading a model fitted by an older version
    with pytest.raises(ValueError, match="reml=False"):
        compare_models(fitted("ess_null_ml"), m)


def test_refit_reads_the_statistics_not_the_rows():
    """The ML refit of a REML fit comes from its statistics: the same as fitting the rows by
    ML, after the user changed the frame, and after pickling."""
    df = ess_frame()
    X = df[["eduyrs"]].copy()
    m = MixedLinearRegressor().fit(X, df["stflife"], groups=df["cntry"])
    direct = MixedLinearRegressor(reml=False).fit(X, df["stflife"], groups=df["cntry"])
    X["extra"] = 1.0  # the user changed the frame after fitting: nothing of it is used
    table = compare_models(fitted("ess_null_ml"), pickle.loads(pickle.dumps(m)))
    assert table["logLik"].iloc[1] == pytest.approx(direct.log_likelihood_, abs=1e-8)
    assert table["method"].iloc[1] == "ML (refit)"


def test_bad_input():
    a, b = fitted("ess_null_ml"), fitted("sleepstudy_ri_reml")
    with pytest.raises(ValueError, match="same number of rows"):
        compare_models(a, b)
    with pytest.raises(ValueError, match="one kind"):
        compare_models(fitted("sleepstudy_ri_reml"), fitted("cbpp_null_laplace"))
    with pytest.raises(ValueError, match="names"):
        compare_models(a, a, names=["x"])
    with pytest.raises(ValueError, match="unique"):
        compare_models(a, a, names=["x", "x"])
    with pytest.raises(TypeError):
        compare_models(a, "not a model")
    with pytest.raises(ValueError, match="at least one"):
        compare_models()
    assert isinstance(compare_models([a, fitted("ess_edu_ml")]), pd.DataFrame)  # a list works too
