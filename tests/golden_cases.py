"""Load lme4's reference cases from tests/golden/ and turn them into estimator inputs."""

import json
from pathlib import Path

import pandas as pd

GOLDEN = Path(__file__).parent / "golden"


def case_names(family):
    """The reference cases made by make_reference.R for one family (gaussian, binomial)."""
    refs = {p.stem: json.loads(p.read_text()) for p in GOLDEN.glob("*.json")}
    return sorted(k for k, r in refs.items() if "random_terms" in r and r.get("family") == family)


def load_case(name):
    """(reference dict, DataFrame) of one case."""
    ref = json.loads((GOLDEN / f"{name}.json").read_text())
    data = pd.read_csv(GOLDEN / f"{name}.csv", dtype={t["group"]: str for t in ref["random_terms"]})
    return ref, data


def estimator_inputs(ref, data):
    """X, y, groups and the estimator parameters that reproduce the lme4 model.

    Several lme4 terms on one grouping column, each with one term, are lme4's
    ``(x || g)``: one factor with ``covariance="diagonal"``.
    """
    terms = ref["random_terms"]
    by_group = {}
    for t in terms:
        by_group.setdefault(t["group"], []).append(t)
    diagonal = any(len(ts) > 1 for ts in by_group.values())
    slopes = {g: [s for t in ts for s in t["slopes"]] for g, ts in by_group.items()}
    intercept = all(any(t["intercept"] for t in ts) for ts in by_group.values())
    params = {
        "random_slopes": {g: s for g, s in slopes.items() if s} or None,
        "random_intercept": intercept,
        "covariance": "diagonal" if diagonal else "unstructured",
        "fit_intercept": ref["fit_intercept"],
    }
    if ref["family"] == "gaussian":
        params["reml"] = ref["reml"]
    X = data[ref["fixed"]]
    groups = data[list(by_group)]
    return X, data["y"], groups, params


def assert_dispersion_as_glmmtmb(model, family, sigma):
    """``dispersion_`` against glmmTMB's ``sigma()`` (``family`` skmlm's name): NB2's theta is
    it, the Gamma's phi its square (glmmTMB's sigma() is the coefficient of variation,
    sqrt(phi)), within 1e-2; the families without a dispersion report 1."""
    if family == "negative_binomial":
        assert abs(model.dispersion_ / sigma - 1) <= 1e-2
    elif family == "gamma":
        assert abs(model.dispersion_ ** 0.5 / sigma - 1) <= 1e-2
    else:
        assert model.dispersion_ == 1.0
