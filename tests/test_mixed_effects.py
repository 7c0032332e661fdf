"""MixedEffectsRegressor and MixedEffectsClassifier: random effects on top of any scikit-learn model."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor

from skmlm import MixedEffectsClassifier, MixedEffectsRegressor, MixedLinearRegressor
from skmlm.datasets import load_sleepstudy


def fast_hgb(**kw):
    return HistGradientBoostingRegressor(max_iter=40, random_state=0, **kw)


def simulate(seed=0, n_groups=80, sd_group=2.0, binary=False, group_feature=False):
    """y = f(x) + b_g (+ noise), f nonlinear; with ``group_feature`` a column constant within groups
    (through which a flexible f can tell the groups apart)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rng.integers(10, 40, n_groups))
    n = len(g)
    X = pd.DataFrame({"x": rng.uniform(size=n), "w": rng.uniform(size=n)})
    if group_feature:
        X["z"] = rng.uniform(size=n_groups)[g]
    b = rng.normal(0, sd_group, n_groups)
    eta = 2 * np.sin(6 * X["x"].to_numpy()) + X["w"].to_numpy() + b[g]
    if binary:
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    else:
        y = eta + rng.normal(0, 1, n)
    return X, y, pd.Series(g, name="g"), b


@pytest.fixture(scope="module")
def sim():
    return simulate()


@pytest.fixture(scope="module")
def fitted(sim):
    X, y, g, _ = sim
    return MixedEffectsRegressor(fast_hgb()).fit(X, y, groups=g)


# ---------------------------------------------------------------- agreement with the linear mixed model
def test_linear_f_in_sample_is_the_ml_fit():
    """With f a LinearRegression and in-sample residuals the fixed point is the linear mixed
    model's ML fit: the start is that fit, and OLS of y - Zb on X returns its fixed effects
    (without the linear part); with it, f's in-sample predictions are in the features'
    span, so c = 0 and the fit is the ML fit itself."""
    df = load_sleepstudy()
    X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    ml = MixedLinearRegressor(random_slopes=["Days"], reml=False).fit(X, y, groups=g)
    me = MixedEffectsRegressor(LinearRegression(), random_slopes=["Days"], cv=None, linear_part=False)
    me.fit(X, y, groups=g)
    np.testing.assert_allclose(me.regressor_.coef_, ml.coef_, rtol=1e-6)
    np.testing.assert_allclose(me.regressor_.intercept_, ml.intercept_, rtol=1e-6)
    np.testing.assert_allclose(me.random_covariance_["Subject"], ml.random_covariance_["Subject"], rtol=1e-6)
    np.testing.assert_allclose(me.residual_variance_, ml.residual_variance_, rtol=1e-6)
    lin = MixedEffectsRegressor(LinearRegression(), random_slopes=["Days"], cv=None).fit(X, y, groups=g)
    assert lin.f_coefficient_ == 0.0
    np.testing.assert_allclose(lin.mixed_model_.coef_, ml.coef_, rtol=1e-6)
    np.testing.assert_allclose(lin.random_covariance_["Subject"], ml.random_covariance_["Subject"], rtol=1e-6)
    np.testing.assert_allclose(lin.predict(X, groups=g), ml.predict(X, groups=g), rtol=1e-6)


@pytest.mark.parametrize("linear_part", [False, True])
def test_linear_f_out_of_fold_is_close_to_the_ml_fit(linear_part):
    """Out of fold (the remedy against absorption) each fold's line is fitted to the other
    folds' subjects: the lines differ by about their standard errors, and the difference is
    a shift of the fold's subjects' intercepts and slopes, which their random effects take
    up. Fixed parts (the predictions for a new subject) agree to 0.1%, the residual variance
    exactly (the shifts are in the random effects' span), the random-effect variances to 10%
    (18 subjects in 2 folds). With the linear part, f is fitted to what the linear mixed
    model leaves, and c weighs lines in the random slopes' span, poorly determined: the
    same tolerances hold."""
    df = load_sleepstudy()
    X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    ml = MixedLinearRegressor(random_slopes=["Days"], reml=False).fit(X, y, groups=g)
    me = MixedEffectsRegressor(LinearRegression(), random_slopes=["Days"], tol=1e-4, max_iter=50,
                               linear_part=linear_part)
    me.fit(X, y, groups=g)
    assert me.converged_
    days = pd.DataFrame({"Days": [0.0, 9.0]})
    np.testing.assert_allclose(me.predict(days, groups=["new", "new"]), ml.predict(days, groups=["new", "new"]),
                               rtol=1e-3)
    np.testing.assert_allclose(me.residual_variance_, ml.residual_variance_, rtol=1e-6)
    cov, ref = me.random_covariance_["Subject"].to_numpy(), ml.random_covariance_["Subject"].to_numpy()
    np.testing.assert_allclose(np.diag(cov), np.diag(ref), rtol=0.1)


def test_linear_part_weighs_f_by_its_out_of_fold_error():
    """y linear in the features: the trees fitted to what the linear mixed model leaves find
    only noise, c is near 0 and the predictions are the linear mixed model's (to 5% of the
    noise SD); y nonlinear: c is near 1."""
    X, _, g, b = simulate(seed=3)
    rng = np.random.default_rng(3)
    y_lin = 2 * X["x"].to_numpy() - X["w"].to_numpy() + b[g] + rng.normal(0, 1, len(g))
    me = MixedEffectsRegressor(fast_hgb()).fit(X, y_lin, groups=g)
    ml = MixedLinearRegressor(reml=False).fit(X, y_lin, groups=g)
    assert abs(me.f_coefficient_) < 0.3, me.f_coefficient_
    assert np.sqrt(np.mean((me.predict(X, groups=g) - ml.predict(X, groups=g)) ** 2)) < 0.05
    X, y, g, _ = simulate(seed=3)
    assert abs(MixedEffectsRegressor(fast_hgb()).fit(X, y, groups=g).f_coefficient_ - 1) < 0.2


# ---------------------------------------------------------------- what it estimates
def test_recovers_the_group_variance(sim, fitted):
    """Within sampling error of the simulated effects: the ML fit with the true f known."""
    X, y, g, b = sim
    f_true = 2 * np.sin(6 * X["x"]) + X["w"]
    oracle = MixedLinearRegressor(reml=False).fit(np.zeros((len(y), 0)), y - f_true, groups=g)
    est = fitted.random_covariance_["g"].iloc[0, 0]
    ref = oracle.random_covariance_["g"].iloc[0, 0]
    se = ref * np.sqrt(2 / len(b))  # the sampling SD of a variance estimated from 80 effects
    assert abs(est - ref) < se, (est, ref, se)
    # sigma^2 is the noise plus f's out-of-fold error: above 1, not far
    assert 1.0 <= fitted.residual_variance_ < 1.3
    # the default is one round from the linear mixed model's start (tol=None: no criterion)
    assert fitted.converged_ is None and fitted.n_iter_ == 1 and len(fitted.iteration_log_) == 2


def test_modes_are_those_of_the_final_f_at_the_out_of_fold_variances(sim, fitted):
    """The variance components are the last out-of-fold fit's (its log row); the fixed
    effects and modes are those of ``r = y - c f(X)``, f fitted on all rows, at those
    variances: for a random intercept, beta by generalised least squares
    (V^-1 = (I - Z diag(tau2 / (s2 + n_j tau2)) Z') / s2) and the closed form
    b_j = tau2 / (tau2 + s2 / n_j) (mean of r - X beta over level j)."""
    X, y, g, _ = sim
    last = fitted.iteration_log_.iloc[-1]
    tau2 = fitted.random_covariance_["g"].iloc[0, 0]
    s2 = fitted.residual_variance_
    assert tau2 == pytest.approx(last["var g: (Intercept)"], rel=1e-12)
    assert s2 == pytest.approx(last["residual_variance"], rel=1e-12)
    assert fitted.f_coefficient_ == pytest.approx(last["f_coefficient"], rel=1e-12)
    full = fitted.regressor_.estimators[0]  # the model on all rows (half of the mean)
    r = y - fitted.f_coefficient_ * full.predict(X)
    D = np.column_stack([np.ones(len(y)), X.to_numpy()])
    codes = g.to_numpy()
    n = np.bincount(codes)
    k = tau2 / (s2 + n * tau2)
    sums_D = np.array([np.bincount(codes, weights=D[:, j]) for j in range(D.shape[1])]).T
    sums_r = np.bincount(codes, weights=r)
    A = D.T @ D - (sums_D * k[:, None]).T @ sums_D
    c = D.T @ r - (sums_D * k[:, None]).T @ sums_r
    beta = np.linalg.solve(A, c)
    np.testing.assert_allclose(np.r_[fitted.mixed_model_.intercept_, fitted.mixed_model_.coef_], beta, rtol=1e-6)
    modes = tau2 / (tau2 + s2 / n) * np.bincount(codes, weights=r - D @ beta) / n
    np.testing.assert_allclose(fitted.random_effects_["g"]["(Intercept)"].to_numpy(), modes, rtol=1e-6, atol=1e-9)


def test_beats_plain_f_on_known_groups():
    X, y, g, _ = simulate(seed=1)
    Xt, yt, gt = simulate(seed=1)[0], y, g  # same groups: the rows' noise differs below
    rng = np.random.default_rng(5)
    test = rng.uniform(size=len(y)) < 0.25
    me = MixedEffectsRegressor(fast_hgb()).fit(X[~test], y[~test], groups=g[~test])
    plain = fast_hgb().fit(X[~test], y[~test])
    rmse_me = np.sqrt(np.mean((me.predict(Xt[test], groups=gt[test]) - yt[test]) ** 2))
    rmse_plain = np.sqrt(np.mean((plain.predict(Xt[test]) - yt[test]) ** 2))
    assert rmse_me < 0.7 * rmse_plain, (rmse_me, rmse_plain)


def test_out_of_fold_keeps_a_flexible_f_from_absorbing_the_groups():
    """A column constant within groups lets the trees tell the groups apart. Out of fold the
    group variance is recovered and the residual variance is the noise (1) plus the trees'
    error; in sample the trees fit the noise, and the residual variance falls far below the
    noise's (the start from the linear mixed model alone keeps the group variance here)."""
    X, y, g, b = simulate(seed=2, group_feature=True)
    tree = DecisionTreeRegressor(min_samples_leaf=5, random_state=0)
    honest = MixedEffectsRegressor(tree, max_iter=20).fit(X, y, groups=g)
    absorbed = MixedEffectsRegressor(tree, cv=None, max_iter=20).fit(X, y, groups=g)
    true_var = np.var(b)
    assert abs(honest.random_covariance_["g"].iloc[0, 0] / true_var - 1) < 0.25
    assert honest.residual_variance_ > 1.0
    assert absorbed.residual_variance_ < 0.6


def test_unseen_levels_get_the_fixed_part(fitted, sim):
    """Unseen levels, and rows without groups: c f(X) + X beta (f(X) without the linear part)."""
    X, y, g, _ = sim
    new = pd.Series(["a-new-level"] * len(X), name="g")
    mixed = fitted.mixed_model_
    fixed = fitted.f_coefficient_ * fitted.regressor_.predict(X) + mixed.intercept_ + X.to_numpy() @ mixed.coef_
    np.testing.assert_allclose(fitted.predict(X, groups=new), fixed, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="not seen in fit"):
        fitted.predict(X, groups=new, unseen_levels="error")
    with pytest.warns(UserWarning, match="without them"):
        np.testing.assert_allclose(fitted.predict(X), fixed, rtol=1e-12, atol=1e-12)
    plain = MixedEffectsRegressor(fast_hgb(), linear_part=False).fit(X, y, groups=g)
    assert plain.f_coefficient_ == 1.0
    np.testing.assert_array_equal(plain.predict(X, groups=new), plain.regressor_.predict(X))


def test_units_of_y(sim):
    """Rescaling y rescales the predictions and variances (a linear f: exact)."""
    X, y, g, _ = sim
    a = MixedEffectsRegressor(LinearRegression()).fit(X, y, groups=g)
    b = MixedEffectsRegressor(LinearRegression()).fit(X, 1000 * y, groups=g)
    np.testing.assert_allclose(b.predict(X, groups=g), 1000 * a.predict(X, groups=g), rtol=1e-6)
    np.testing.assert_allclose(b.residual_variance_, 1e6 * a.residual_variance_, rtol=1e-6)
    assert a.n_iter_ == b.n_iter_


def test_crossed_factors_slopes_and_weights():
    rng = np.random.default_rng(3)
    n = 1500
    g = pd.DataFrame({"a": rng.integers(0, 30, n), "b": rng.integers(0, 20, n)})
    X = pd.DataFrame({"x": rng.uniform(size=n), "w": rng.uniform(size=n)})
    ua, ub, sa = rng.normal(0, 1.5, 30), rng.normal(0, 1, 20), rng.normal(0, 1, 30)
    y = np.sin(6 * X["x"]) + ua[g["a"]] + ub[g["b"]] + sa[g["a"]] * X["w"] + rng.normal(0, 0.5, n)
    m = MixedEffectsRegressor(fast_hgb(), random_slopes={"a": ["w"]}).fit(X, y, groups=g)
    assert set(m.random_effects_) == {"a", "b"} and list(m.random_effects_["a"].columns) == ["(Intercept)", "w"]
    assert m.random_covariance_["b"].shape == (1, 1)
    w = rng.uniform(0.5, 2, n)
    mw = MixedEffectsRegressor(fast_hgb(), random_slopes={"a": ["w"]}).fit(X, y, groups=g, sample_weight=w)
    assert not np.allclose(mw.predict(X, groups=g), m.predict(X, groups=g))
    with pytest.raises(ValueError, match="does not accept sample_weight"):
        MixedEffectsRegressor(KNeighborsRegressor()).fit(X, y, groups=g, sample_weight=w)


# ---------------------------------------------------------------- scikit-learn citizenship
def test_grid_search_with_nested_params_and_group_kfold(sim):
    X, y, g, _ = sim
    Xg = X.assign(g=g)
    search = GridSearchCV(
        MixedEffectsRegressor(fast_hgb(), group_columns="g", max_iter=3),
        {"regressor__max_depth": [2, None]}, cv=GroupKFold(3), scoring="neg_root_mean_squared_error",
    )
    search.fit(Xg, y, groups=g)
    assert search.best_params_["regressor__max_depth"] in (2, None)
    assert search.best_estimator_.regressor_.estimators[0].max_depth == search.best_params_["regressor__max_depth"]


def test_cross_validate_with_routed_groups(sim):
    X, y, g, _ = sim
    with sklearn.config_context(enable_metadata_routing=True):
        from skmlm import make_grouped_scorer
        res = cross_validate(MixedEffectsRegressor(fast_hgb(), max_iter=3), X, y, cv=GroupKFold(3),
                             params={"groups": g}, scoring=make_grouped_scorer("r2"))
    assert np.all(np.isfinite(res["test_score"]))


def test_pickle(fitted, sim):
    X, _, g, _ = sim
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X, groups=g), fitted.predict(X, groups=g))


def test_bad_input(sim):
    X, y, g, _ = sim
    with pytest.raises(ValueError, match="groups is required"):
        MixedEffectsRegressor(fast_hgb()).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 levels"):
        MixedEffectsRegressor(fast_hgb()).fit(X[:10], y[:10], groups=g[:10])
    with pytest.raises(ValueError, match="at least 5 levels"):
        MixedEffectsRegressor(fast_hgb(), cv=5).fit(X[:60], y[:60], groups=g[:60])
    with pytest.raises(ValueError, match="not a column of X"):
        MixedEffectsRegressor(fast_hgb(), random_slopes=["nope"]).fit(X, y, groups=g)
    with pytest.raises(ValueError, match="rows"):
        MixedEffectsRegressor(fast_hgb()).fit(X, y[:-1], groups=g)
    with pytest.raises(ValueError, match="missing labels"):
        MixedEffectsRegressor(fast_hgb()).fit(X, y, groups=g.where(g > 2))
    with pytest.raises(ValueError, match="linear_part=False"):
        MixedEffectsRegressor(fast_hgb()).fit(X.assign(s="a"), y, groups=g)
    with pytest.raises(ValueError, match="binary"):
        MixedEffectsClassifier().fit(X, np.arange(len(y)) % 3, groups=g)


# ---------------------------------------------------------------- the classifier
def test_classifier_beats_plain_classifier_and_averages_for_new_groups():
    X, y, g, _ = simulate(seed=4, n_groups=100, sd_group=1.5, binary=True)
    rng = np.random.default_rng(6)
    test = rng.uniform(size=len(y)) < 0.25
    clf = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    me = MixedEffectsClassifier(clf).fit(X[~test], y[~test], groups=g[~test])
    plain = clf.fit(X[~test], y[~test])
    p_me = me.predict_proba(X[test], groups=g[test])[:, 1]
    assert log_loss(y[test], p_me) < log_loss(y[test], plain.predict_proba(X[test])[:, 1]) - 0.03
    # unseen levels: the probability averaged over the random effect, nearer 1/2 than at 0
    new = pd.Series(["new"] * int(test.sum()))
    avg = me.predict_proba(X[test], groups=new)[:, 1]
    zero = me.predict_proba(X[test], groups=new, unseen_levels="zero")[:, 1]
    assert np.all(np.abs(avg - 0.5) <= np.abs(zero - 0.5) + 1e-12) and np.any(avg != zero)
    assert me.f_coefficient_ > 0  # the classifier's log-odds carry f
    assert list(me.classes_) == [0, 1] and set(me.predict(X[test], groups=g[test])) <= {0, 1}


def test_classifier_with_linear_f_and_string_labels():
    X, y, g, _ = simulate(seed=5, binary=True)
    labels = np.where(y == 1, "yes", "no")
    with pytest.warns(UserWarning, match="dropping 1 column 'f\\(X\\) log-odds'"):  # in the features' span
        me = MixedEffectsClassifier(LogisticRegression(), cv=None).fit(X, labels, groups=g)
    assert me.f_coefficient_ == 0.0
    assert list(me.classes_) == ["no", "yes"]
    assert me.random_covariance_["g"].iloc[0, 0] > 1.0


def test_classifier_weights_give_log_odds_given_the_group():
    """Weighted by exp(-+o/2) (o the random part of the logistic mixed model alone), the
    classifier estimates the log-odds given the group: the mixed model's coefficient on
    them is near 1. Unweighted, its log-odds average over the groups (flatter, by about
    1 / sqrt(1 + 0.346 * 4) for a group SD of 2) and the mixed model scales them up."""
    X, y, g, _ = simulate(seed=0, n_groups=80, sd_group=2.0, binary=True)
    given = MixedEffectsClassifier(LogisticRegression(C=1e6), linear_part=False).fit(X, y, groups=g)
    averaged = MixedEffectsClassifier(LogisticRegression(C=1e6), conditional=False, linear_part=False)
    averaged.fit(X, y, groups=g)
    assert abs(given.f_coefficient_ - 1) < 0.2
    assert averaged.f_coefficient_ > 1.3


def test_classifier_without_sample_weight_needs_conditional_false():
    X, y, g, _ = simulate(seed=1, n_groups=30, binary=True)
    with pytest.raises(ValueError, match="conditional=False"):
        MixedEffectsClassifier(KNeighborsClassifier(25)).fit(X, y, groups=g)
    me = MixedEffectsClassifier(KNeighborsClassifier(25), conditional=False).fit(X, y, groups=g)
    assert me.f_coefficient_ > 0


@pytest.mark.parametrize("routing", [False, True])
def test_pipeline_takes_the_weights_in_its_last_step(routing):
    """A Pipeline (preprocessing, then a weighted model) gets the classifier's weights in
    its last step, as ``step__sample_weight`` or, with metadata routing on, routed to the
    step that requests them: the same fit as the bare model."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, g, _ = simulate(seed=2, n_groups=30, binary=True)
    bare = MixedEffectsClassifier(LogisticRegression(C=1e6)).fit(X, y, groups=g)
    with sklearn.config_context(enable_metadata_routing=routing):
        last = LogisticRegression(C=1e6)
        if routing:
            last = last.set_fit_request(sample_weight=True)
        piped = MixedEffectsClassifier(make_pipeline(FunctionTransformer(), last)).fit(X, y, groups=g)
        np.testing.assert_allclose(piped.predict_proba(X, groups=g), bare.predict_proba(X, groups=g), rtol=1e-6)
    with pytest.raises(ValueError, match="conditional=False"):
        MixedEffectsClassifier(make_pipeline(FunctionTransformer(), KNeighborsClassifier(5))).fit(X, y, groups=g)
