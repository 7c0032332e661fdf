"""BetweenWithinTransformer and between_within: values, names, lme4's between-within model, bad input."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from golden_cases import GOLDEN
from skmlm import BetweenWithinTransformer, MixedLinearRegressor, between_within
from skmlm.datasets import load_ess


@pytest.fixture(scope="module")
def ess():
    return load_ess()


@pytest.fixture
def small():
    X = pd.DataFrame({"x": [1.0, 3.0, 10.0, 14.0, 5.0], "z": [7.0, 7.0, 8.0, 8.0, 9.0], "g": ["a", "a", "b", "b", "c"]})
    return X


# --------------------------------------------------------------------------- values
def test_between_within_values(small):
    bw = BetweenWithinTransformer(columns=["x"], group_columns="g").set_output(transform="pandas")
    out = bw.fit_transform(small)
    assert list(out.columns) == ["x_between", "x_within", "z", "g"]
    np.testing.assert_allclose(out["x_between"], [2, 2, 12, 12, 5])
    np.testing.assert_allclose(out["x_within"], [-1, 1, -2, 2, 0])
    np.testing.assert_allclose(out["x_between"] + out["x_within"], small["x"])
    pd.testing.assert_series_equal(out["g"], small["g"])
    assert out["x_between"].dtype == np.float64 and out["g"].dtype == small["g"].dtype
    np.testing.assert_allclose(bw.grand_means_["x"], small["x"].mean())
    assert bw.group_means_.index.name == "g" and list(bw.group_means_.index) == ["a", "b", "c"]
    assert bw.factor_ == "g" and bw.columns_ == ["x"]


def test_within_and_grand_centering(small):
    X, g = small[["x", "z"]], small["g"]
    within = BetweenWithinTransformer(centering="within").set_output(transform="pandas").fit_transform(X, groups=g)
    assert list(within.columns) == ["x_within", "z"]  # z is constant within groups: level 2, kept whole
    np.testing.assert_allclose(within["z"], X["z"])
    grand_bw = BetweenWithinTransformer(centering="grand").set_output(transform="pandas")
    grand = grand_bw.fit_transform(X)  # no groups needed
    assert list(grand.columns) == ["x_grand_centered", "z_grand_centered"]
    np.testing.assert_allclose(grand.to_numpy(), X.to_numpy() - X.to_numpy().mean(axis=0))


def test_known_groups_use_the_means_from_fit(small):
    bw = BetweenWithinTransformer(columns="x", group_columns="g").fit(small)
    new = pd.DataFrame({"x": [100.0, 0.0], "z": [1.0, 1.0], "g": ["b", "a"]})
    out = bw.transform(new)
    np.testing.assert_allclose(out[:, :2].astype(float), [[12, 88], [2, -2]])


def test_fit_transform_equals_fit_then_transform_and_function(ess):
    X, g = ess[["eduyrs", "gnipc1000"]], ess["cntry"]
    bw = BetweenWithinTransformer(columns=["eduyrs"])
    a = bw.fit_transform(X, groups=g)
    b = bw.fit(X, groups=g).transform(X, groups=g)
    np.testing.assert_array_equal(a, b)
    c = between_within(X, g, columns="eduyrs")
    assert isinstance(c, pd.DataFrame)
    np.testing.assert_array_equal(c.to_numpy(), a)
    np.testing.assert_array_equal(between_within(X.to_numpy(), g.to_numpy(), columns=0), a)


def test_matches_the_reference_decomposition(ess):
    ref = pd.read_csv(GOLDEN / "ess_bw_gni_ml.csv")
    out = between_within(ess[["eduyrs"]], ess["cntry"])
    np.testing.assert_allclose(out["eduyrs_between"], ref["b_eduyrs"], atol=1e-12)
    np.testing.assert_allclose(out["eduyrs_within"], ref["w_eduyrs"], atol=1e-12)


def test_rows_shuffled_and_groups_relabelled(ess):
    X, g = ess[["eduyrs", "gnipc1000"]], ess["cntry"]
    base = BetweenWithinTransformer().fit_transform(X, groups=g)
    perm = np.random.default_rng(0).permutation(len(X))
    relabel = g.map({c: f"L{k:02d}" for k, c in enumerate(reversed(sorted(g.unique())))})
    out = BetweenWithinTransformer().fit_transform(X.iloc[perm], groups=relabel.iloc[perm].to_numpy())
    np.testing.assert_allclose(out, base[perm], rtol=1e-12)


# ---------------------------------------------------------------------- names/output
def test_feature_names_and_output_containers(small):
    Xa = small.to_numpy()  # object array: strings in the last column
    bw = BetweenWithinTransformer(columns=[0], group_columns=-1).fit(Xa)
    assert list(bw.get_feature_names_out()) == ["x0_between", "x0_within", "x1", "x2"]
    out = bw.transform(Xa)
    assert out.dtype == object and out.shape == (5, 4) and list(out[:, 3]) == list(small["g"])
    num = BetweenWithinTransformer(centering="within").fit(small[["x", "z"]].to_numpy(), groups=small["g"])
    assert num.transform(small[["x", "z"]].to_numpy(), groups=small["g"]).dtype == np.float64
    assert list(num.get_feature_names_out(["a", "b"])) == ["a_within", "b"]  # b (z) is level 2
    pd_out = clone(bw).set_output(transform="pandas").fit_transform(Xa)
    assert list(pd_out.columns) == ["x0_between", "x0_within", "x1", "x2"]
    assert pd_out["x0_within"].dtype == np.float64


def test_dataframe_index_is_kept(small):
    X = small.set_index(pd.Index([10, 11, 12, 13, 14]))
    out = BetweenWithinTransformer(columns="x", group_columns="g").set_output(transform="pandas").fit_transform(X)
    assert list(out.index) == [10, 11, 12, 13, 14]


# ------------------------------------------------------------------ several factors
def test_several_factors_the_user_picks_one():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 6.0]})
    g = pd.DataFrame({"school": ["s1", "s1", "s2", "s2"], "district": ["d1", "d2", "d1", "d2"]})
    with pytest.raises(ValueError, match="choose the one whose means are used with factor"):
        BetweenWithinTransformer().fit(X, groups=g)
    by_district = BetweenWithinTransformer(factor="district").fit(X, groups=g)
    np.testing.assert_allclose(by_district.transform(X, groups=g)[:, 0], [2, 4, 2, 4])
    by_position = BetweenWithinTransformer(factor=0).fit(X, groups=g)
    assert by_position.factor_ == "school"
    np.testing.assert_allclose(by_position.transform(X, groups=g)[:, 0], [1.5, 1.5, 4.5, 4.5])
    with pytest.raises(ValueError, match="not among the grouping factors"):
        BetweenWithinTransformer(factor="county").fit(X, groups=g)
    with pytest.raises(ValueError, match="lack the grouping factor 'district'"):
        by_district.transform(X, groups=g[["school"]])


def test_several_group_columns_pass_through():
    X = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 6.0], "school": ["s1", "s1", "s2", "s2"], "district": ["d1", "d2", "d1", "d2"]}
    )
    bw = BetweenWithinTransformer(group_columns=["school", "district"], factor="school").set_output(transform="pandas")
    out = bw.fit_transform(X)
    assert list(out.columns) == ["x_between", "x_within", "school", "district"]
    np.testing.assert_allclose(out["x_between"], [1.5, 1.5, 4.5, 4.5])


# -------------------------------------------------------------------- unseen groups
@pytest.fixture
def fitted_small(small):
    return small, BetweenWithinTransformer(columns="x", group_columns="g")


def test_unseen_groups_own_mean(fitted_small):
    small, bw = fitted_small
    bw.set_params(unseen_groups="own_mean").fit(small)
    new = pd.DataFrame({"x": [4.0, 8.0, 1.0, 20.0], "z": 0.0, "g": ["new", "new", "a", "other"]})
    out = bw.transform(new)[:, :2].astype(float)
    np.testing.assert_allclose(out, [[6, -2], [6, 2], [2, -1], [20, 0]])


def test_unseen_groups_grand_mean(fitted_small):
    small, bw = fitted_small
    bw.set_params(unseen_groups="grand_mean").fit(small)
    new = pd.DataFrame({"x": [4.0, 8.0, 1.0], "z": 0.0, "g": ["new", "new", "a"]})
    out = bw.transform(new)[:, :2].astype(float)
    m = small["x"].mean()
    np.testing.assert_allclose(out, [[m, 4 - m], [m, 8 - m], [2, -1]])


def test_unseen_groups_error(fitted_small):
    small, bw = fitted_small
    bw.set_params(unseen_groups="error").fit(small)
    bw.transform(small)  # known levels only: fine
    new = pd.DataFrame({"x": [4.0, 8.0], "z": 0.0, "g": ["new", "a"]})
    with pytest.raises(ValueError, match=r"1 level\(s\) of 'g' not seen in fit, e.g. \['new'\]"):
        bw.transform(new)


# ------------------------------------------------------------------------ bad input
def test_groups_of_the_wrong_length_at_transform(ess):
    X, g = ess[["eduyrs"]].iloc[:100], ess["cntry"].iloc[:100]
    bw = BetweenWithinTransformer().fit(X, groups=g)
    with pytest.raises(ValueError, match="groups has 99 rows but X has 100"):
        bw.transform(X, groups=g.iloc[:99])


def test_groups_missing_at_transform(small):
    bw = BetweenWithinTransformer(columns="x").fit(small[["x"]], groups=small["g"])
    with pytest.raises(ValueError, match="groups is required to transform with centering='between_within'"):
        bw.transform(small[["x"]])
    with pytest.raises(ValueError, match="groups is required"):
        BetweenWithinTransformer().fit(small[["x"]])


def test_grouping_column_missing_from_X(small):
    with pytest.raises(ValueError, match="group_columns column 'cntry' is not a column of X"):
        BetweenWithinTransformer(group_columns="cntry").fit(small)
    bw = BetweenWithinTransformer(columns="x", group_columns="g").fit(small)
    with pytest.raises(ValueError, match="missing"):
        bw.transform(small.drop(columns="g"))
    with pytest.raises(ValueError, match="out of range"):
        BetweenWithinTransformer(group_columns=5).fit(small.to_numpy())


def test_other_bad_input(small):
    with pytest.raises(ValueError, match="columns column 'w' is not a column of X"):
        BetweenWithinTransformer(columns="w", group_columns="g").fit(small)
    with pytest.raises(ValueError, match="are grouping columns"):
        BetweenWithinTransformer(columns=["x", "g"], group_columns="g").fit(small)
    bad = small.assign(x=[1.0, np.nan, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="NaN"):
        BetweenWithinTransformer(columns="x", group_columns="g").fit(bad)
    with pytest.raises(ValueError, match="missing"):
        BetweenWithinTransformer(columns="x").fit(small[["x"]], groups=[1.0, np.nan, 2.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="missing"):
        BetweenWithinTransformer(columns=[0], group_columns=1).fit(np.array([[1.0, 1.0], [2.0, np.nan], [3.0, 2.0]]))
    with pytest.raises(ValueError, match="would repeat"):
        BetweenWithinTransformer(columns="x").fit(small[["x"]].assign(x_within=1.0), groups=small["g"])
    with pytest.raises(ValueError, match="centering"):
        BetweenWithinTransformer(centering="cluster").fit(small[["x"]], groups=small["g"])


# ------------------------------------------------------------------- with the model
def test_pipeline_reaches_lme4_between_within_model(ess):
    """stflife ~ b_eduyrs + w_eduyrs + gnipc1000 + (1 | cntry), ML, from raw eduyrs."""
    ref = json.loads((GOLDEN / "ess_bw_gni_ml.json").read_text())
    X, y = ess[["eduyrs", "gnipc1000", "cntry"]], ess["stflife"]
    pipe = make_pipeline(
        BetweenWithinTransformer(columns=["eduyrs"], group_columns="cntry"),
        MixedLinearRegressor(reml=False, group_columns="cntry"),
    ).set_output(transform="pandas")
    pipe.fit(X, y)
    m = pipe[-1]
    assert abs(m.log_likelihood_ - ref["logLik"]) < 1e-5
    fe = m.fixed_effects_["Estimate"]
    assert list(fe.index) == ["(Intercept)", "eduyrs_between", "eduyrs_within", "gnipc1000"]
    expected = [ref["fixef"][k] for k in ["(Intercept)", "b_eduyrs", "w_eduyrs", "gnipc1000"]]
    np.testing.assert_allclose(fe.to_numpy(), expected, rtol=1e-4)


def test_within_coefficient_is_the_fixed_effects_estimate(ess):
    """The coefficient of x_within equals the group-dummy (fixed-effects) OLS estimate of x."""
    X, y, g = ess[["eduyrs", "gnipc1000"]], ess["stflife"].to_numpy(float), ess["cntry"]
    pipe = make_pipeline(BetweenWithinTransformer(columns=["eduyrs"]), MixedLinearRegressor(reml=True))
    pipe.fit(X, y, betweenwithintransformer__groups=g, mixedlinearregressor__groups=g)
    within = pipe[-1].coef_[1]
    dummies = pd.get_dummies(g, dtype=float).to_numpy()
    beta, *_ = np.linalg.lstsq(np.column_stack([ess["eduyrs"].to_numpy(float), dummies]), y, rcond=None)
    np.testing.assert_allclose(within, beta[0], rtol=1e-8)
    # and it is exact at any variance, not only at the optimum: ML gives the same value
    ml = MixedLinearRegressor(reml=False).fit(pipe[0].transform(X, groups=g), y, groups=g)
    np.testing.assert_allclose(ml.coef_[1], beta[0], rtol=1e-8)


def _grand_centering_fits(ess, slopes):
    d = ess.iloc[::4]
    X, y, g = d[["eduyrs", "gnipc1000"]], d["stflife"], d["cntry"]
    raw = MixedLinearRegressor(random_slopes=["eduyrs"] if slopes else None, reml=False).fit(X, y, groups=g)
    Xc = between_within(X, centering="grand")
    assert list(Xc.columns) == ["eduyrs_grand_centered", "gnipc1000_grand_centered"]
    slopes_c = ["eduyrs_grand_centered"] if slopes else None
    cen = MixedLinearRegressor(random_slopes=slopes_c, reml=False).fit(Xc, y, groups=g)
    return raw, cen, X, Xc, g


def test_grand_mean_centering_changes_no_fit(ess):
    raw, cen, X, Xc, g = _grand_centering_fits(ess, slopes=False)
    assert abs(raw.log_likelihood_ - cen.log_likelihood_) < 1e-6
    np.testing.assert_allclose(raw.coef_, cen.coef_, rtol=1e-6)
    np.testing.assert_allclose(raw.predict(X, groups=g), cen.predict(Xc, groups=g), rtol=1e-8)


def test_grand_mean_centering_changes_no_fit_with_random_slope(ess):
    raw, cen, X, Xc, g = _grand_centering_fits(ess, slopes=True)
    assert abs(raw.log_likelihood_ - cen.log_likelihood_) < 1e-5
    np.testing.assert_allclose(raw.coef_, cen.coef_, rtol=1e-4)


# ------------------------------------------------------------- clone, params, pickle
def test_clone_get_set_params_round_trip():
    bw = BetweenWithinTransformer(columns=["eduyrs"], centering="within", unseen_groups="error", factor="cntry",
                                  group_columns=["cntry"])
    params = bw.get_params()
    assert params == clone(bw).get_params()
    other = BetweenWithinTransformer().set_params(**params)
    assert other.get_params() == params
    pipe = make_pipeline(bw, MixedLinearRegressor(group_columns="cntry"))
    pipe2 = clone(pipe).set_params(betweenwithintransformer__centering="grand", mixedlinearregressor__reml=False)
    assert pipe2[0].centering == "grand" and pipe2[-1].reml is False and bw.centering == "within"
    assert clone(pipe2).get_params()["betweenwithintransformer__unseen_groups"] == "error"


def test_pickled_fitted_pipeline_predicts_the_same(ess):
    d = ess.iloc[::5]
    X, y = d[["eduyrs", "gnipc1000", "cntry"]], d["stflife"]
    pipe = make_pipeline(
        BetweenWithinTransformer(columns=["eduyrs"], group_columns="cntry"),
        MixedLinearRegressor(random_slopes=["eduyrs_within"], group_columns="cntry"),
    ).set_output(transform="pandas").fit(X, y)
    back = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(back.predict(X), pipe.predict(X))
    pd.testing.assert_frame_equal(back[0].group_means_, pipe[0].group_means_)


# ---------------------------------------------------------- scikit-learn's own checks
@parametrize_with_checks([BetweenWithinTransformer(group_columns=[-1]), BetweenWithinTransformer(centering="grand")])
def test_sklearn_compatible(estimator, check):
    """The checks call fit(X) without groups: the factor is X's last column, or none is needed."""
    check(estimator)


def test_group_constant_columns_stay_whole_with_columns_none(ess):
    """A country-level column (GNI) has no within part: with columns=None it passes through
    whole (a 'within' column of rounding noise would be fitted with an absurd coefficient);
    naming it in columns is an error."""
    X, g = ess[["eduyrs", "gnipc1000"]], ess["cntry"]
    out = BetweenWithinTransformer().set_output(transform="pandas").fit(X, groups=g)
    assert out.level2_columns_ == ["gnipc1000"]
    assert list(out.get_feature_names_out()) == ["eduyrs_between", "eduyrs_within", "gnipc1000"]
    Xt = out.transform(X, groups=g)
    pd.testing.assert_series_equal(Xt["gnipc1000"], X["gnipc1000"], check_dtype=False)
    with pytest.raises(ValueError, match="constant within every group"):
        BetweenWithinTransformer(columns=["eduyrs", "gnipc1000"]).fit(X, groups=g)
