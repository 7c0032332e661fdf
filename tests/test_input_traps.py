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
