"""The summary's scaled residuals against lme4's (tests/golden/scaled_residuals.json,
made by tools/golden_residuals/fit_lme4.R): residuals over sigma for lmer, Pearson
residuals at the conditional modes for glmer."""

import json
import warnings

import numpy as np
import pytest

from golden_cases import GOLDEN, estimator_inputs, load_case
from skmlm import MixedLinearRegressor, MixedLogisticClassifier

EXPECTED = json.loads((GOLDEN / "scaled_residuals.json").read_text())


@pytest.mark.parametrize("name, estimator", [
    ("sleepstudy_rs_reml", MixedLinearRegressor),
    ("cbpp_binary_laplace", MixedLogisticClassifier),
])
def test_scaled_residual_quantiles_equal_lme4s(name, estimator):
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = estimator(**params).fit(X, y, groups=groups)
    if estimator is MixedLinearRegressor:  # the quantiles taken in fit, and a second pass over the rows
        got = model._residual_quantiles
        again = np.quantile(model.residuals(X, y, groups=groups, scaled=True), [0, 0.25, 0.5, 0.75, 1])
        np.testing.assert_allclose(again, got, rtol=1e-12, atol=1e-12)
    else:
        got = np.quantile(model._scaled_residuals, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(got, EXPECTED[name], atol=2e-4)
    assert "Scaled residuals" in model.summary()
