"""``groups`` through scikit-learn: (a) with metadata routing on, (b) with it off (groups as columns of X).

Routing is switched on only inside ``sklearn.config_context`` so that no test leaks it.
"""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import (
    GridSearchCV, GroupKFold, KFold, cross_val_predict, cross_val_score, cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.utils.metadata_routing import MetadataRequest, _routing_enabled

from skmlm import BetweenWithinTransformer, MixedLinearRegressor
from skmlm.datasets import load_ess

GRID = {"mixedlinearregressor__random_slopes": [None, ["eduyrs_within"]], "mixedlinearregressor__reml": [True, False]}


@pytest.fixture(scope="module")
def data():
    d = load_ess().iloc[::4].reset_index(drop=True)  # 29 countries x 50 people
    return d[["eduyrs", "gnipc1000"]], d["stflife"], d["cntry"], d[["eduyrs", "gnipc1000", "cntry"]]


def routed_pipe():
    """No set_*_request anywhere: both steps request groups by default."""
    return make_pipeline(
        BetweenWithinTransformer(columns=["eduyrs"]), MixedLinearRegressor(reml=False)
    ).set_output(transform="pandas")


def column_pipe(group_columns="cntry"):
    return make_pipeline(
        BetweenWithinTransformer(columns=["eduyrs"], group_columns=group_columns),
        MixedLinearRegressor(reml=False, group_columns=group_columns),
    ).set_output(transform="pandas")


def routing():
    return sklearn.config_context(enable_metadata_routing=True)


def by_hand(X, y, g, train, test, conditional):
    """Fit both steps on the training rows; predict the test rows with or without their groups."""
    bw = BetweenWithinTransformer(columns=["eduyrs"]).set_output(transform="pandas")
    Xt = bw.fit_transform(X.iloc[train], groups=g.iloc[train])
    m = MixedLinearRegressor(reml=False, missing_groups="warn" if conditional else "population")
    m.fit(Xt, y.iloc[train], groups=g.iloc[train])
    Xs = bw.transform(X.iloc[test], groups=g.iloc[test])
    return m.predict(Xs, groups=g.iloc[test] if conditional else None)


# ------------------------------------------------------------------ (a) routing on
def test_no_routing_leaks_out_of_the_tests():
    with routing():
        assert _routing_enabled()
    assert not _routing_enabled()


def test_default_requests():
    bw = BetweenWithinTransformer()
    r = bw.get_metadata_routing()
    assert r.fit.requests == {"groups": True} and r.transform.requests == {"groups": True}
    assert MixedLinearRegressor().get_metadata_routing().score.requests["groups"] is True


def test_pipeline_routes_groups_to_every_step(data):
    X, y, g, _ = data
    with routing(), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "fit_transform does not forward metadata"
        pipe = routed_pipe().fit(X, y, groups=g)
        pred = pipe.predict(X, groups=g)  # groups reach transform and predict
        score = pipe.score(X, y, groups=g)
    assert pipe[0].factor_ == "cntry" and pipe[-1].n_groups_ == {"cntry": 29}
    bw = BetweenWithinTransformer(columns=["eduyrs"]).set_output(transform="pandas")
    Xt = bw.fit_transform(X, groups=g)
    m = MixedLinearRegressor(reml=False).fit(Xt, y, groups=g)
    np.testing.assert_allclose(pred, m.predict(Xt, groups=g), rtol=1e-12)
    np.testing.assert_allclose(score, m.score(Xt, y, groups=g), rtol=1e-12)
    population = m.predict(Xt, groups=np.full(len(y), "a new country"))
    assert not np.allclose(pred, population)  # conditional, not population, predictions


def test_cross_validate_with_group_kfold(data):
    X, y, g, _ = data
    cv = GroupKFold(n_splits=4)
    with routing():
        res = cross_validate(routed_pipe(), X, y, cv=cv, params={"groups": g}, return_estimator=True)
        scores = cross_val_score(routed_pipe(), X, y, cv=cv, params={"groups": g})
    np.testing.assert_allclose(res["test_score"], scores, rtol=1e-12)
    for (train, test), s, est in zip(cv.split(X, y, g), scores, res["estimator"]):
        assert not set(g.iloc[train]) & set(g.iloc[test])
        assert est[-1].n_groups_["cntry"] == g.iloc[train].nunique()
        pred = by_hand(X, y, g, train, test, conditional=False)  # unseen countries: population
        yt = y.iloc[test]
        np.testing.assert_allclose(s, 1 - np.sum((yt - pred) ** 2) / np.sum((yt - yt.mean()) ** 2), rtol=1e-8)


def test_grid_search_routes_groups_to_fit_and_score(data):
    X, y, g, _ = data
    cv = KFold(n_splits=3, shuffle=True, random_state=0)  # rows: test countries are known
    with routing():
        gs = GridSearchCV(routed_pipe(), GRID, cv=cv).fit(X, y, groups=g)
        assert gs.score(X, y, groups=g) == pytest.approx(gs.best_estimator_.score(X, y, groups=g))
    assert gs.best_estimator_[-1].n_groups_ == {"cntry": 29}
    k = int(np.flatnonzero((gs.cv_results_["param_mixedlinearregressor__random_slopes"] == None)  # noqa: E711
                           & (gs.cv_results_["param_mixedlinearregressor__reml"] == False))[0])  # noqa: E712
    for i, (train, test) in enumerate(cv.split(X)):
        pred = by_hand(X, y, g, train, test, conditional=True)
        yt = y.iloc[test]
        r2 = 1 - np.sum((yt - pred) ** 2) / np.sum((yt - yt.mean()) ** 2)
        assert gs.cv_results_[f"split{i}_test_score"][k] == pytest.approx(r2, rel=1e-8)


def test_grid_search_with_group_kfold(data):
    X, y, g, _ = data
    with routing():
        gs = GridSearchCV(routed_pipe(), GRID, cv=GroupKFold(n_splits=3)).fit(X, y, groups=g)
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert set(gs.best_params_) == set(GRID)


class GroupedScorer:
    """The docs' recipe: a scorer that requests groups and passes them to predict."""

    def __init__(self, metric, greater_is_better=True):
        self.metric, self.sign = metric, 1 if greater_is_better else -1

    def __call__(self, estimator, X, y, groups=None):
        return self.sign * self.metric(y, estimator.predict(X, groups=groups))

    def get_metadata_routing(self):
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="groups", alias=True)
        return request


def test_a_scorer_that_requests_groups(data):
    X, y, g, _ = data
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    scoring = {"mse": GroupedScorer(mean_squared_error, greater_is_better=False)}
    with routing():
        res = cross_validate(routed_pipe(), X, y, cv=cv, params={"groups": g}, scoring=scoring)
    for i, (train, test) in enumerate(cv.split(X)):
        pred = by_hand(X, y, g, train, test, conditional=True)
        assert -res["test_mse"][i] == pytest.approx(mean_squared_error(y.iloc[test], pred), rel=1e-8)


def test_named_scorers_do_not_pass_groups_to_predict(data):
    """scikit-learn's scorers call predict without metadata: the transformer says so."""
    X, y, g, _ = data
    pipe = routed_pipe()
    with routing():
        pipe.fit(X, y, groups=g)
        with pytest.raises(ValueError, match="named scorers"):
            sklearn.metrics.get_scorer("r2")(pipe, X, y)


# ----------------------------------------------------------------- (b) routing off
def test_group_columns_pipeline_equals_routed_pipeline(data):
    X, y, g, Xg = data
    assert not _routing_enabled()
    pipe = column_pipe().fit(Xg, y)
    assert list(pipe[0].get_feature_names_out()) == ["eduyrs_between", "eduyrs_within", "gnipc1000", "cntry"]
    with routing():
        routed = routed_pipe().fit(X, y, groups=g)
        expected = routed.predict(X, groups=g)
    np.testing.assert_allclose(pipe.predict(Xg), expected, rtol=1e-10)
    assert pipe.score(Xg, y) == pytest.approx(routed[-1].score(routed[0].transform(X, groups=g), y, groups=g))


def test_group_columns_as_positions_with_arrays(data):
    X, y, g, Xg = data
    A = Xg.to_numpy()  # object array, country last
    pipe = make_pipeline(
        BetweenWithinTransformer(columns=[0], group_columns=-1), MixedLinearRegressor(reml=False, group_columns=-1)
    ).fit(A, y)
    np.testing.assert_allclose(pipe.predict(A), column_pipe().fit(Xg, y).predict(Xg), rtol=1e-10)
    np.testing.assert_allclose(pipe[-1].coef_, column_pipe().fit(Xg, y)[-1].coef_, rtol=1e-10)


def test_row_kfold_gives_conditional_predictions(data):
    X, y, g, Xg = data
    cv = KFold(n_splits=3, shuffle=True, random_state=1)
    pred = cross_val_predict(column_pipe(), Xg, y, cv=cv)
    for train, test in cv.split(Xg):
        np.testing.assert_allclose(pred[test], by_hand(X, y, g, train, test, conditional=True), rtol=1e-8)
        assert not np.allclose(pred[test], by_hand(X, y, g, train, test, conditional=False))


def test_group_kfold_gives_population_predictions(data):
    X, y, g, Xg = data
    cv = GroupKFold(n_splits=3)
    pred = cross_val_predict(column_pipe(), Xg, y, cv=cv, groups=g)  # groups reach the splitter only
    for train, test in cv.split(Xg, y, g):
        np.testing.assert_allclose(pred[test], by_hand(X, y, g, train, test, conditional=False), rtol=1e-8)
    scores = cross_val_score(column_pipe(), Xg, y, cv=cv, groups=g)
    assert np.isfinite(scores).all()


def test_grid_search_with_group_columns(data):
    X, y, g, Xg = data
    gs = GridSearchCV(column_pipe(), GRID, cv=GroupKFold(n_splits=3), scoring="neg_mean_squared_error")
    gs.fit(Xg, y, groups=g)
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert gs.predict(Xg).shape == (len(y),)  # GridSearchCV.predict takes X only: groups are in X


def test_routing_on_with_group_columns_too(data):
    """group_columns also work with routing on, when no groups are passed."""
    X, y, g, Xg = data
    with routing():
        pred = column_pipe().fit(Xg, y).predict(Xg)
        with pytest.raises(ValueError, match="both as an argument and through group_columns"):
            column_pipe().fit(Xg, y, groups=g)
    np.testing.assert_allclose(pred, column_pipe().fit(Xg, y).predict(Xg))
