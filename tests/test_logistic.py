"""MixedLogisticClassifier: the scikit-learn API, prediction, edge cases and checks."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn import config_context
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmlm import GroupsMissingWarning, MixedLogisticClassifier
from skmlm.datasets import load_cbpp


def _sim(seed=0, n=400, m=20, sd=1.0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, m, n)
    g[:m] = np.arange(m)
    x = rng.normal(size=n)
    eta = -0.2 + 0.8 * x + rng.normal(0, sd, m)[g]
    y = (rng.random(n) < expit(eta)).astype(int)
    return pd.DataFrame({"x": x}), y, pd.Series([f"g{k:02d}" for k in g], name="g")


def _fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return MixedLogisticClassifier(**kwargs).fit(*args)


@pytest.fixture(scope="module")
def sim_fit():
    X, y, g = _sim()
    return X, y, g, _fit(X, y, g)


def test_labels_of_any_type_give_the_same_fit(sim_fit):
    X, y, g, m = sim_fit
    for labels in (np.where(y == 1, "yes", "no"), y == 1, y.astype(float) * 3):
        other = _fit(X, labels, g)
        assert other.log_likelihood_ == pytest.approx(m.log_likelihood_, abs=1e-8)
        assert list(other.classes_) == sorted(set(labels))
        assert set(other.predict(X, groups=g)) <= set(labels)


def test_more_or_fewer_than_two_classes_is_a_clear_error():
    X, y, g = _sim()
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        MixedLogisticClassifier().fit(X, y + (X["x"] > 1), groups=g)
    with pytest.raises(ValueError, match="1 class"):
        MixedLogisticClassifier().fit(X, np.ones(len(y)), groups=g)
    with pytest.raises(ValueError, match="Unknown label type"):
        MixedLogisticClassifier().fit(X, X["x"], groups=g)


def test_attributes(sim_fit):
    X, y, g, m = sim_fit
    assert m.coef_.shape == (1,) and isinstance(m.intercept_, float)
    assert list(m.fixed_effects_.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    assert m.random_effects_["g"].shape == (20, 1)
    assert m.random_covariance_["g"].shape == (1, 1)
    assert m.aic_ == pytest.approx(-2 * m.log_likelihood_ + 2 * 3)
    assert m.n_groups_ == {"g": 20} and m.converged_ and not m.singular_
    assert "deviance" in m.optimizer_log_.columns


def test_predict_proba_known_groups_are_conditional(sim_fit):
    X, y, g, m = sim_fit
    p = m.predict_proba(X, groups=g)
    assert p.shape == (len(y), 2) and np.allclose(p.sum(1), 1)
    b = m.random_effects_["g"].loc[g, "(Intercept)"].to_numpy()
    np.testing.assert_allclose(p[:, 1], expit(m.intercept_ + X["x"].to_numpy() * m.coef_[0] + b))
    np.testing.assert_allclose(m.decision_function(X, groups=g), m.intercept_ + X["x"].to_numpy() * m.coef_[0] + b)
    assert np.array_equal(m.predict(X, groups=g), m.classes_[(p[:, 1] > 0.5).astype(int)])


def test_predict_proba_unseen_levels_are_population_averaged(sim_fit):
    X, y, g, m = sim_fit
    eta = m.intercept_ + X["x"].to_numpy() * m.coef_[0]
    var = m.random_covariance_["g"].iloc[0, 0]
    with warnings.catch_warnings():  # no groups: population predictions, meant here
        warnings.simplefilter("ignore", GroupsMissingWarning)
        p_avg = m.predict_proba(X)[:, 1]
    p_new = m.predict_proba(X, groups=np.full(len(y), "new"))[:, 1]
    np.testing.assert_allclose(p_avg, p_new)
    # Monte Carlo check of E[expit(eta + b)], b ~ N(0, var)
    b = np.random.default_rng(1).normal(0, np.sqrt(var), 200000)
    assert p_avg[0] == pytest.approx(expit(eta[0] + b).mean(), abs=3e-3)
    # pulled towards 1/2 from the probability at b = 0, which the parameter gives
    p0 = m.predict_proba(X, unseen_levels="zero")[:, 1]
    np.testing.assert_allclose(p0, expit(eta))
    assert np.all(np.abs(p_avg - 0.5) <= np.abs(p0 - 0.5) + 1e-12)
    m0 = MixedLogisticClassifier(unseen_levels="zero").set_params()
    assert m0.unseen_levels == "zero"
    # decision function is the log-odds of the probability; predictions agree with it
    np.testing.assert_allclose(expit(m.decision_function(X)), p_avg)
    assert np.array_equal(m.predict(X), m.classes_[(p_avg > 0.5).astype(int)])


def test_crossed_factors_condition_on_known_integrate_unknown():
    rng = np.random.default_rng(3)
    n = 600
    a, b = rng.integers(0, 15, n), rng.integers(0, 8, n)
    x = rng.normal(size=n)
    y = (rng.random(n) < expit(0.5 * x + rng.normal(0, 1, 15)[a] + rng.normal(0, 0.7, 8)[b])).astype(int)
    G = pd.DataFrame({"a": a, "b": b})
    m = _fit(pd.DataFrame({"x": x}), y, G, random_slopes={"a": ["x"]})
    new = G.assign(b=99)
    p = m.predict_proba(pd.DataFrame({"x": x}), groups=new)[:, 1]
    re_a = m.random_effects_["a"].loc[a].to_numpy()
    eta = m.intercept_ + m.coef_[0] * x + re_a[:, 0] + re_a[:, 1] * x
    var_b = m.random_covariance_["b"].iloc[0, 0]
    from skmlm._generalized import population_average_mean
    from skmlm._core.family import get_family

    np.testing.assert_allclose(p, population_average_mean(get_family("binomial"), eta, np.full(n, var_b)))
    with pytest.raises(ValueError, match="lack the grouping factor"):
        m.predict_proba(pd.DataFrame({"x": x}), groups=G[["a"]])


def test_quadrature_several_factors_is_a_clear_error():
    X, y, g = _sim()
    G = pd.DataFrame({"g": g, "h": np.arange(len(y)) % 7})
    with pytest.raises(ValueError, match="single grouping factor"):
        _fit(X, y, G, n_quadrature_points=5)


def test_quadrature_with_slopes_uses_the_product_rule():
    X, y, g = _sim(n=300, m=15)
    lap = _fit(X, y, g, random_slopes=["x"])
    agq = _fit(X, y, g, random_slopes=["x"], n_quadrature_points=5)
    assert agq.converged_
    assert abs(agq.log_likelihood_ - lap.log_likelihood_) < 1.0
    assert "nAGQ = 5" in agq.summary()


def test_weights_equal_duplicated_rows(sim_fit):
    X, y, g, m = sim_fit
    w = np.where(np.arange(len(y)) % 3 == 0, 2.0, 1.0)
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    mw = _fit(X, y, g, w)
    md = _fit(X.iloc[rep], y[rep], g.iloc[rep])
    assert mw.log_likelihood_ == pytest.approx(md.log_likelihood_, abs=1e-6)
    np.testing.assert_allclose(mw.coef_, md.coef_, rtol=1e-5)


def test_shuffled_rows_and_relabelled_groups(sim_fit):
    X, y, g, m = sim_fit
    perm = np.random.default_rng(5).permutation(len(y))
    m2 = _fit(X.iloc[perm], y[perm], ("z" + g).iloc[perm])
    assert m2.log_likelihood_ == pytest.approx(m.log_likelihood_, abs=1e-7)
    np.testing.assert_allclose(m2.coef_, m.coef_, rtol=1e-5)


def test_separation_all_one_group_and_single_row_group_end_in_a_finite_fit():
    X, y, g = _sim(n=300, m=15)
    with pytest.warns(UserWarning, match="separated"):
        m = MixedLogisticClassifier().fit(X, (X["x"] > 0).astype(int), groups=g)
    assert np.all(np.isfinite(m.coef_)) and np.isfinite(m.log_likelihood_) and not m.converged_
    # a level whose outcomes are all equal, a level of one row: legitimate, and silent (as lme4)
    y2 = y.copy()
    y2[(g == "g03").to_numpy()] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MixedLogisticClassifier().fit(X, y2, groups=g)
    assert np.isfinite(m.log_likelihood_) and m.random_effects_["g"].loc["g03"].iloc[0] > 0 and m.converged_
    g3 = g.copy()
    g3.iloc[0] = "lonely"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MixedLogisticClassifier().fit(X, y, groups=g3)
    assert np.isfinite(m.log_likelihood_) and "lonely" in m.random_effects_["g"].index and m.converged_


def test_summary_reads_like_glmer():
    df = load_cbpp()
    X = df["period"].str.get_dummies().drop(columns="1").add_prefix("period").astype(float)
    m = MixedLogisticClassifier().fit(X, df["y"], groups=df["herd"])
    s = m.summary()
    for piece in ["(Laplace\n  Approximation)", "Family: binomial  ( logit )", "z value", "Pr(>|z|)", "herd, 15",
                  "logLik", "Signif. codes"]:
        assert piece in s
    assert m.log_likelihood_ == pytest.approx(-277.501941558616, abs=1e-6)


def test_pipeline_and_group_cross_validation():
    X, y, g = _sim(n=300, m=15)
    with config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pipe = make_pipeline(StandardScaler(), MixedLogisticClassifier())
        s = cross_val_score(pipe, X, y, params={"groups": g}, cv=GroupKFold(3), scoring="neg_log_loss")
    assert np.all(np.isfinite(s)) and len(s) == 3


_TRAIN = (
    "the check expects a training accuracy above 0.83 using every column as a feature; here the "
    "last column is the grouping factor (every row its own level), so the model sees one feature "
    "fewer and the blobs are not separable by the rest"
)
EXPECTED_FAILURES = {
    "check_classifiers_train": _TRAIN,
    "check_sample_weight_equivalence_on_dense_data": (
        "repeating a row repeats its group label, which adds an observation to that level, while a "
        "weight does not: the grouping column is part of X here, so the two are different models"
    ),
}
EXPECTED_FAILURES["check_sample_weight_equivalence_on_sparse_data"] = (
    EXPECTED_FAILURES["check_sample_weight_equivalence_on_dense_data"] + " (sparse X is made dense)"
)


@parametrize_with_checks([MixedLogisticClassifier(group_columns=[-1])], expected_failed_checks=lambda e: EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_no_fixed_effects_matches_glmer():
    """``y ~ 0 + (1 | herd)`` on cbpp: glmer (tolPwrss = 1e-12) gives logLik
    -303.850614453 and theta 2.246605; beta and its covariance are empty."""
    data = pd.read_csv(Path(__file__).parent / "golden" / "cbpp_binary_laplace.csv", dtype={"g_herd": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MixedLogisticClassifier(fit_intercept=False).fit(data[[]], data["y"], groups=data["g_herd"])
    assert m.log_likelihood_ == pytest.approx(-303.850614453, abs=1e-6)
    assert m.theta_[0] == pytest.approx(2.246605, rel=1e-5)
    assert m.coef_.shape == (0,) and m.coef_cov_.shape == (0, 0)
    assert "Fixed effects" not in m.summary() and "herd" in m.summary()  # as lme4: no empty table
