"""``python -m skmlm``: fit the bundled data sets and print lme4-style summaries.

1. ``Reaction ~ Days + (Days | Subject)`` on lme4's sleepstudy, by REML (``lmer``);
2. ``y ~ period + (1 | herd)``, binomial, on lme4's cbpp with one row per animal,
   by the Laplace approximation (``glmer``).
"""

from . import MixedLinearRegressor, MixedLogisticClassifier
from .datasets import load_cbpp, load_sleepstudy


def main():
    df = load_sleepstudy()
    linear = MixedLinearRegressor(random_slopes=["Days"], reml=True)
    linear.fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    print("Reaction ~ Days + (Days | Subject) on lme4's sleepstudy data\n")
    print(linear.summary())

    cbpp = load_cbpp()
    periods = cbpp["period"].str.get_dummies().drop(columns="1").add_prefix("period").astype(float)
    logistic = MixedLogisticClassifier().fit(periods, cbpp["y"], groups=cbpp["herd"])
    print("\n\ny ~ period + (1 | herd), binomial, on lme4's cbpp data (one row per animal)\n")
    print(logistic.summary())


if __name__ == "__main__":
    main()
