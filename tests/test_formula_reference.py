"""Every lme4 reference case fitted by its lme4 formula on its data gives the array API's
fit (and so lme4's: tests/test_golden_*.py hold the array fits to lme4's numbers).

The reference CSVs hold lme4's model matrix (factors dummy coded, interactions multiplied
out); :func:`raw_data` turns them back into the data the formula reads: ``y`` named as the
formula's response, ``g_x`` as ``x``, dummy columns ``period2, period3, ...`` back into a
factor ``period`` (a pandas categorical with the levels in R's order), the offset
column as the formula names it, ``cbind``'s successes and failures from the proportion
and the trials.
"""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from skmlm import FormulaGLMRegressor, FormulaLinearRegressor, FormulaLogisticClassifier, MixedGLMRegressor  # noqa: E402
from skmlm import MixedLinearRegressor, MixedLogisticClassifier, glmer, lmer  # noqa: E402

from golden_cases import case_names, estimator_inputs, load_case  # noqa: E402

FAMILIES = Path(__file__).parent / "golden" / "families"
FAMILY = {"binomial": "binomial", "poisson": "poisson", "nbinom2": "negative_binomial", "Gamma": "gamma"}
FAMILY_CASES = ["cbpp_trials_laplace", "grouseticks_poisson", "sim_poisson_offset_slope", "salamanders_nb2",
                "sim_gamma_log"]
BASE = "(ref)"  # the reference level's name


def _variables(formula):
    """The names a formula uses (identifiers, not functions)."""
    return [v for v in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*(?!\s*\()", formula) if v not in ("offset", "cbind")]


def raw_data(ref, data):
    """The data an lme4 formula reads, rebuilt from a reference case's CSV (module docstring)."""
    formula = ref["formula"]
    lhs, rhs = formula.split("~")
    out = {}
    for c in data.columns:
        if c.startswith("g_"):
            out[c[2:]] = data[c].astype(str)
    cb = re.fullmatch(r"\s*cbind\((\w+),\s*(\w+)\s*-\s*(\w+)\)\s*", lhs)
    if cb:  # cbind(incidence, size - incidence)
        out[cb.group(1)] = np.round(data["y"] * data[ref["trials"]]).astype(int)
        out[cb.group(2)] = data[ref["trials"]].astype(int)
    else:
        out[lhs.strip()] = data["y"]
    offset = re.search(r"offset\((\w+)\)", rhs)
    if offset:
        out[offset.group(1)] = data[ref["offset"] or "offset"]
    for v in _variables(rhs):
        if v in out or v in data.columns and not v.startswith("g_"):
            if v in data.columns:
                out[v] = data[v]
            continue
        dummies = [c for c in data.columns if c.startswith(v) and c != v and not c.startswith("g_")]
        if dummies and v not in out and not any(v == g for g in out):
            levels = np.full(len(data), BASE, dtype=object)
            for c in dummies:
                levels[data[c].to_numpy() == 1] = c[len(v):]
            # a factor with R's level order (the dummies' order), as pandas' categorical
            out[v] = pd.Categorical(levels, categories=[BASE] + [c[len(v):] for c in dummies])
    return pd.DataFrame(out)


def _ref_name(name):
    """The reference CSV's column for a formula column: interactions multiplied out as ``a_b``."""
    return name.replace(":", "_")


LINEAR = case_names("gaussian")
BINARY = case_names("binomial")


@pytest.mark.parametrize("name", LINEAR + BINARY)
def test_formula_fit_equals_the_array_fit(name):
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    df = raw_data(ref, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lme4's false alarms are tested with the array fits
        if ref["family"] == "gaussian":
            array = MixedLinearRegressor(**params).fit(X, y, groups=groups)
            model = lmer(ref["formula"], df, REML=ref["reml"])
            assert isinstance(model, FormulaLinearRegressor)
        else:
            params.pop("fit_intercept")
            array = MixedLogisticClassifier(n_quadrature_points=ref["nAGQ"], **params).fit(X, y, groups=groups)
            model = glmer(ref["formula"], df, family="binomial", nAGQ=ref["nAGQ"])
            assert isinstance(model, FormulaLogisticClassifier)
    _same_fit(model, array, ref)


def _same_fit(model, array, ref):
    assert model.log_likelihood_ == pytest.approx(array.log_likelihood_, rel=1e-7, abs=1e-6)
    got = model.fixed_effects_
    expected = array.fixed_effects_
    assert [_ref_name(n) for n in got.index] == [n for n in expected.index]
    np.testing.assert_allclose(got["Estimate"], expected["Estimate"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["Std. Error"], expected["Std. Error"], rtol=1e-3)
    np.testing.assert_allclose(list(got["Estimate"]), list(ref["fixef"].values()), rtol=2e-3, atol=1e-4)
    # the random factors, named as lme4's ranef (a grouping column g_x is the formula's x)
    names = {f[2:] if f.startswith("g_") else f for f in array.random_covariance_}
    assert set(model.random_covariance_) == names
    for f, cov in array.random_covariance_.items():
        f_model = f[2:] if f.startswith("g_") else f
        np.testing.assert_allclose(
            model.random_covariance_[f_model].to_numpy(), cov.to_numpy(), rtol=1e-3, atol=1e-6 * cov.abs().max().max()
        )
        ranef = array.random_effects_[f]
        np.testing.assert_allclose(
            model.random_effects_[f_model].loc[ranef.index].to_numpy(), ranef.to_numpy(), rtol=1e-3,
            atol=1e-4 * np.abs(ranef.to_numpy()).max(),
        )


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_family_formula_fit_equals_the_array_fit(name):
    ref = json.loads((FAMILIES / f"{name}.json").read_text())
    data = pd.read_csv(FAMILIES / f"{name}.csv")
    groups = data[[t["group"] for t in ref["random_terms"]]].astype(str)
    slopes = {t["group"]: list(t["slopes"]) for t in ref["random_terms"]}
    family = FAMILY[ref["family"]]
    array = MixedGLMRegressor(family=family, link=ref["link"], random_slopes=slopes).fit(
        data[ref["fixed"]], data["y"], groups=groups,
        sample_weight=data[ref["trials"]] if ref["trials"] else None,
        offset=data[ref["offset"]] if ref["offset"] else None,
    )
    df = raw_data(ref, data)
    model = glmer(ref["formula"], df, family=ref["family"], link=ref["link"])
    assert isinstance(model, FormulaGLMRegressor)
    _same_fit(model, array, ref)
    if family in ("negative_binomial", "gamma"):
        assert model.dispersion_ == pytest.approx(array.dispersion_, rel=1e-4)
    # new data: the same formula applied, offsets and all
    np.testing.assert_allclose(model.predict(df), array.predict(
        data[ref["fixed"]], groups=groups, offset=data[ref["offset"]] if ref["offset"] else None
    ), rtol=1e-4)


def test_nested_slash_is_the_two_factors_of_the_reference():
    """``(1 | batch/cask)`` is lme4's ``(1 | batch) + (1 | cask:batch)``: the pastes case,
    whose CSV has the nested factor as its own column."""
    ref, data = load_case("pastes_nested_reml")
    df = pd.DataFrame({
        "strength": data["y"], "batch": data["g_batch"].astype(str),
        "cask": data["g_batch_cask"].str.split(".").str[1],
    })
    model = lmer("strength ~ 1 + (1 | batch/cask)", df)
    assert list(model.random_covariance_) == ["cask:batch", "batch"]  # lme4's names and order
    assert model.log_likelihood_ == pytest.approx(ref["logLik"], abs=1e-4)
    assert model.n_groups_ == {"cask:batch": 30, "batch": 10}
    assert model.random_effects_["cask:batch"].index[0] == "a:A"  # lme4's labels
