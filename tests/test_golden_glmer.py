"""GLMMs from lme4 formulas against lme4 and glmmTMB on data beyond tests/golden/families:
an NB2 with an offset and an interaction, Poisson with an offset under adaptive quadrature
and with a random slope, binomial with trials under 25-point quadrature, a logistic random
slope on a factor, a Gamma with a correlated random slope (tests/golden/glmer, made by
make_reference.R there from glmmTMB's Owls, mlmRev's Contraception, lme4's cbpp and a
simulation).

Tolerances as tests/test_golden_families.py: the log-likelihood at least the reference's
minus 1e-4 (lme4 stops early: skmlm's is the same or a little higher) and at most 1e-3 above
it; fixed effects within 1e-3 relative; standard errors within 2e-2; covariances of the
random effects within 1e-2 of the largest; the dispersion within 1e-2. With ``nAGQ > 1``
lme4's logLik leaves out the saturated model's log-likelihood (lme4 issues #161, #567):
``logLik_full`` adds it back, and is what skmlm reports.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from skmlm import glmer  # noqa: E402

from golden_cases import assert_dispersion_as_glmmtmb  # noqa: E402

HERE = Path(__file__).parent / "golden" / "glmer"
REFERENCE = json.loads((HERE / "reference.json").read_text())
TEXT_COLUMNS = ["food", "sex", "nest", "urban", "livch", "district", "period", "herd", "g"]


def _data(name):
    df = pd.read_csv(HERE / f"{name}.csv")
    for c in TEXT_COLUMNS:  # labels as R wrote them (nest and herd names, district numbers)
        if c in df.columns:
            df[c] = df[c].astype(str)
    return df


@pytest.fixture(scope="module", params=sorted(REFERENCE))
def case(request):
    ref = REFERENCE[request.param]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a correct fit of a reference case warns of nothing
        m = glmer(ref["formula"], _data(ref["data"]), family=ref["family"], nAGQ=ref["nAGQ"])
    return ref, m


def test_log_likelihood_reaches_the_reference(case):
    ref, m = case
    assert m.converged_
    assert ref["logLik_full"] - 1e-4 <= m.log_likelihood_ <= ref["logLik_full"] + 1e-3


def test_fixed_effects_and_standard_errors(case):
    ref, m = case
    table = m.fixed_effects_
    assert list(table.index) == list(ref["fixef"])  # lme4's names, I(age^2) included
    np.testing.assert_allclose(table["Estimate"], list(ref["fixef"].values()), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(table["Std. Error"], list(ref["fixef_se"].values()), rtol=2e-2)


def test_random_covariance_and_dispersion(case):
    ref, m = case
    for group, expected in ref["covariance"].items():
        expected = np.atleast_2d(expected)
        got = m.random_covariance_[group].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-2 * np.abs(expected).max())
    assert_dispersion_as_glmmtmb(m, ref["family"], ref["dispersion"])
