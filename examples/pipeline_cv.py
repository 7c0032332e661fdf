"""Between-within model in a scikit-learn pipeline, cross-validated by country.

Life satisfaction of 5,800 people in 29 countries (``skmlm.datasets.load_ess``):

1. split years of education into the country mean (between) and the deviation from it
   (within), and fit ``stflife ~ eduyrs_between + eduyrs_within + gnipc1000 + (1 | cntry)``;
2. check that the within coefficient is the fixed-effects (country dummy) estimate;
3. cross-validate with GroupKFold (new countries: population predictions) and KFold
   (known countries: conditional predictions), groups given once;
4. tune random slopes and REML with GridSearchCV;
5. do the same with metadata routing off, the country as a column of X.

Run: ``python examples/pipeline_cv.py`` (a few seconds).
"""

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skmlm import BetweenWithinTransformer, MixedLinearRegressor
from skmlm.datasets import load_ess

pd.set_option("display.width", 120)
ess = load_ess()
X, y, g = ess[["eduyrs", "gnipc1000"]], ess["stflife"], ess["cntry"]


def pipeline(**model):
    return make_pipeline(
        BetweenWithinTransformer(columns=["eduyrs"]),  # gnipc1000 is a country-level variable: passes through
        MixedLinearRegressor(reml=False, **model),
    ).set_output(transform="pandas")


# Metadata routing lets `groups` reach every step that asks for it; both skmlm steps ask
# by default, so no set_*_request call is needed.
with sklearn.config_context(enable_metadata_routing=True):
    # 1. the between-within model ----------------------------------------------------
    pipe = pipeline().fit(X, y, groups=g)
    m = pipe[-1]
    print("1. Between-within model, ML (lme4: logLik -12514.1214)")
    print(f"   logLik {m.log_likelihood_:.4f}, ICC {m.icc_:.3f}")
    print(m.fixed_effects_.round(4).to_string().replace("\n", "\n   "), "\n")

    # 2. within = fixed effects ------------------------------------------------------
    dummies = pd.get_dummies(g, dtype=float).to_numpy()
    fe, *_ = np.linalg.lstsq(np.column_stack([X["eduyrs"], dummies]), y, rcond=None)
    print("2. Within coefficient      ", f"{m.coef_[1]:.6f}")
    print("   Country-dummy OLS of eduyrs", f"{fe[0]:.6f}")
    print(f"   Between minus within (contextual effect) {m.coef_[0] - m.coef_[1]:.4f}\n")

    # 3. cross-validation, groups given once --------------------------------------------
    new_countries = cross_val_score(pipeline(), X, y, cv=GroupKFold(n_splits=5), params={"groups": g})
    known = cross_val_score(pipeline(), X, y, cv=KFold(5, shuffle=True, random_state=0), params={"groups": g})
    print("3. Cross-validated R^2")
    print(f"   GroupKFold (unseen countries, population predictions): {new_countries.round(3)}  "
          f"mean {new_countries.mean():.3f}")
    print(f"   KFold      (known countries, conditional predictions): {known.round(3)}  mean {known.mean():.3f}\n")

    # 4. tuning -------------------------------------------------------------------------
    grid = {"mixedlinearregressor__random_slopes": [None, ["eduyrs_within"]],
            "mixedlinearregressor__reml": [True, False]}
    gs = GridSearchCV(pipeline(), grid, cv=GroupKFold(n_splits=5)).fit(X, y, groups=g)
    res = pd.DataFrame(gs.cv_results_)[["param_mixedlinearregressor__random_slopes",
                                        "param_mixedlinearregressor__reml", "mean_test_score", "rank_test_score"]]
    res.columns = ["random_slopes", "reml", "mean R^2", "rank"]
    print("4. GridSearchCV over random slopes and REML (GroupKFold, default score = R^2 with groups)")
    print("  ", res.to_string(index=False).replace("\n", "\n   "))
    best = gs.best_estimator_
    print(f"   best: {gs.best_params_}; predictions of the refitted pipeline for 3 rows: "
          f"{best.predict(X.iloc[:3], groups=g.iloc[:3]).round(3)}\n")

# 5. routing off (scikit-learn's default): the country travels as a column of X ---------
Xg = ess[["eduyrs", "gnipc1000", "cntry"]]
by_column = make_pipeline(
    BetweenWithinTransformer(columns=["eduyrs"], group_columns="cntry"),  # cntry passes through ...
    MixedLinearRegressor(reml=False, group_columns="cntry"),  # ... to the model, which takes it as groups
).set_output(transform="pandas")
same = cross_val_score(by_column, Xg, y, cv=GroupKFold(n_splits=5), groups=g)  # groups: for the splitter only
print("5. Routing off, cntry as a column of X")
print(f"   GroupKFold R^2 {same.round(3)}, identical to 3.: {np.allclose(same, new_countries)}")
by_column.fit(Xg, y)
print(f"   logLik {by_column[-1].log_likelihood_:.4f}; output columns {list(by_column[0].get_feature_names_out())}")
