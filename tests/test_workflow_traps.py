"""No silent traps in scikit-learn workflows: one test per behaviour of the issue.

1. Named scorers, ``GridSearchCV.predict`` and ``CalibratedClassifierCV`` call predict
   without groups. With the groups in X (``group_columns``) they score the model with its
   random effects; a model fitted with groups that is asked to predict without them says
   so, once.
2. Routing off, ``cross_validate(..., groups=g)``: the error says the groups went to the
   splitter and what to do.
3. Column names after a ``ColumnTransformer`` (``num__price``): the original name works.
4. A missing group label at predict time is an unseen level (or an error, on request).
5. Labels of another type at predict time (ints in fit, strings in predict) match by text.

Metadata routing is switched on only inside ``sklearn.config_context``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import mean_squared_error, roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

import skmlm
from skmlm import MixedLinearRegressor, MixedLogisticClassifier, MixedPoissonRegressor


def simulate_stores(n_stores=80, n_rows=15, seed=0):
    """Weekly sales of stores: a random intercept and a random price slope per store; a
    region effect and a smooth temperature effect; a binary "sold out" outcome with a
    random intercept per store. Store ids are integers 308, 309, ..."""
    rng = np.random.default_rng(seed)
    s = np.repeat(np.arange(n_stores), n_rows)
    n = len(s)
    region = np.array(["east", "north", "south", "west"])[rng.integers(0, 4, n_stores)]
    price = rng.uniform(1.0, 5.0, n)
    temp = rng.uniform(-5.0, 30.0, n)
    u0, u1, v0 = rng.normal(0, 2.0, n_stores), rng.normal(0, 1.0, n_stores), rng.normal(0, 1.5, n_stores)
    region_effect = pd.Series({"east": 0.0, "north": -1.0, "south": 1.5, "west": 0.5})[region].to_numpy()
    sales = (20 + region_effect[s] + 3 * np.sin(temp / 6) - 1.5 * price + u0[s] + u1[s] * (price - 3)
             + rng.normal(0, 1.5, n))
    sold_out = rng.random(n) < expit(-0.3 + 0.8 * (price - 3) + 0.06 * (temp - 12) + v0[s])
    return pd.DataFrame({"store": 308 + s, "region": region[s], "price": price, "temp": temp,
                         "sales": sales, "sold_out": sold_out.astype(int)})


@pytest.fixture(scope="module")
def stores():
    return simulate_stores()


def routing():
    return sklearn.config_context(enable_metadata_routing=True)


def preprocess():
    """The practitioner's ColumnTransformer: one-hot region, a spline of temperature, price as
    it is, the store passed through (remainder), all with their prefixed names."""
    return ColumnTransformer(
        [("cat", OneHotEncoder(drop="first", sparse_output=False), ["region"]),
         ("spline", SplineTransformer(n_knots=4, include_bias=False), ["temp"]),
         ("num", "passthrough", ["price"])],
        remainder="passthrough",
    ).set_output(transform="pandas")


FEATURES = ["region", "temp", "price", "store"]


def by_hand(model, df, y, train, test, predict="predict"):
    """Fit the preprocessing and the model on the training rows; predict the test rows with
    their groups passed explicitly."""
    ct = preprocess()
    Xt = ct.fit_transform(df.iloc[train][["region", "temp", "price"]])
    m = sklearn.base.clone(model).fit(Xt, y.iloc[train], groups=df["store"].iloc[train])
    Xs = ct.transform(df.iloc[test][["region", "temp", "price"]])
    return getattr(m, predict)(Xs, groups=df["store"].iloc[test])


# ---------------------------------------------------------------- 2. groups that went to the splitter
def test_2_groups_passed_to_a_tool_with_routing_off_explains(stores):
    df = stores
    X, y, g = df[["price", "temp"]], df["sales"], df["store"]
    with pytest.raises(ValueError, match="splitter") as err:
        cross_validate(MixedLinearRegressor(), X, y, groups=g, cv=GroupKFold(3), error_score="raise")
    message = str(err.value)
    assert "group_columns" in message and "enable_metadata_routing" in message
    # the same for a pipeline that starts with the centering transformer
    pipe = make_pipeline(skmlm.BetweenWithinTransformer(columns=["price"]), MixedLinearRegressor())
    with pytest.raises(ValueError, match="splitter"):
        cross_validate(pipe, X, y, groups=g, cv=GroupKFold(3), error_score="raise")


# ---------------------------------------------------------------- 3. names after a ColumnTransformer
def test_3_original_column_names_after_a_column_transformer(stores):
    df = stores
    X, y = df[FEATURES], df["sales"]
    pipe = make_pipeline(preprocess(), MixedLinearRegressor(random_slopes=["price"], group_columns="store")).fit(X, y)
    m = pipe[-1]
    assert list(m.random_effects_) == ["store"]  # the factor keeps the name it was given
    assert list(m.random_covariance_["store"].columns) == ["(Intercept)", "num__price"]
    Xt = pipe[0].transform(X).rename(columns={"remainder__store": "store", "num__price": "price"})
    direct = MixedLinearRegressor(random_slopes=["price"], group_columns="store").fit(Xt, y)
    np.testing.assert_allclose(m.coef_, direct.coef_, rtol=1e-10)
    np.testing.assert_allclose(pipe.predict(X), direct.predict(Xt), rtol=1e-10)
    # a dict of slopes per factor, and the centering transformer, take the original names too
    pipe = make_pipeline(preprocess(), MixedLinearRegressor(random_slopes={"store": ["price"]}, group_columns="store"))
    np.testing.assert_allclose(pipe.fit(X, y)[-1].coef_, m.coef_, rtol=1e-10)
    bw = skmlm.BetweenWithinTransformer(columns=["price"], group_columns="store").set_output(transform="pandas")
    out = make_pipeline(preprocess(), bw).fit_transform(X)
    assert {"num__price_between", "num__price_within", "remainder__store"} <= set(out.columns)
    # a name that fits several columns is refused, naming them
    Xa = pd.DataFrame({"a__x": [1.0, 2, 3, 4], "b__x": [2.0, 1, 4, 3], "g": [1, 1, 2, 2]})
    with pytest.raises(ValueError, match="a__x.*b__x"):
        MixedLinearRegressor(random_slopes=["x"], group_columns="g").fit(Xa, [1.0, 2, 4, 3])


