"""``offset(...)`` in an lmer formula, against lme4 (tests/golden/summaries/sleep_offset_ml.json,
made by make_summaries.R there): lme4 fits y - offset, and ``predict`` adds the offset of
the new data back. Tolerances as tests/test_formula_golden.py's where both reach the same
optimum: logLik within 1e-4, estimates 1e-4 relative, variances 1e-3 relative.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("formulaic")

from skmlm import compare_models, lmer  # noqa: E402
from skmlm.datasets import load_sleepstudy  # noqa: E402

REF = json.loads((Path(__file__).parent / "golden" / "summaries" / "sleep_offset_ml.json").read_text())
FORMULA = "Reaction ~ Days + offset(2 * log(Days + 1)) + (Days | Subject)"


@pytest.fixture(scope="module")
def fitted():
    df = load_sleepstudy()
    df = df.assign(Subject=df["Subject"].astype(str))
    return df, lmer(FORMULA, df, REML=False)


def test_fit_as_lme4(fitted):
    _, m = fitted
    assert m.log_likelihood_ == pytest.approx(REF["logLik"], abs=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["Estimate"], list(REF["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(m.random_covariance_["Subject"].to_numpy(), REF["covariance"], rtol=1e-3, atol=0.05)
    assert np.sqrt(m.residual_variance_) == pytest.approx(REF["sigma"], rel=1e-4)


def test_fitted_and_residuals_include_the_offset(fitted):
    df, m = fitted
    # a linear model keeps statistics, not rows: fitted and residuals take the data again
    np.testing.assert_allclose(m.fitted(df)[:3], REF["fitted_head"], rtol=1e-4)
    np.testing.assert_allclose(m.residuals(df)[:3], REF["resid_head"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(m.fitted(df) + m.residuals(df), df["Reaction"], rtol=1e-12)


def test_predict_adds_the_offset_of_new_data(fitted):
    df, m = fitted
    new = df.iloc[[0, 14, 99, 179]].copy()
    new["Days"] = REF["newdata_days"]
    new["Subject"] = REF["newdata_subject"]  # the last one unseen: the population prediction
    np.testing.assert_allclose(m.predict(new, unseen_levels="zero"), REF["predict"], rtol=1e-5)
    population = m.predict(new.assign(Subject="NEW"), unseen_levels="zero")
    np.testing.assert_allclose(population, REF["predict_population"], rtol=1e-5)
    # the offset is the formula's, evaluated on the new rows: a model of y - offset agrees
    shifted = df.assign(r=df["Reaction"] - 2 * np.log(df["Days"] + 1))
    plain = lmer("r ~ Days + (Days | Subject)", shifted, REML=False)
    np.testing.assert_allclose(m.predict(new, unseen_levels="zero"),
                               plain.predict(new, unseen_levels="zero") + 2 * np.log(new["Days"] + 1), rtol=1e-9)


def test_score_and_compare_models_use_the_response_as_given(fitted):
    df, m = fitted
    assert m.score(df) > 0.75  # R^2 against Reaction, not Reaction - offset
    reml = lmer(FORMULA, df)
    table = compare_models(lmer("Reaction ~ 1 + offset(2 * log(Days + 1)) + (Days | Subject)", df), reml)
    assert table["logLik"].iloc[1] == pytest.approx(m.log_likelihood_, abs=1e-6)  # refitted by ML
