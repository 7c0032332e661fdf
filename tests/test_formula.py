"""Formulas: lme4's bar syntax, lme4's names, new data, scikit-learn's tools, and errors
that say where the formula is wrong."""

import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score  # noqa: E402

from skmlm import (  # noqa: E402
    FormulaError, FormulaGLMRegressor, FormulaLinearRegressor, MixedLinearRegressor, compare_models, glmer, lmer,
    tab_models,
)
from skmlm._formula.parse import parse_formula  # noqa: E402
from skmlm.datasets import load_ess, load_sleepstudy  # noqa: E402


@pytest.fixture(scope="module")
def ess():
    return load_ess().iloc[::5].reset_index(drop=True)  # 29 countries x 40 people


def test_bars_expand_as_lme4():
    p = parse_formula("y ~ x * z + (x || g) + (1 | a/b) + (0 + x | a:b) + offset(log(e))")
    assert p.fixed == "x * z"
    assert p.offsets == ["log(e)"]
    assert [(t.lhs, t.group, t.diagonal) for t in p.random] == [
        ("1", ("g",), True), ("0 + x", ("g",), True),  # (x || g) = (1 | g) + (0 + x | g)
        ("1", ("a",), False), ("1", ("b", "a"), False),  # (1 | a/b) = (1 | a) + (1 | b:a)
        ("0 + x", ("a", "b"), False),
    ]
    assert parse_formula("cbind(k, n - k) ~ x + (1 | g)").cbind == ("k", "n - k")


def test_double_bar_is_the_diagonal_array_fit():
    df = load_sleepstudy()
    m = lmer("Reaction ~ Days + (Days || Subject)", df)
    same = lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", df)
    array = MixedLinearRegressor(random_slopes=["Days"], covariance="diagonal").fit(
        df[["Days"]], df["Reaction"], groups=df["Subject"])
    assert m.log_likelihood_ == pytest.approx(array.log_likelihood_, abs=1e-8)
    assert same.log_likelihood_ == pytest.approx(array.log_likelihood_, abs=1e-8)
    assert m.random_covariance_["Subject"].iloc[0, 1] == 0.0


def test_slope_without_fixed_effect_and_no_intercept(ess):
    """``(0 + eduyrs | cntry)``: a random slope whose column is not a fixed effect."""
    m = lmer("stflife ~ 1 + (1 | cntry) + (0 + eduyrs | cntry)", ess, REML=False)
    assert list(m.fixed_effects_.index) == ["(Intercept)"]
    assert list(m.random_covariance_["cntry"].index) == ["(Intercept)", "eduyrs"]
    m0 = lmer("stflife ~ 0 + eduyrs + (1 | cntry)", ess, REML=False)
    assert not m0.fit_intercept and list(m0.fixed_effects_.index) == ["eduyrs"]


def test_crossed_and_interaction_factors(ess):
    df = ess.assign(agegrp=pd.cut(ess["agea"], [0, 35, 55, 100], labels=["young", "mid", "old"]).astype(str))
    m = lmer("stflife ~ eduyrs + (1 | cntry) + (1 | agegrp) + (1 | cntry:gndr)", df, REML=False)
    assert set(m.n_groups_) == {"cntry", "agegrp", "cntry:gndr"}
    assert m.n_groups_["cntry:gndr"] == 58
    assert "C01:F" in m.random_effects_["cntry:gndr"].index
    array = MixedLinearRegressor(reml=False).fit(
        df[["eduyrs"]], df["stflife"],
        groups=pd.DataFrame({"cntry": df["cntry"], "agegrp": df["agegrp"], "cg": df["cntry"] + ":" + df["gndr"]}))
    assert m.log_likelihood_ == pytest.approx(array.log_likelihood_, abs=1e-6)


def test_names_as_lme4_and_categorical_levels_fixed_at_fit(ess):
    m = lmer("stflife ~ eduyrs * gnipc1000 + gndr + C(hinctnta) + I(agea^2) + (1 | cntry)", ess, REML=False)
    names = list(m.fixed_effects_.index)
    assert names[:4] == ["(Intercept)", "eduyrs", "gnipc1000", "gndrM"]
    assert "C(hinctnta)2" in names and "C(hinctnta)1" not in names  # treatment contrasts, level 1 reference
    assert names[-1] == "eduyrs:gnipc1000"
    # new data of one gender and a few deciles still get the fitted columns
    new = ess[(ess["gndr"] == "M") & (ess["hinctnta"] > 7)].head(5)
    X = new.assign(gndrM=1.0)
    expected = m.intercept_ + m.coef_ @ np.array([
        X["eduyrs"], X["gnipc1000"], X["gndrM"],
        *[(X["hinctnta"] == k).astype(float) for k in range(2, 11)],
        X["agea"] ** 2.0, X["eduyrs"] * X["gnipc1000"],
    ]) + m.random_effects_["cntry"].loc[new["cntry"], "(Intercept)"].to_numpy()
    np.testing.assert_allclose(m.predict(new), expected, rtol=1e-10)


def test_power_inside_a_random_term_is_the_fixed_part_s():
    """``I(x^2)`` is R's power in a random-effect term too, named as lme4 names it."""
    df = load_sleepstudy().assign(days2=lambda d: d["Days"] ** 2.0)
    m = lmer("Reaction ~ Days + I(Days^2) + (1 + I(Days^2) | Subject)", df)
    array = MixedLinearRegressor(random_slopes=["days2"]).fit(df[["Days", "days2"]], df["Reaction"],
                                                               groups=df["Subject"])
    assert m.log_likelihood_ == pytest.approx(array.log_likelihood_, abs=1e-8)
    assert list(m.random_covariance_["Subject"].index) == ["(Intercept)", "I(Days^2)"]
    assert list(m.fixed_effects_.index) == ["(Intercept)", "Days", "I(Days^2)"]
    assert parse_formula("y ~ (a + b)^2 + I(a^2) + (1 + I((a + 1)^3) | g)").random[0].lhs == "1 + I((a + 1)**3)"


def test_r_factor_is_a_categorical_predictor(ess):
    """R's ``factor(x)`` of a numeric column: treatment contrasts named as R names them, the
    same fit as formulaic's ``C(x)``, and new data coded by the fit's levels."""
    m = lmer("stflife ~ factor(hinctnta) + (1 | cntry)", ess, REML=False)
    c = lmer("stflife ~ C(hinctnta) + (1 | cntry)", ess, REML=False)
    assert m.log_likelihood_ == pytest.approx(c.log_likelihood_, abs=1e-10)
    assert list(m.fixed_effects_.index)[:3] == ["(Intercept)", "factor(hinctnta)2", "factor(hinctnta)3"]
    np.testing.assert_allclose(m.predict(ess.head(7)), c.predict(ess.head(7)), rtol=1e-12)


def test_unseen_category_is_a_clear_error(ess):
    m = lmer("stflife ~ eduyrs + gndr + (1 | cntry)", ess)
    with pytest.raises(ValueError, match="levels of a categorical predictor not seen in fit"):
        m.predict(ess.head(3).assign(gndr="X"))
    # an unseen grouping level is the population prediction (lme4's allow.new.levels)
    p = m.predict(ess.head(1).assign(cntry="ZZ"))
    assert p[0] == pytest.approx(m.intercept_ + m.coef_ @ [ess["eduyrs"][0], ess["gndr"][0] == "M"])


def test_summary_and_reports_use_the_formula(ess):
    m1 = lmer("stflife ~ eduyrs + (1 | cntry)", ess)
    m2 = lmer("stflife ~ eduyrs + gndr + (1 | cntry)", ess)
    assert "Formula: stflife ~ eduyrs + gndr + (1 | cntry)" in m2.summary()
    table = compare_models(m1, m2)  # REML fits refitted by ML from the formula and the data
    assert list(table["method"]) == ["ML (refit)", "ML (refit)"]
    assert table["npar"].tolist() == [4, 5]
    ml = lmer("stflife ~ eduyrs + gndr + (1 | cntry)", ess, REML=False)
    assert table["logLik"].iloc[1] == pytest.approx(ml.log_likelihood_, abs=1e-6)
    assert "gndrM" in str(tab_models(m1, m2))
    assert m2.confint(method="Wald").index[-1] == "gndrM"


def test_cross_validation_and_grid_search_from_formulas(ess):
    est = FormulaLinearRegressor("stflife ~ eduyrs + (1 | cntry)", reml=False)
    cv = GroupKFold(n_splits=3)
    scores = cross_val_score(est, ess, ess["stflife"], groups=ess["cntry"], cv=cv)
    assert np.all(np.isfinite(scores)) and len(scores) == 3
    grid = GridSearchCV(est, {"formula": ["stflife ~ 1 + (1 | cntry)", "stflife ~ eduyrs + gnipc1000 + (1 | cntry)"]},
                        cv=cv, scoring="neg_mean_squared_error")
    grid.fit(ess, ess["stflife"], groups=ess["cntry"])
    assert grid.best_params_["formula"] == "stflife ~ eduyrs + gnipc1000 + (1 | cntry)"
    assert clone(est).get_params()["formula"] == est.formula
    # y may also come from the formula alone
    assert est.fit(ess).score(ess) == pytest.approx(est.score(ess, ess["stflife"]))


def test_glmer_binomial_offset_and_cbind():
    rng = np.random.default_rng(0)
    n, k = 400, 20
    g = rng.integers(0, k, n)
    x = rng.normal(size=n)
    expo = rng.uniform(0.5, 3, n)
    y = rng.poisson(expo * np.exp(0.3 + 0.5 * x + rng.normal(0, 0.5, k)[g]))
    df = pd.DataFrame({"y": y, "x": x, "expo": expo, "g": [f"G{i}" for i in g]})
    m = glmer("y ~ x + offset(log(expo)) + (1 | g)", df, family="poisson")
    assert isinstance(m, FormulaGLMRegressor)
    # the offset is applied to new data from their own column
    np.testing.assert_allclose(m.predict(df.assign(expo=2 * df["expo"])), 2 * m.predict(df), rtol=1e-10)
    trials = rng.integers(1, 10, n)
    df["k"] = rng.binomial(trials, 1 / (1 + np.exp(-x)))
    df["n"] = trials
    b = glmer("cbind(k, n - k) ~ x + (1 | g)", df, family="binomial")
    assert b.family_.name == "binomial"
    assert "cbind(k, n - k)" in b.summary()
    with pytest.raises(ValueError, match="cbind"):
        lmer("cbind(k, n - k) ~ x + (1 | g)", df)


@pytest.mark.parametrize("formula, where, message", [
    ("stflife ~ eduyrs + (1 | )", 23, "grouping factor after '|'"),
    ("stflife eduyrs", 14, "'~'"),
    ("stflife ~ eduyrs + (1 | cntry", 19, "never closed"),
    ("stflife ~ eduyrs | cntry", 17, "outside a random-effect term"),
    ("stflife ~ eduyrs + (1 | cntry + gndr)", 24, "not a column name"),
])
def test_formula_errors_point_at_the_place(formula, where, message):
    with pytest.raises(FormulaError, match=message) as info:
        parse_formula(formula)
    assert info.value.position == where
    assert "^" in str(info.value)


def test_data_errors_name_the_column(ess):
    with pytest.raises(ValueError, match="'nosuch'"):
        lmer("stflife ~ nosuch + (1 | cntry)", ess)
    with pytest.raises(ValueError, match="grouping factor 'land'"):
        lmer("stflife ~ eduyrs + (1 | land)", ess)
    bad = ess.copy()
    bad.loc[3, "eduyrs"] = np.nan
    with pytest.raises(ValueError, match="'eduyrs' \\(1 rows\\)"):
        lmer("stflife ~ eduyrs + (1 | cntry)", bad)
    with pytest.raises(ValueError, match="groups="):
        FormulaLinearRegressor("stflife ~ eduyrs + (1 | cntry)").fit(ess, groups=ess["cntry"])


def test_within_between_are_stateful(ess):
    m = lmer("stflife ~ within(eduyrs, cntry) + between(eduyrs, cntry) + (1 | cntry)", ess, REML=False)
    means = ess.groupby("cntry")["eduyrs"].mean()
    one = ess.head(1)  # a single row of a known country: its fitted mean, not its own value
    b = m.coef_[1]
    w = m.coef_[0]
    expected = (m.intercept_ + w * (one["eduyrs"].iloc[0] - means[one["cntry"].iloc[0]])
                + b * means[one["cntry"].iloc[0]] + m.random_effects_["cntry"].loc[one["cntry"].iloc[0]].iloc[0])
    assert m.predict(one)[0] == pytest.approx(expected)


def test_units_do_not_change_the_fit(ess):
    a = lmer("stflife ~ eduyrs + gnipc1000 + (1 | cntry)", ess, REML=False)
    b = lmer("stflife ~ eduyrs + gnipc1000 + (1 | cntry)", ess.assign(gnipc1000=ess["gnipc1000"] * 1000), REML=False)
    assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, abs=1e-6)
    assert b.coef_[1] * 1000 == pytest.approx(a.coef_[1], rel=1e-5)


def test_glmer_family_names():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="family="):
            glmer("y ~ x + (1 | g)", pd.DataFrame({"y": [1, 2], "x": [0, 1], "g": ["a", "b"]}), family="tweedie")


def test_metadata_routing_sends_groups_to_the_splitter_only(ess):
    import pickle

    import sklearn
    from sklearn.model_selection import cross_validate

    with sklearn.config_context(enable_metadata_routing=True):
        for est in (FormulaLinearRegressor("stflife ~ eduyrs + (1 | cntry)"),
                    FormulaGLMRegressor("happy ~ eduyrs + (1 | cntry)", family="poisson")):
            y = ess[est.formula.split()[0]]
            r = cross_validate(est, ess, y, cv=GroupKFold(3), params={"groups": ess["cntry"]})
            assert np.all(np.isfinite(r["test_score"]))
    m = lmer("stflife ~ within(eduyrs, cntry) + between(eduyrs, cntry) + gndr + (1 | cntry)", ess)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(m)).predict(ess.head()), m.predict(ess.head()))


def test_new_data_without_the_grouping_column_say_so(ess):
    m = lmer("stflife ~ eduyrs + (1 | cntry)", ess)
    with pytest.raises(ValueError, match="grouping factor 'cntry'.*population predictions"):
        m.predict(ess[["eduyrs"]])
