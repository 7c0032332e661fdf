"""A mixed model in the machine-learning practitioner's pipeline, scored as it predicts.

Weekly sales of 500 stores (``skmlm.datasets.make_store_sales``): a random intercept and
a random price slope per store, a region and a smooth temperature effect; and a binary
"sold out" outcome. The pipeline is what a scikit-learn user writes:

* a ``ColumnTransformer`` with scikit-learn's default encoders: ``OneHotEncoder()`` of the
  region (a column for every region; ``sparse_output=False`` only because pandas output,
  which gives the columns their names, cannot hold a sparse matrix), ``SplineTransformer()``
  of temperature (with its default bias), price as it is, and the store id passed through
  (``remainder="passthrough"``);
* a mixed model that takes its groups from that column (``group_columns="store"``; the
  ColumnTransformer calls it ``remainder__store``, and ``random_slopes=["price"]`` finds
  ``num__price``), so the groups travel with X into every scikit-learn tool;
* cross-validation with KFold (new weeks of known stores) and GroupKFold (new stores),
  scikit-learn's named scorers, GridSearchCV, and CalibratedClassifierCV.

With an intercept, the region dummies (they sum to 1) and the spline's basis (it sums to 1)
are aliased: the model drops the dummy of the last region and the last spline column, as
lme4 does, with a warning naming them. Section 0 shows it once; the model and its
predictions are those of the design without the two columns.

Every score scikit-learn reports is computed again by hand, fitting each fold and
predicting it with ``groups=`` passed explicitly, and the two are checked to be equal.
The model's predictions without the stores' effects (what a named scorer scored when
the groups did not reach predict) are shown for contrast.

Run: ``python examples/ml_pipeline.py`` (about 10 seconds).
"""

import textwrap
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, r2_score, roc_auc_score, root_mean_squared_error
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

from skmlm import MixedLinearRegressor, MixedLogisticClassifier
from skmlm.datasets import make_store_sales

df = make_store_sales()  # 500 stores x 12 weeks; store ids 308 ... 807
X = df[["region", "temp", "price", "store"]]
y, sold_out, stores = df["sales"], df["sold_out"], df["store"]


def preprocess():
    return ColumnTransformer(
        [("cat", OneHotEncoder(sparse_output=False), ["region"]),  # dense: for pandas output
         ("spline", SplineTransformer(), ["temp"]),  # 5 knots (the default), cubic: 7 columns
         ("num", "passthrough", ["price"])],
        remainder="passthrough",  # the store id, as "remainder__store"
    ).set_output(transform="pandas")


def pipeline(model):
    return make_pipeline(preprocess(), model)


FEATURES = ["region", "temp", "price"]  # X without the store


def by_hand(model, target, train, test, method="predict", with_groups=True, n_knots=5):
    """One fold by hand: the preprocessing and the model (without group_columns) fitted on
    the training rows, the groups passed to fit and to prediction explicitly."""
    ct = preprocess().set_params(spline__n_knots=n_knots)
    m = clone(model).set_params(group_columns=None, missing_groups="population")
    m.fit(ct.fit_transform(df.iloc[train][FEATURES]), target.iloc[train], groups=stores.iloc[train])
    groups = stores.iloc[test] if with_groups else None  # None: the population prediction
    return getattr(m, method)(ct.transform(df.iloc[test][FEATURES]), groups=groups)


rows, stores_out = KFold(5, shuffle=True, random_state=0), GroupKFold(5)

# -- 0. the default encoders beside the intercept: two aliased columns, dropped as lme4 does --
model = MixedLinearRegressor(random_slopes=["price"], group_columns="store")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    reg = pipeline(model).fit(X, y)
assert len(caught) == 1 and reg[-1].dropped_columns_ == ["cat__region_west", "spline__temp_sp_6"]
names = list(reg[-1].feature_names_in_)
assert all(reg[-1].coef_[names.index(c)] == 0 for c in reg[-1].dropped_columns_)
# the same columns without the aliased ones, set by hand: the same model, and no warning
reduced = make_pipeline(preprocess().set_params(cat__drop="first", spline__include_bias=False), clone(model))
gap = np.abs(reg.predict(X) - reduced.fit(X, y).predict(X)).max()
assert gap < 1e-6
print("0. The design of OneHotEncoder() and SplineTransformer() beside the intercept: the four region\n"
      "   dummies sum to 1, and so do the spline's seven basis columns. The fit warns (a UserWarning):")
print("     " + textwrap.fill(str(caught[0].message), 92, subsequent_indent="     "))
print(f"   dropped_columns_ = {reg[-1].dropped_columns_} (coef_ 0); lme4's lmer drops the same\n"
      f"   two. The same model as with OneHotEncoder(drop='first') and SplineTransformer(include_bias=False),\n"
      f"   which alias nothing: predictions within {gap:.0e}.\n")
# scikit-learn's cross-validation shows a warning again for every fit: the one above, for these
# columns (n_knots=3: 'spline__temp_sp_4'), is not repeated. Any other aliased column still warns.
warnings.filterwarnings("ignore", category=UserWarning, message=(
    r"the fixed-effects design is rank deficient: dropping 2 columns 'cat__region_west', 'spline__temp_sp_\d+', "))

# -- 1. cross-validated sales, named scorers ------------------------------------------------
print("1. Cross-validated RMSE and R^2 of sales, MixedLinearRegressor(random_slopes=['price'])")
for name, cv in (("KFold (new weeks of known stores)", rows), ("GroupKFold (new stores)", stores_out)):
    splitter_groups = stores if isinstance(cv, GroupKFold) else None  # routing off: for the splitter only
    res = cross_validate(pipeline(model), X, y, cv=cv, groups=splitter_groups,
                         scoring=["neg_root_mean_squared_error", "r2"])
    rmse, r2, rmse_pop = [], [], []
    for train, test in cv.split(X, y, splitter_groups):
        pred = by_hand(model, y, train, test)
        rmse.append(root_mean_squared_error(y.iloc[test], pred))
        r2.append(r2_score(y.iloc[test], pred))
        rmse_pop.append(root_mean_squared_error(y.iloc[test], by_hand(model, y, train, test, with_groups=False)))
    sk_rmse, sk_r2 = -res["test_neg_root_mean_squared_error"], res["test_r2"]
    assert np.allclose(sk_rmse, rmse, rtol=1e-9) and np.allclose(sk_r2, r2, rtol=1e-9)
    print(f"   {name}")
    print(f"     scikit-learn  RMSE {np.round(sk_rmse, 3)}  mean {sk_rmse.mean():.3f}   R^2 mean {sk_r2.mean():.3f}")
    print(f"     by hand       RMSE {np.round(rmse, 3)}  mean {np.mean(rmse):.3f}   R^2 mean {np.mean(r2):.3f}"
          f"   equal: {np.allclose(sk_rmse, rmse, rtol=1e-9) and np.allclose(sk_r2, r2, rtol=1e-9)}")
    print(f"     without the stores' effects (population predictions): RMSE mean {np.mean(rmse_pop):.3f}")
print("   The noise sd is 1.5: with the stores' effects the model comes near it for known stores. For new\n"
      "   stores (GroupKFold) every prediction is the population one, with or without groups.\n")

# -- 2. GridSearchCV: is the random price slope worth it? ------------------------------------
grid = {"mixedlinearregressor__random_slopes": [None, ["price"]],
        "columntransformer__spline__n_knots": [3, 5]}
gs = GridSearchCV(pipeline(MixedLinearRegressor(group_columns="store")), grid, cv=rows,
                  scoring="neg_root_mean_squared_error").fit(X, y)
table = pd.DataFrame({
    "random_slopes": [str(p) for p in gs.cv_results_["param_mixedlinearregressor__random_slopes"]],
    "n_knots": gs.cv_results_["param_columntransformer__spline__n_knots"],
    "RMSE (scikit-learn)": -gs.cv_results_["mean_test_score"],
})
by_hand_rmse = []
for params in gs.cv_results_["params"]:
    m = MixedLinearRegressor(random_slopes=params["mixedlinearregressor__random_slopes"])
    knots = params["columntransformer__spline__n_knots"]
    by_hand_rmse.append(np.mean([root_mean_squared_error(y.iloc[test], by_hand(m, y, train, test, n_knots=knots))
                                 for train, test in rows.split(X)]))
table["RMSE (by hand)"] = by_hand_rmse
assert np.allclose(table["RMSE (scikit-learn)"], table["RMSE (by hand)"], rtol=1e-9)
print("2. GridSearchCV over the random price slope and the spline's knots (KFold, RMSE)")
print("  ", table.round(4).to_string(index=False).replace("\n", "\n   "))
print(f"   best: {gs.best_params_}")
print(f"   gs.predict(X) uses each store's effects (groups in X): RMSE on the training rows "
      f"{root_mean_squared_error(y, gs.predict(X)):.3f}\n")

# -- 3. a classifier: roc_auc and calibration ----------------------------------------------
clf = MixedLogisticClassifier(group_columns="store")
res = cross_validate(pipeline(clf), X, sold_out, cv=rows, scoring="roc_auc")
auc = [roc_auc_score(sold_out.iloc[test], by_hand(clf, sold_out, train, test, "predict_proba")[:, 1])
       for train, test in rows.split(X)]
auc_pop = [roc_auc_score(sold_out.iloc[test],
                         by_hand(clf, sold_out, train, test, "predict_proba", with_groups=False)[:, 1])
           for train, test in rows.split(X)]
assert np.allclose(res["test_score"], auc, rtol=1e-9)
print("3. Sold out? MixedLogisticClassifier, KFold ROC AUC")
print(f"   scikit-learn {np.round(res['test_score'], 4)}  mean {res['test_score'].mean():.4f}")
print(f"   by hand      {np.round(auc, 4)}  mean {np.mean(auc):.4f}   "
      f"equal: {np.allclose(res['test_score'], auc, rtol=1e-9)}")
print(f"   without the stores' effects: mean {np.mean(auc_pop):.4f}")

# calibration on a training split, judged on held-out weeks of the same stores
train, test = train_test_split(np.arange(len(df)), test_size=0.25, random_state=0, stratify=stores)
cal_cv = KFold(3, shuffle=True, random_state=0)
cal = CalibratedClassifierCV(pipeline(clf), method="isotonic", cv=cal_cv).fit(X.iloc[train], sold_out.iloc[train])
p_sklearn = cal.predict_proba(X.iloc[test])[:, 1]
p_hand = np.zeros(len(test))  # each fold: the model, an isotonic map of its log-odds, averaged
for inner_train, inner_test in cal_cv.split(train):
    fold_train, fold_test = train[inner_train], train[inner_test]
    iso = IsotonicRegression(out_of_bounds="clip").fit(
        by_hand(clf, sold_out, fold_train, fold_test, "decision_function"), sold_out.iloc[fold_test])
    p_hand += iso.predict(by_hand(clf, sold_out, fold_train, test, "decision_function")) / cal_cv.get_n_splits()
assert np.allclose(p_sklearn, p_hand, rtol=1e-9)
uncalibrated = pipeline(clf).fit(X.iloc[train], sold_out.iloc[train]).predict_proba(X.iloc[test])[:, 1]
print("   CalibratedClassifierCV (isotonic, 3 folds), Brier score on held-out weeks")
print(f"   scikit-learn {brier_score_loss(sold_out.iloc[test], p_sklearn):.4f}   by hand "
      f"{brier_score_loss(sold_out.iloc[test], p_hand):.4f}   equal: {np.allclose(p_sklearn, p_hand, rtol=1e-9)}")
print(f"   the model alone {brier_score_loss(sold_out.iloc[test], uncalibrated):.4f}: its probabilities, with the "
      "stores' effects, were calibrated already")
