"""No silent traps in scikit-learn workflows, and no false alarms: one test per behaviour.

Each test names what was seen before, and checks what it must be now: scikit-learn's
default encoders accepted (sparse X, aliased columns dropped as lme4 does), no warning
about levels whose outcomes are all equal unless the fit is driven to the boundary, a
clear error where the likelihood has no maximum, ``max_iter`` a cap on every path,
extreme magnitudes of y fitted on an internal scale, missing labels named, scikit-learn's
imputation hint for NaN in X, and standard errors for fits that stopped early.
"""

import re
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.special import expit
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

from skmlm import MixedGLMRegressor, MixedLinearRegressor, MixedLogisticClassifier, MixedPoissonRegressor
from skmlm.datasets import load_cbpp, load_sleepstudy


def _encoded_data(seed=0, n=400, m=40):
    """A category, a continuous x and 40 groups; the three outcomes of one linear predictor."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), n // m)
    cat = rng.choice(list("abcd"), n)
    x = rng.uniform(0, 10, n)
    effect = pd.Series({"a": 0.0, "b": 0.5, "c": -0.3, "d": 0.2})[cat].to_numpy()
    eta = -0.3 + effect + 0.4 * np.sin(x) + rng.normal(0, 0.7, m)[g]
    y = {
        "linear": eta + rng.normal(0, 0.5, n),
        "logistic": (rng.random(n) < expit(eta)).astype(int),
        "poisson": rng.poisson(np.exp(eta)),
    }
    return pd.DataFrame({"cat": cat}), pd.DataFrame({"x": x}), g, y


ESTIMATORS = {
    "linear": MixedLinearRegressor(),
    "logistic": MixedLogisticClassifier(),
    "poisson": MixedPoissonRegressor(),
}


@contextmanager
def _no_warnings():
    """A context in which any warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _predictions(m, X, g):
    return m.predict_proba(X, groups=g)[:, 1] if hasattr(m, "predict_proba") else m.predict(X, groups=g)


# -- 1. scikit-learn's default encoders ------------------------------------------------------
@pytest.mark.parametrize("kind", list(ESTIMATORS))
@pytest.mark.parametrize("encoder", ["onehot", "spline"])
def test_default_encoders_sparse_output_and_aliased_columns(kind, encoder):
    """Before: OneHotEncoder() failed as "sparse input is not supported" (and, dense, as
    "rank deficient"); SplineTransformer() (with its bias columns) as "rank deficient".
    Now: sparse X is accepted, and an aliased fixed-effect column is dropped as lme4 drops
    it: one warning naming it, ``dropped_columns_`` records it, its ``coef_`` is 0, and
    the fit and its predictions are those of the model without it."""
    cat, x, g, ys = _encoded_data()
    y = ys[kind]
    step = OneHotEncoder() if encoder == "onehot" else SplineTransformer()
    raw, aliased = (cat, "x3") if encoder == "onehot" else (x, "x6")
    est = clone(ESTIMATORS[kind])
    pipe = make_pipeline(step, est)
    name = pipe.steps[-1][0]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pipe.fit(raw, y, **{f"{name}__groups": g})
    about = [w for w in seen if "rank deficient" in str(w.message)]
    assert len(about) == 1 and repr(aliased) in str(about[0].message), [str(w.message) for w in seen]
    m = pipe[-1]
    Xt = pipe[0].transform(raw)
    if encoder == "onehot":
        assert sparse.issparse(Xt)
    Xt = Xt.toarray() if sparse.issparse(Xt) else Xt
    assert list(m.dropped_columns_) == [aliased]
    assert len(m.coef_) == m.n_features_in_ == Xt.shape[1]
    j = int(aliased[1:])
    assert m.coef_[j] == 0.0 and np.all(np.isfinite(m.coef_))
    assert aliased not in m.fixed_effects_.index and m.coef_cov_.shape == (Xt.shape[1], Xt.shape[1])
    assert aliased in m.summary()
    # the reduced model: the same fit, the same predictions (also through the pipeline)
    keep = [k for k in range(Xt.shape[1]) if k != j]
    with _no_warnings():
        reduced = clone(est).fit(Xt[:, keep], y, groups=g)
    assert m.log_likelihood_ == pytest.approx(reduced.log_likelihood_, abs=1e-6)
    np.testing.assert_allclose(m.coef_[keep], reduced.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_predictions(m, Xt, g), _predictions(reduced, Xt[:, keep], g), rtol=1e-6)
    through = pipe.predict_proba(raw, groups=g)[:, 1] if kind == "logistic" else pipe.predict(raw, groups=g)
    np.testing.assert_allclose(through, _predictions(reduced, Xt[:, keep], g), rtol=1e-6)
    # a sparse X without aliasing is the dense fit, without a warning
    if encoder == "onehot":
        Xs = OneHotEncoder(drop="first").fit_transform(cat)
        with _no_warnings():
            a = clone(est).fit(Xs, y, groups=g)
            b = clone(est).fit(Xs.toarray(), y, groups=g)
        assert list(a.dropped_columns_) == []
        assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, abs=1e-8)
        np.testing.assert_allclose(_predictions(a, Xs, g), _predictions(b, Xs.toarray(), g), rtol=1e-8)


# -- 2. no warning about levels whose outcomes are all equal -----------------------------
def test_levels_with_equal_outcomes_warn_only_under_separation():
    """Before: ordinary binary data (40 groups of 10 rows; 10,000 groups of 2 rows) warned
    that "N level(s) have every outcome equal". Now: silent, as lme4 and scikit-learn;
    the warning is kept for what matters, outcomes constant within every level, where the
    random-effect variance is driven to the boundary (without limit)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 10)
    x = rng.normal(size=400)
    y = (rng.random(400) < expit(0.3 * x + rng.normal(0, 1, 40)[g])).astype(int)
    ones = np.bincount(g, weights=y)
    assert np.any((ones == 0) | (ones == 10))  # some levels are pure
    X = pd.DataFrame({"x": x})
    with _no_warnings():
        m = MixedLogisticClassifier().fit(X, y, groups=g)
    assert m.converged_
    g2 = np.repeat(np.arange(10_000), 2)
    x2 = rng.normal(size=20_000)
    y2 = (rng.random(20_000) < expit(0.3 * x2 + rng.normal(0, 1, 10_000)[g2])).astype(int)
    with _no_warnings():
        m2 = MixedLogisticClassifier().fit(pd.DataFrame({"x": x2}), y2, groups=g2)
    assert m2.converged_
    # the outcome constant within every level: the random effects separate it
    y3 = (rng.random(40) < 0.5).astype(int)[g]
    with pytest.warns(UserWarning, match=r"grouping factor 'group'.*separate"):
        MixedLogisticClassifier().fit(X, y3, groups=g)


# -- 3. a likelihood without a maximum -------------------------------------------------------
def test_y_exact_function_of_x_and_groups_is_a_clear_error():
    """Before: y constant within every group fitted "converged" with a residual variance of
    1e-15, or failed inside a Cholesky factorisation, or warned "Try a larger max_iter, or
    rescale X". Now: a clear error, as for y exactly linear in X; nearly exact data still fit."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(40), 10)
    h = np.tile(np.arange(10), 40)
    x = rng.normal(size=400)
    X = pd.DataFrame({"x": x})
    level = rng.normal(size=40)[g]
    cases = [
        (dict(), X, level),  # y constant within each group
        (dict(), X.iloc[:, :0], level),  # the null model
        (dict(), X, level + 0.5 * x),  # y = a_g + b x
        (dict(random_slopes=["x"]), X, level + rng.normal(size=40)[g] * x),  # y = a_g + b_g x
        (dict(), X, level),  # two crossed factors, y constant within the first
    ]
    for k, (params, Xc, yc) in enumerate(cases):
        groups = np.column_stack([g, h]) if k == 4 else g
        with pytest.raises(ValueError, match="exact function of X and the grouping factors"):
            MixedLinearRegressor(**params).fit(Xc, yc, groups=groups)
    # the Gamma family: a dispersion of 0
    with pytest.raises(ValueError, match="exact function of X and the grouping factors"):
        MixedGLMRegressor(family="gamma").fit(X, np.exp(level), groups=g)
    # nearly exact is a legitimate fit
    with _no_warnings():
        m = MixedLinearRegressor().fit(X, level + 1e-3 * rng.normal(size=400), groups=g)
    assert m.converged_ and m.residual_variance_ == pytest.approx(1e-6, rel=0.3)


# -- 4. max_iter is a cap ----------------------------------------------------------------
def _max_iter_cases():
    ss = load_sleepstudy()
    cb = load_cbpp()
    Xc = cb["period"].str.get_dummies().drop(columns="1").add_prefix("period").astype(float)
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(30), 12)
    h = np.tile(np.arange(12), 30)
    x = rng.normal(size=360)
    X = pd.DataFrame({"x": x})
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.8, 30)[g] + rng.normal(0, 0.4, 30)[g] * x + rng.normal(0, 0.5, 12)[h]
    yl = eta + rng.normal(0, 0.7, 360)
    yb = (rng.random(360) < expit(eta)).astype(int)
    yc = rng.negative_binomial(3, 3 / (3 + np.exp(eta)))
    gh = np.column_stack([g, h])
    return {
        "lmm scalar": (MixedLinearRegressor(), ss[["Days"]], ss["Reaction"], ss["Subject"]),
        "lmm slope": (MixedLinearRegressor(random_slopes=["Days"]), ss[["Days"]], ss["Reaction"], ss["Subject"]),
        "lmm diagonal": (MixedLinearRegressor(random_slopes=["Days"], covariance="diagonal"), ss[["Days"]],
                         ss["Reaction"], ss["Subject"]),
        "lmm crossed": (MixedLinearRegressor(random_slopes={"group0": ["x"]}), X, yl, gh),
        "glmm scalar": (MixedLogisticClassifier(), Xc, cb["y"], cb["herd"]),
        "glmm agq": (MixedLogisticClassifier(n_quadrature_points=5), Xc, cb["y"], cb["herd"]),
        "glmm slope": (MixedLogisticClassifier(random_slopes=["x"]), X, yb, g),
        "glmm crossed": (MixedLogisticClassifier(), X, yb, gh),
        "nb2": (MixedGLMRegressor(family="negative_binomial"), X, yc, g),
    }


@pytest.mark.parametrize("case", list(_max_iter_cases()))
def test_max_iter_caps_every_iteration(case):
    """Before: max_iter=1 converged after several iterations (Newton and polishing steps
    were not counted) while max_iter=2 could stop short. Now: ``max_iter`` bounds the
    optimiser's iterations of every kind (``n_iter_ <= max_iter``), ``converged_`` is True
    only at an optimum, and a fit stopped by the cap warns that it was."""
    est, X, y, groups = _max_iter_cases()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = clone(est).fit(X, y, groups=groups)
    assert full.converged_ and 1 <= full.n_iter_ <= full.max_iter
    for cap in range(1, full.n_iter_ + 1):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = clone(est).set_params(max_iter=cap).fit(X, y, groups=groups)
        assert m.n_iter_ <= cap
        stopped = [w for w in seen if issubclass(w.category, ConvergenceWarning)]
        if m.converged_:
            assert not stopped
            assert m.log_likelihood_ == pytest.approx(full.log_likelihood_, abs=1e-5)
        else:
            assert stopped and re.search(r"max_iter=\d+", str(stopped[0].message))
            assert m.n_iter_ == cap
    again = clone(est).set_params(max_iter=full.n_iter_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        again.fit(X, y, groups=groups)
    assert again.converged_ and again.log_likelihood_ == pytest.approx(full.log_likelihood_, abs=1e-9)


# -- 5. extreme magnitudes of y -----------------------------------------------------------
@pytest.mark.parametrize("power", [505, -520])
@pytest.mark.parametrize("reml", [True, False])
def test_extreme_y_is_fitted_on_an_internal_scale(power, reml):
    """Before: y of order 1e154 (2^505 x sleepstudy) overflowed the cross-products, numpy
    warnings leaked, log_likelihood_ was NaN and the warning blamed X; y of order 1e-154
    failed in an eigenvalue decomposition. Now: the fit runs on an internal scale and
    reports on the user's, exactly the fit of the unscaled y rescaled (2^505 is the
    largest power whose residual variance, 1e307, is still a float)."""
    ss = load_sleepstudy()
    c = 2.0**power
    X, y, g = ss[["Days"]], ss["Reaction"].to_numpy(), ss["Subject"]
    base = MixedLinearRegressor(random_slopes=["Days"], reml=reml).fit(X, y, groups=g)
    with _no_warnings():
        m = MixedLinearRegressor(random_slopes=["Days"], reml=reml).fit(X, y * c, groups=g)
        dof = len(y) - (2 if reml else 0)
        assert m.converged_
        assert m.log_likelihood_ == pytest.approx(base.log_likelihood_ - dof * np.log(c), rel=1e-12)
        assert m.aic_ == pytest.approx(base.aic_ + 2 * dof * np.log(c), rel=1e-12)
        np.testing.assert_allclose(m.theta_, base.theta_, rtol=1e-8)
        np.testing.assert_allclose(m.coef_ / c, base.coef_, rtol=1e-8)
        assert m.intercept_ / c == pytest.approx(base.intercept_, rel=1e-8)
        assert m.residual_variance_ / c**2 == pytest.approx(base.residual_variance_, rel=1e-8)
        np.testing.assert_allclose(m.coef_cov_ / c**2, base.coef_cov_, rtol=1e-7)
        np.testing.assert_allclose(m.random_effects_["Subject"] / c, base.random_effects_["Subject"], rtol=1e-7)
        np.testing.assert_allclose(m.random_covariance_["Subject"] / c**2, base.random_covariance_["Subject"],
                                   rtol=1e-7)
        np.testing.assert_allclose(m.predict(X, groups=g) / c, base.predict(X, groups=g), rtol=1e-10)
        assert m.score(X, y * c, groups=g) == pytest.approx(base.score(X, y, groups=g), rel=1e-10)
        table, ref = m.fixed_effects_table(), base.fixed_effects_table()
        np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-5)
        np.testing.assert_allclose(table["t value"], ref["t value"], rtol=1e-7)
        np.testing.assert_allclose(m.optimizer_log_["deviance"], base.optimizer_log_["deviance"] + 2 * dof * np.log(c),
                                   rtol=1e-12)
        ci, ci_ref = m.confint(method="profile"), base.confint(method="profile")
        scaled = np.array([0.0 if name == ".sig02" else power for name in ci.index])  # .sig02: a correlation
        np.testing.assert_allclose(ci.to_numpy() / 2.0 ** scaled[:, None], ci_ref.to_numpy(), rtol=1e-6)
        boot, boot_ref = (x.parametric_bootstrap(5, random_state=0) for x in (m, base))
        np.testing.assert_allclose(boot.to_numpy() / 2.0 ** scaled, boot_ref.to_numpy(), rtol=1e-4)  # refits
        conv, conv_ref = m.convergence_, base.convergence_
        assert conv["converged"] and conv["max_abs_gradient"] == pytest.approx(conv_ref["max_abs_gradient"], abs=1e-4)
        if power > 0:  # (at 2^-520 the curvature in the standard deviations overflows)
            np.testing.assert_allclose(conv["hessian_sd"].to_numpy() * 2.0 ** np.add.outer(scaled[:4], scaled[:4]),
                                       conv_ref["hessian_sd"].to_numpy(), rtol=1e-3, atol=1e-6)
        assert "Residual" in m.summary()


# -- 6. missing labels in a classifier's y -----------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda lab: np.array(lab, dtype=object),
    lambda lab: pd.Series(lab, dtype=object),
    lambda lab: pd.Series(lab, dtype="string"),
    lambda lab: pd.Series(pd.Categorical(lab)),
])
def test_missing_labels_in_classifier_y_are_named(make):
    """Before: string labels with None failed inside np.unique ("'<' not supported").
    Now: "y has missing labels in N rows"."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(20), 10)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    labels = list(rng.choice(["yes", "no"], 200))
    for i in (3, 50, 51):
        labels[i] = None
    with pytest.raises(ValueError, match="y has missing labels in 3 rows"):
        MixedLogisticClassifier().fit(X, make(labels), groups=g)


# -- 7. scikit-learn's advice for NaN in X --------------------------------------------------
@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_nan_in_X_gives_the_imputation_hint(kind):
    """Before: "Input X contains NaN." alone. Now scikit-learn's full message, which names
    the estimator and points to imputation, at fit and at predict."""
    cat, x, g, ys = _encoded_data()
    est = clone(ESTIMATORS[kind])
    bad = x.copy()
    bad.iloc[5, 0] = np.nan
    hint = rf"Input X contains NaN.*{type(est).__name__} does not accept missing values.*imput"
    with pytest.raises(ValueError, match=re.compile(hint, re.S)):
        est.fit(bad, ys[kind], groups=g)
    with pytest.raises(ValueError, match=re.compile(hint, re.S)):
        est.fit(bad.to_numpy(), ys[kind], groups=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(x, ys[kind], groups=g)
    with pytest.raises(ValueError, match=re.compile(hint, re.S)):
        est.predict(bad, groups=g)



@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_complex_X_is_an_error_not_a_silent_drop(kind):
    """A DataFrame column of complex numbers: scikit-learn's error, not its real part with a
    ComplexWarning (a float conversion dropped the imaginary part)."""
    cat, x, g, ys = _encoded_data()
    bad = x.astype({x.columns[0]: complex})
    bad.iloc[5, 0] += 1j
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="Complex data not supported"):
            clone(ESTIMATORS[kind]).fit(bad, ys[kind], groups=g)

# -- 8. standard errors of a fit that stopped early ---------------------------------------------
def _random_slope_data(seed):
    """The simulated designs on which a classifier with a random slope ended with all-NaN
    standard errors (seed 49: separated, unconverged; seed 11: a singular fit)."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(5, 40))
    k = int(rng.integers(2, 12))
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    X = pd.DataFrame({"x": x, "x2": rng.normal(size=m * k)})
    sd = rng.choice([0.0, 1.0, 3.0, 8.0, 30.0])
    y = (rng.random(m * k) < expit(rng.normal() + rng.choice([0, 1, 5]) * x + rng.normal(0, sd, m)[g])).astype(int)
    return X, y, g


def test_unconverged_classifier_reports_standard_errors():
    """Before: fits that stopped short of an optimum (and some singular ones) had all-NaN
    standard errors (``coef_cov_``), where lme4 reports them. Now: the covariance at the
    point where the fit stopped, from the Hessian there or, where that is not positive
    definite, from the PIRLS approximation (lme4's fallback, from RX); a fit that did
    not converge says so, and that its standard errors are those of where it stopped."""
    cb = load_cbpp()
    Xc = cb["period"].str.get_dummies().drop(columns="1").add_prefix("period").astype(float)
    X11, y11, g11 = _random_slope_data(11)
    X49, y49, g49 = _random_slope_data(49)
    cases = [
        (MixedLogisticClassifier(max_iter=1), Xc, cb["y"], cb["herd"]),
        (MixedLogisticClassifier(random_slopes=["x"], max_iter=1), X49, y49, g49),
        (MixedLogisticClassifier(random_slopes=["x"]), X49, y49, g49),
        (MixedLogisticClassifier(random_slopes=["x"]), X11, y11, g11),
        (MixedGLMRegressor(family="binomial", random_slopes=["x"]), X11, y11, g11),
    ]
    for est, X, y, g in cases:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = est.fit(X, y, groups=g)
        cov = m.coef_cov_
        assert np.all(np.isfinite(cov)) and np.all(np.linalg.eigvalsh(cov) > 0), (est, cov)
        assert np.all(np.isfinite(m.fixed_effects_["Std. Error"]))
        if not m.converged_:
            messages = " ".join(str(w.message) for w in seen)
            assert "standard errors" in messages
            assert "standard errors" in m.summary()


def test_errors_that_say_what_to_do_for_an_analysts_first_tries():
    """fit(None, y, groups=g), groups="cntry" and a text column: each error names the
    problem and the fix."""
    from skmlm.datasets import load_ess

    df = load_ess().iloc[::10]
    with pytest.raises(ValueError, match="X is None.*null model"):
        MixedLinearRegressor().fit(None, df["stflife"], groups=df["cntry"])
    with pytest.raises(ValueError, match=r"groups=df\['cntry'\].*group_columns='cntry'"):
        MixedLinearRegressor().fit(df[["eduyrs"]], df["stflife"], groups="cntry")
    with pytest.raises(ValueError, match="text, not numbers: 'gndr' \\(e.g. '[FM]'\\)"):
        MixedLinearRegressor().fit(df[["eduyrs", "gndr"]], df["stflife"], groups=df["cntry"])
