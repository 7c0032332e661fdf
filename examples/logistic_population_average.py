"""New groups: the population-averaged probability against the probability at effect 0.

For a group not seen in fitting, its random effect is unknown. Plugging in 0 gives the
probability of a "typical" group, which is too extreme (further from 1/2) for a group
drawn at random. MixedLogisticClassifier integrates the random effect over its fitted
distribution instead. This script holds out whole groups with GroupKFold on the
``logit_slopes_laplace`` reference data (60 groups, random intercept and slope) and
compares the log-loss and Brier score of the two on the held-out groups.

Run: ``python examples/logistic_population_average.py``
"""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import GroupKFold

from skmlm import MixedLogisticClassifier

DATA = Path(__file__).resolve().parents[1] / "tests" / "golden" / "logit_slopes_laplace.csv"
df = pd.read_csv(DATA, dtype={"g_g": str})
X, y, g = df[["x", "z"]], df["y"].to_numpy(), df["g_g"]

rows = []
for fold, (train, test) in enumerate(GroupKFold(n_splits=10).split(X, y, g)):
    m = MixedLogisticClassifier(random_slopes=["x"]).fit(X.iloc[train], y[train], groups=g.iloc[train])
    # the test groups are unseen: groups given or not, their effects are unknown
    p_avg = m.predict_proba(X.iloc[test], groups=g.iloc[test])[:, 1]
    p_zero = m.predict_proba(X.iloc[test], groups=g.iloc[test], unseen_levels="zero")[:, 1]
    rows.append({
        "fold": fold,
        "log_loss_average": log_loss(y[test], p_avg), "log_loss_zero": log_loss(y[test], p_zero),
        "brier_average": brier_score_loss(y[test], p_avg), "brier_zero": brier_score_loss(y[test], p_zero),
    })
res = pd.DataFrame(rows).set_index("fold")
print("Held-out groups (GroupKFold, 10 folds of 6 groups), logit_slopes_laplace data\n")
print(res.round(4).to_string())
mean = res.mean()
print(f"\nmean log-loss   population average {mean.log_loss_average:.4f}   random effect 0 {mean.log_loss_zero:.4f}")
print(f"mean Brier      population average {mean.brier_average:.4f}   random effect 0 {mean.brier_zero:.4f}")
print(f"folds where the population average has the lower log-loss: "
      f"{int((res.log_loss_average < res.log_loss_zero).sum())} of {len(res)}")
