"""No silent traps in scikit-learn workflows: one test per behaviour of the issue.

1. Named scorers, ``GridSearchCV.predict`` and ``CalibratedClassifierCV`` call predict
   without groups. With the groups in X (``group_columns``) they score the model with its
   random effects; a model fitted with groups that is asked to predict without them says
   so, once.
2. Routing off, ``cross_validate(..., groups=g)``: the error says the groups went to the
   splitter and what to do.
3. Column names after a ``ColumnTransformer`` (``num__price``): the original name works.
4. A missing group label at predict time is an unseen level (or an error, on request).
5. Labels of another type at predict time (ints in fit, strings in predict) match by text.

Metadata routing is switched on only inside ``sklearn.config_context``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import mean_squared_error, roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

import skmlm
from skmlm import MixedLinearRegressor, MixedLogisticClassifier, MixedPoissonRegressor
from skmlm.datasets import make_store_sales


@pytest.fixture(scope="module")
def stores():
    """80 stores x 15 weeks: a random intercept and price slope per store; ids 308, 309, ..."""
    return make_store_sales(n_stores=80, n_weeks=15)


def routing():
    return sklearn.config_context(enable_metadata_routing=True)


def preprocess():
    """The practitioner's ColumnTransformer: one-hot region, a spline of temperature, price as
    it is, the store passed through (remainder), all with their prefixed names."""
    return ColumnTransformer(
        [("cat", OneHotEncoder(drop="first", sparse_output=False), ["region"]),
         ("spline", SplineTransformer(n_knots=4, include_bias=False), ["temp"]),
         ("num", "passthrough", ["price"])],
        remainder="passthrough",
    ).set_output(transform="pandas")


FEATURES = ["region", "temp", "price", "store"]


def by_hand(model, df, y, train, test, predict="predict"):
    """Fit the preprocessing and the model on the training rows; predict the test rows with
    their groups passed explicitly."""
    ct = preprocess()
    Xt = ct.fit_transform(df.iloc[train][["region", "temp", "price"]])
    m = sklearn.base.clone(model).fit(Xt, y.iloc[train], groups=df["store"].iloc[train])
    Xs = ct.transform(df.iloc[test][["region", "temp", "price"]])
    return getattr(m, predict)(Xs, groups=df["store"].iloc[test])


# ---------------------------------------------------------------- 1. scorers, searches, calibration
def test_1_named_scorers_search_and_calibration_use_the_groups(stores):
    """The natural workflow (groups in X) scores the mixed model; routing without groups warns."""
    df = stores
    X, y = df[FEATURES], df["sales"]
    cv = KFold(n_splits=3, shuffle=True, random_state=0)  # rows: test stores were seen in fit
    grid = {"mixedlinearregressor__random_slopes": [None, ["price"]]}
    pipe = make_pipeline(preprocess(), MixedLinearRegressor(group_columns="store"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind along the natural path
        gs = GridSearchCV(pipe, grid, cv=cv, scoring="neg_root_mean_squared_error").fit(X, y)
    for k, slopes in enumerate(gs.cv_results_["param_mixedlinearregressor__random_slopes"]):
        model = MixedLinearRegressor(random_slopes=slopes)
        for i, (train, test) in enumerate(cv.split(X)):
            rmse = mean_squared_error(y.iloc[test], by_hand(model, df, y, train, test)) ** 0.5
            assert -gs.cv_results_[f"split{i}_test_score"][k] == pytest.approx(rmse, rel=1e-9)
    assert gs.best_params_ == {"mixedlinearregressor__random_slopes": ["price"]}  # the true model
    everything = np.arange(len(y))  # GridSearchCV.predict takes X only: the groups are in it
    expected = by_hand(MixedLinearRegressor(random_slopes=["price"]), df, y, everything, everything)
    np.testing.assert_allclose(gs.predict(X), expected, rtol=1e-9)

    # a classifier: roc_auc and calibration see the probabilities with each store's effect
    yb = df["sold_out"]
    clf = make_pipeline(preprocess(), MixedLogisticClassifier(group_columns="store"))
    auc = cross_validate(clf, X, yb, cv=cv, scoring="roc_auc")["test_score"]
    for i, (train, test) in enumerate(cv.split(X)):
        p = by_hand(MixedLogisticClassifier(), df, yb, train, test, "predict_proba")[:, 1]
        assert auc[i] == pytest.approx(roc_auc_score(yb.iloc[test], p), rel=1e-12)
    cal = CalibratedClassifierCV(clf, method="isotonic", cv=cv).fit(X, yb)
    for (train, test), fitted in zip(cv.split(X), cal.calibrated_classifiers_):
        iso = IsotonicRegression(out_of_bounds="clip").fit(
            by_hand(MixedLogisticClassifier(), df, yb, train, test, "decision_function"), yb.iloc[test])
        np.testing.assert_allclose(fitted.calibrators[0].y_thresholds_, iso.y_thresholds_, rtol=1e-12)

    # routing on, groups passed once, a named scorer: predict gets no groups, and says so
    Xf = df[["price", "temp"]]
    with routing(), pytest.warns(UserWarning, match="population prediction") as record:
        cross_validate(MixedLinearRegressor(random_slopes=["price"]), Xf, y, cv=cv, params={"groups": df["store"]},
                       scoring="neg_root_mean_squared_error")
    assert all(issubclass(w.category, skmlm.GroupsMissingWarning) for w in record
               if "population prediction" in str(w.message))
    assert sum("population prediction" in str(w.message) for w in record) == cv.get_n_splits()  # once per model
    # ... and a scorer that routes groups scores the model itself
    with routing(), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        res = cross_validate(MixedLinearRegressor(), Xf, y, cv=cv, params={"groups": df["store"]},
                             scoring=skmlm.make_grouped_scorer("neg_root_mean_squared_error"))
    for i, (train, test) in enumerate(cv.split(X)):
        m = MixedLinearRegressor().fit(Xf.iloc[train], y.iloc[train], groups=df["store"].iloc[train])
        pred = m.predict(Xf.iloc[test], groups=df["store"].iloc[test])
        assert -res["test_score"][i] == pytest.approx(mean_squared_error(y.iloc[test], pred) ** 0.5, rel=1e-12)


def test_1_population_on_purpose_and_once_per_fit(stores):
    df = stores
    X, y, g = df[["price", "temp"]], df["sales"], df["store"]
    m = MixedLinearRegressor().fit(X, y, groups=g)
    with pytest.warns(skmlm.GroupsMissingWarning, match="group_columns"):
        pop = m.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(m.predict(X), pop)  # once per fitted model
        m.set_params(missing_groups="population").fit(X, y, groups=g)
        np.testing.assert_allclose(m.predict(X), m.intercept_ + X.to_numpy() @ m.coef_)
        m.score(X, y)
    with pytest.raises(ValueError, match="no groups"):
        m.set_params(missing_groups="error").fit(X, y, groups=g).predict(X)
    c = MixedLogisticClassifier().fit(X, df["sold_out"], groups=g)
    with pytest.warns(skmlm.GroupsMissingWarning):
        c.decision_function(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.predict_proba(X), c.predict(X), c.score(X, df["sold_out"])  # warned already
    p = MixedPoissonRegressor().fit(X, np.round(df["sales"]).clip(0), groups=g)
    with pytest.warns(skmlm.GroupsMissingWarning):
        p.score(X, np.round(df["sales"]).clip(0))


# ---------------------------------------------------------------- 2. groups that went to the splitter
def test_2_groups_passed_to_a_tool_with_routing_off_explains(stores):
    df = stores
    X, y, g = df[["price", "temp"]], df["sales"], df["store"]
    with pytest.raises(ValueError, match="splitter") as err:
        cross_validate(MixedLinearRegressor(), X, y, groups=g, cv=GroupKFold(3), error_score="raise")
    message = str(err.value)
    assert "group_columns" in message and "enable_metadata_routing" in message
    # the same for a pipeline that starts with the centering transformer
    pipe = make_pipeline(skmlm.BetweenWithinTransformer(columns=["price"]), MixedLinearRegressor())
    with pytest.raises(ValueError, match="splitter"):
        cross_validate(pipe, X, y, groups=g, cv=GroupKFold(3), error_score="raise")


# ---------------------------------------------------------------- 3. names after a ColumnTransformer
def test_3_original_column_names_after_a_column_transformer(stores):
    df = stores
    X, y = df[FEATURES], df["sales"]
    pipe = make_pipeline(preprocess(), MixedLinearRegressor(random_slopes=["price"], group_columns="store")).fit(X, y)
    m = pipe[-1]
    assert list(m.random_effects_) == ["store"]  # the factor keeps the name it was given
    assert list(m.random_covariance_["store"].columns) == ["(Intercept)", "num__price"]
    Xt = pipe[0].transform(X).rename(columns={"remainder__store": "store", "num__price": "price"})
    direct = MixedLinearRegressor(random_slopes=["price"], group_columns="store").fit(Xt, y)
    np.testing.assert_allclose(m.coef_, direct.coef_, rtol=1e-10)
    np.testing.assert_allclose(pipe.predict(X), direct.predict(Xt), rtol=1e-10)
    # a dict of slopes per factor, and the centering transformer, take the original names too
    pipe = make_pipeline(preprocess(), MixedLinearRegressor(random_slopes={"store": ["price"]}, group_columns="store"))
    np.testing.assert_allclose(pipe.fit(X, y)[-1].coef_, m.coef_, rtol=1e-10)
    bw = skmlm.BetweenWithinTransformer(columns=["price"], group_columns="store").set_output(transform="pandas")
    out = make_pipeline(preprocess(), bw).fit_transform(X)
    assert {"num__price_between", "num__price_within", "remainder__store"} <= set(out.columns)
    # a name that fits several columns is refused, naming them
    Xa = pd.DataFrame({"a__x": [1.0, 2, 3, 4], "b__x": [2.0, 1, 4, 3], "g": [1, 1, 2, 2]})
    with pytest.raises(ValueError, match="a__x.*b__x"):
        MixedLinearRegressor(random_slopes=["x"], group_columns="g").fit(Xa, [1.0, 2, 4, 3])


# ---------------------------------------------------------------- 4. a missing group label at predict
@pytest.mark.parametrize("missing", [np.nan, None])
def test_4_missing_group_label_at_predict_is_an_unseen_level(stores, missing):
    df = stores
    X, y, g = df[["price", "temp"]], df["sales"], df["store"]
    labels = g.astype(object).copy()
    labels.iloc[:5] = missing
    for model in (MixedLinearRegressor(random_slopes=["price"]), MixedLogisticClassifier()):
        target = y if isinstance(model, MixedLinearRegressor) else df["sold_out"]
        m = model.fit(X, target, groups=g)
        method = m.predict if isinstance(m, MixedLinearRegressor) else m.decision_function
        got = method(X, groups=labels)
        np.testing.assert_allclose(got[:5], method(X.iloc[:5], groups=["a new store"] * 5), rtol=1e-12)
        np.testing.assert_allclose(got[5:], method(X.iloc[5:], groups=g.iloc[5:]), rtol=1e-12)
        with pytest.raises(ValueError, match="5 rows.*missing"):
            method(X, groups=labels, unseen_levels="error")
        with pytest.raises(ValueError, match="not seen in fit"):
            m.set_params(unseen_levels="error").fit(X, target, groups=g)
            method = m.predict if isinstance(m, MixedLinearRegressor) else m.decision_function
            method(X.iloc[:3], groups=["a new store"] * 3)
    # through group_columns, a missing label in X as well
    Xg = df[["price", "temp", "store"]].astype({"store": float})
    m = MixedLinearRegressor(group_columns="store").fit(Xg, y)
    Xn = Xg.copy()
    Xn.loc[:4, "store"] = np.nan
    np.testing.assert_allclose(m.predict(Xn)[:5], m.intercept_ + X.iloc[:5].to_numpy() @ m.coef_, rtol=1e-12)


# ---------------------------------------------------------------- 5. labels of another type
def test_5_labels_of_another_type_match_by_their_text(stores):
    df = stores
    X, y, g = df[["price", "temp"]], df["sales"], df["store"]  # ints 308, 309, ...
    assert g.dtype.kind == "i"
    for model, target in ((MixedLinearRegressor(random_slopes=["price"]), y),
                          (MixedLogisticClassifier(), df["sold_out"])):
        m = model.fit(X, target, groups=g)
        method = m.predict if isinstance(m, MixedLinearRegressor) else m.predict_proba
        expected = method(X, groups=g)
        np.testing.assert_allclose(method(X, groups=g.astype(str)), expected, rtol=1e-12)  # "308", ...
        np.testing.assert_allclose(method(X, groups=g.astype(float)), expected, rtol=1e-12)  # 308.0, ...
        np.testing.assert_allclose(method(X, groups=g.astype("category")), expected, rtol=1e-12)
        # and the other way round: fitted on strings, asked with ints
        m = sklearn.base.clone(model).fit(X, target, groups=g.astype(str))
        method = m.predict if isinstance(m, MixedLinearRegressor) else m.predict_proba
        np.testing.assert_allclose(method(X, groups=g), expected, rtol=1e-6)
    # the centering transformer of a pipeline matches labels the same way
    bw = skmlm.BetweenWithinTransformer(columns=["price"], unseen_groups="grand_mean").fit(X, groups=g)
    np.testing.assert_array_equal(bw.transform(X, groups=g.astype(str)), bw.transform(X, groups=g))
