"""MixedLinearRegressor: weights, prediction, invariances, bad input."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from golden_cases import GOLDEN, case_names, estimator_inputs, load_case
from skmlm import GroupsMissingWarning, MixedLinearRegressor
from skmlm.datasets import load_ess, load_sleepstudy


@pytest.fixture(scope="module")
def sleep():
    return load_sleepstudy()


def fit_sleep(df, **kw):
    params = {"random_slopes": ["Days"], "reml": False} | kw
    return MixedLinearRegressor(**params).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])


# -- lme4's prior weights ---------------------------------------------------------
def test_sample_weight_matches_lme4_weights():
    ref = json.loads((GOLDEN / "sleepstudy_weighted_ml.json").read_text())
    d = pd.read_csv(GOLDEN / "sleepstudy_weighted_ml.csv", dtype={"g_Subject": str})
    m = MixedLinearRegressor(random_slopes=["Days"], reml=False)
    m.fit(d[["Days"]], d["y"], groups=d["g_Subject"], sample_weight=d["w"])
    assert m.log_likelihood_ >= ref["logLik"] - 1e-5
    np.testing.assert_allclose(m.fixed_effects_["Estimate"], list(ref["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["Std. Error"], list(ref["fixef_se"].values()), rtol=1e-3)
    np.testing.assert_allclose(m.random_covariance_["g_Subject"], ref["covariance"], atol=2e-3 * 630)
    assert np.sqrt(m.residual_variance_) == pytest.approx(ref["sigma"], rel=1e-3)
    re = m.random_effects_["g_Subject"].loc[ref["levels"]].to_numpy()
    np.testing.assert_allclose(re, ref["ranef"], atol=1e-3 * np.abs(ref["ranef"]).max())


def test_constant_weights_change_only_the_residual_variance(sleep):
    a = fit_sleep(sleep)
    b = MixedLinearRegressor(random_slopes=["Days"], reml=False).fit(
        sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"], sample_weight=np.full(len(sleep), 4.0)
    )
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-6)
    # sigma^2 is the variance of a row of weight 1; theta is relative to it
    assert b.residual_variance_ == pytest.approx(4 * a.residual_variance_, rel=1e-4)  # to the optimiser's precision
    np.testing.assert_allclose(b.theta_, a.theta_ / 2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.random_covariance_["Subject"], a.random_covariance_["Subject"], rtol=1e-4)


# -- prediction -------------------------------------------------------------------
def test_predict_known_unknown_and_no_groups(sleep):
    m = fit_sleep(sleep)
    X = sleep[["Days"]]
    population = m.intercept_ + X["Days"].to_numpy() * m.coef_[0]
    with pytest.warns(GroupsMissingWarning, match="population prediction"):
        np.testing.assert_allclose(m.predict(X), population)
    np.testing.assert_allclose(m.predict(X, groups=pd.Series(["new"] * len(X))), population)
    re = m.random_effects_["Subject"].loc[sleep["Subject"]].to_numpy()
    conditional = population + re[:, 0] + re[:, 1] * X["Days"].to_numpy()
    np.testing.assert_allclose(m.predict(X, groups=sleep["Subject"]), conditional)
    assert m.score(X, sleep["Reaction"], groups=sleep["Subject"]) > m.score(X, sleep["Reaction"]) > 0


def test_null_model_and_icc():
    ess = load_ess()
    m = MixedLinearRegressor(reml=False).fit(ess[[]], ess["stflife"], groups=ess["cntry"])
    tau2 = m.random_covariance_["cntry"].iloc[0, 0]
    assert m.icc_ == pytest.approx(tau2 / (tau2 + m.residual_variance_))
    assert m.coef_.shape == (0,)
    assert m.n_groups_ == {"cntry": 29}


def test_summary_reads_like_lme4(sleep):
    text = fit_sleep(sleep).summary()
    for piece in ["maximum likelihood", "AIC", "BIC", "logLik", "df.resid", "Scaled residuals",
                  "Random effects:", "Std.Dev.", "Corr", "Residual", "Number of obs: 180",
                  "Subject, 18", "Fixed effects:", "Std. Error", "t value", "Correlation of Fixed Effects"]:
        assert piece in text


def test_numpy_groups_are_named_group(sleep):
    m = MixedLinearRegressor().fit(sleep[["Days"]].to_numpy(), sleep["Reaction"].to_numpy(),
                                   groups=sleep["Subject"].to_numpy())
    assert list(m.random_effects_) == ["group"]
    m2 = MixedLinearRegressor().fit(sleep[["Days"]].to_numpy(), sleep["Reaction"].to_numpy(),
                                    groups=np.column_stack([sleep["Subject"], sleep["Days"] % 2]))
    assert list(m2.random_effects_) == ["group0", "group1"]


def test_random_slope_by_position(sleep):
    a = fit_sleep(sleep)
    b = MixedLinearRegressor(random_slopes=[0], reml=False).fit(
        sleep[["Days"]].to_numpy(), sleep["Reaction"], groups=sleep["Subject"])
    assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, abs=1e-8)


# -- invariances ------------------------------------------------------------------
def test_shuffled_rows_give_the_same_fit(sleep):
    a = fit_sleep(sleep)
    s = sleep.sample(frac=1.0, random_state=3)
    b = fit_sleep(s)
    assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, abs=1e-8)
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-6)
    pd.testing.assert_frame_equal(b.random_effects_["Subject"], a.random_effects_["Subject"], rtol=1e-4)


def test_relabelled_groups_give_the_same_fit(sleep):
    a = fit_sleep(sleep)
    relabel = {s: f"subject-{i * 7 % 18:02d}" for i, s in enumerate(sorted(sleep["Subject"].unique()))}
    b = fit_sleep(sleep.assign(Subject=sleep["Subject"].map(relabel)))
    assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, abs=1e-8)
    re_a = a.random_effects_["Subject"].rename(index=relabel).sort_index()
    np.testing.assert_allclose(b.random_effects_["Subject"].sort_index(), re_a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reml", [False, True])
def test_rescaled_y(sleep, reml):
    c, shift = 10.0, 3.0
    a = fit_sleep(sleep, reml=reml)
    b = fit_sleep(sleep.assign(Reaction=sleep["Reaction"] * c + shift), reml=reml)
    np.testing.assert_allclose(b.theta_, a.theta_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.coef_, c * a.coef_, rtol=1e-6)
    assert b.intercept_ == pytest.approx(c * a.intercept_ + shift, rel=1e-6)
    assert b.residual_variance_ == pytest.approx(c**2 * a.residual_variance_, rel=1e-5)
    dof = len(sleep) - (2 if reml else 0)
    assert b.log_likelihood_ == pytest.approx(a.log_likelihood_ - dof * np.log(c), abs=1e-6)


# -- convergence and the boundary -------------------------------------------------
@pytest.mark.parametrize("name", case_names("gaussian"))
def test_no_warning_at_the_optimum(name):
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MixedLinearRegressor(**params).fit(X, y, groups=groups)
    assert m.converged_


def test_singular_fit_is_flagged_and_finite():
    ref, data = load_case("dyestuff2_ml_singular")
    X, y, groups, params = estimator_inputs(ref, data)
    m = MixedLinearRegressor(**params).fit(X, y, groups=groups)
    assert m.singular_ and m.converged_
    assert np.isfinite([m.log_likelihood_, m.intercept_, m.residual_variance_]).all()
    assert m.random_covariance_["g_Batch"].iloc[0, 0] == 0
    assert "singular" in m.summary()


def test_non_convergence_warns(sleep):
    with pytest.warns(ConvergenceWarning):
        MixedLinearRegressor(random_slopes=["Days"], max_iter=1, tol=1e-300).fit(
            sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])


# -- bad input --------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_X_or_y(sleep, bad):
    X = sleep[["Days"]].astype(float).copy()
    X.iloc[3, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        MixedLinearRegressor().fit(X, sleep["Reaction"], groups=sleep["Subject"])
    y = sleep["Reaction"].copy()
    y.iloc[5] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        MixedLinearRegressor().fit(sleep[["Days"]], y, groups=sleep["Subject"])


def test_groups_of_the_wrong_length(sleep):
    with pytest.raises(ValueError, match="groups has 179 rows but X has 180"):
        MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"][:-1])


def test_missing_group_labels(sleep):
    g = sleep["Subject"].copy()
    g.iloc[0] = None
    with pytest.raises(ValueError, match="missing labels in 1 rows"):
        MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=g)


def test_no_groups(sleep):
    with pytest.raises(ValueError, match="groups is required"):
        MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"])


def test_random_slope_not_in_X(sleep):
    with pytest.raises(ValueError, match="random slope column 'Nights' is not a column of X"):
        MixedLinearRegressor(random_slopes=["Nights"]).fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])


def test_random_slopes_list_with_two_factors(sleep):
    groups = sleep[["Subject"]].assign(half=sleep["Days"] // 5)
    with pytest.raises(ValueError, match="pass a dict"):
        MixedLinearRegressor(random_slopes=["Days"]).fit(sleep[["Days"]], sleep["Reaction"], groups=groups)
    with pytest.raises(ValueError, match="not among the grouping factors"):
        MixedLinearRegressor(random_slopes={"subject": ["Days"]}).fit(sleep[["Days"]], sleep["Reaction"], groups=groups)


def test_single_group(sleep):
    with pytest.raises(ValueError, match="single level"):
        MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=np.zeros(len(sleep)))


def test_constant_y(sleep):
    with pytest.raises(ValueError, match="y is constant"):
        MixedLinearRegressor().fit(sleep[["Days"]], np.ones(len(sleep)), groups=sleep["Subject"])


def test_collinear_X_drops_the_aliased_column(sleep):
    X = sleep[["Days"]].assign(Days2=2 * sleep["Days"])
    with pytest.warns(UserWarning, match="rank deficient: dropping 1 column 'Days2'"):
        m = MixedLinearRegressor().fit(X, sleep["Reaction"], groups=sleep["Subject"])
    ref = MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    assert m.dropped_columns_ == ["Days2"] and m.coef_[1] == 0.0
    assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-9)
    assert list(m.fixed_effects_.index) == ["(Intercept)", "Days"]


def test_bad_parameter(sleep):
    with pytest.raises(InvalidParameterError):
        MixedLinearRegressor(covariance="full").fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])


def test_no_terms_for_a_factor(sleep):
    with pytest.raises(ValueError, match="neither a random intercept nor random slopes"):
        MixedLinearRegressor(random_intercept=False).fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])


def test_negative_weights(sleep):
    with pytest.raises(ValueError, match="zero or negative weights"):
        MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"],
                                   sample_weight=-np.ones(len(sleep)))


def test_small_variance_is_found_after_a_first_step_onto_zero():
    """theta = 0 is a stationary point; a first unit step from theta = 1 lands exactly on it.

    The search must leave it (lme4's InstEval department factor alone is such a case).
    """
    from scipy.optimize import minimize_scalar

    from skmlm._core.lmm import LinearMixedModel
    from skmlm._core.statistics import LinearMixedStatistics

    rng = np.random.default_rng(11)
    g = rng.integers(0, 14, 5000)
    y = 3 + rng.normal(0, 0.1, 14)[g] + rng.normal(size=5000)
    m = MixedLinearRegressor().fit(np.empty((5000, 0)), y, groups=g)
    assert m.converged_ and 0 < m.theta_[0] < 0.5
    factors = MixedLinearRegressor()._prepare_fit(np.empty((5000, 0)), y, g, None)["factors"]
    core = LinearMixedModel(LinearMixedStatistics.from_rows(factors, np.ones((5000, 1)), y, np.ones(5000)), True)
    best = minimize_scalar(lambda t: core.objective(np.array([t])), bounds=(0, 2), method="bounded",
                           options={"xatol": 1e-9})
    assert m.theta_[0] == pytest.approx(best.x, abs=1e-4)
    assert m.deviance_ <= best.fun + 1e-8


def test_levels_are_sorted_as_pandas_sorts_them():
    """Levels are found in order of appearance, then sorted; labels of mixed types, which
    do not sort among themselves, are ordered as pandas orders them."""
    import pandas as pd

    from skmlm._input import encode_levels

    cases = [
        np.array(["b", "a", "c", "a"], dtype=object),
        np.array([3, 1, 2, 1]),
        np.array([2.5, 1.0, 2.5]),
        np.array([True, False, True]),
        np.array([1, "a", 2, "a"], dtype=object),
        pd.to_datetime(["2020-01-02", "2020-01-01", "2020-01-02"]).to_numpy(),
    ]
    for labels in cases:
        codes, levels = encode_levels(labels, "g")
        expected_codes, expected_levels = pd.factorize(labels, sort=True)
        np.testing.assert_array_equal(codes, expected_codes)
        np.testing.assert_array_equal(levels, np.asarray(expected_levels))
    with pytest.raises(ValueError, match="missing labels in 1 rows"):
        encode_levels(np.array(["a", None], dtype=object), "g")


def test_fit_runs_on_one_blas_thread_and_restores_the_setting():
    from threadpoolctl import threadpool_info

    from skmlm._threads import single_blas_thread

    def blas_threads():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    before = blas_threads()
    with single_blas_thread():
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 60, 101, 5800, 5801, 5802, 5803])
def test_residual_quartiles_equal_numpy_quantile(n):
    """The summary's quartiles, read from the sorted values with np.quantile's
    interpolation arithmetic, are np.quantile's to the bit, ties and signed zeros included."""
    from skmlm._linear import RESIDUAL_QUANTILES, quartiles

    rng = np.random.default_rng(n)
    draws = [rng.standard_normal(n) * scale for scale in (1e-3, 1.0, 1e5)]
    draws += [rng.integers(-2, 3, n).astype(float), -np.abs(np.r_[np.zeros(n // 2), rng.standard_normal(n - n // 2)])]
    for values in draws:
        expected = np.quantile(values, RESIDUAL_QUANTILES)
        got = quartiles(values.copy())
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
