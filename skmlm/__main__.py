"""``python -m skmlm``: fit the bundled data sets and print lme4-style summaries.

1. ``Reaction ~ Days + (Days | Subject)`` on lme4's sleepstudy, by REML (``lmer``);
2. ``y ~ period + (1 | herd)``, binomial, on lme4's cbpp with one row per animal,
   by the Laplace approximation (``glmer``);
3. ``count ~ x + offset(log(exposure)) + (1 | site)``, Poisson, on counts simulated here
   with a fixed seed (``glmer(..., family = poisson)``): an offset for the exposure.
"""

import numpy as np
import pandas as pd

from . import MixedLinearRegressor, MixedLogisticClassifier, MixedPoissonRegressor
from .datasets import load_cbpp, load_sleepstudy


def simulated_counts(seed=2015):
    """Counts at 30 sites, 10 visits each, of exposures from 0.5 to 3: log rate
    ``0.5 + 0.4 x``, site effects of SD 0.5."""
    rng = np.random.default_rng(seed)
    site = np.repeat([f"s{i:02d}" for i in range(30)], 10)
    x = rng.normal(size=site.size).round(2)
    exposure = rng.uniform(0.5, 3.0, site.size).round(2)
    rate = np.exp(0.5 + 0.4 * x + np.repeat(rng.normal(0, 0.5, 30), 10))
    return pd.DataFrame({"site": site, "x": x, "exposure": exposure, "count": rng.poisson(exposure * rate)})


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

    counts = simulated_counts()
    poisson = MixedPoissonRegressor().fit(
        counts[["x"]], counts["count"], groups=counts["site"], offset=np.log(counts["exposure"])
    )
    print("\n\ncount ~ x + offset(log(exposure)) + (1 | site), Poisson, on simulated counts "
          "(30 sites x 10 visits, seed 2015)\n")
    print(poisson.summary())


if __name__ == "__main__":
    main()
