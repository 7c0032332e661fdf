"""How the individual covariates and the binary outcome of ``ess.csv`` were simulated.

``stflife``, ``eduyrs``, ``gnipc1000`` and ``cntry`` are the columns made by
``tests/golden/make_reference.R`` (29 countries x 200 people, simulated to the shape of the
seminar's ESS extract) and are kept as they are. This script adds, with a fixed seed:

* ``agea``: age in years, 18-90;
* ``gndr``: ``"F"`` or ``"M"``;
* ``hinctnta``: household income decile 1-10, rising with education;
* ``happy``: 1 when the respondent says they are happy, from a logistic model with a
  random intercept per country::

      logit P(happy) = -2.2 + 0.08 eduyrs + 0.15 hinctnta - 0.01 (agea - 50)
                       + 0.2 [gndr = F] + 0.05 gnipc1000 / 10 + u,   u ~ N(0, 0.6^2)

Run from the repository's root: ``python skmlm/datasets/_make_ess.py`` (rewrites ess.csv).
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def main():
    df = pd.read_csv(HERE / "ess.csv", dtype={"cntry": str})[["stflife", "eduyrs", "gnipc1000", "cntry"]]
    rng = np.random.default_rng(20240515)
    n = len(df)
    age = np.clip(np.round(rng.normal(48, 17, n)), 18, 90).astype(int)
    gndr = np.where(rng.random(n) < 0.52, "F", "M")
    latent = 0.35 * (df["eduyrs"] - df["eduyrs"].mean()) / df["eduyrs"].std() + rng.normal(0, 1, n)
    decile = np.clip(np.ceil(10 * pd.Series(latent).rank(pct=True)), 1, 10).astype(int)
    countries = np.sort(df["cntry"].unique())
    u = dict(zip(countries, rng.normal(0, 0.6, len(countries))))
    eta = (-2.2 + 0.08 * df["eduyrs"] + 0.15 * decile - 0.01 * (age - 50) + 0.2 * (gndr == "F")
           + 0.05 * df["gnipc1000"] / 10 + df["cntry"].map(u))
    happy = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    out = df.assign(agea=age, gndr=gndr, hinctnta=decile, happy=happy)
    out.to_csv(HERE / "ess.csv", index=False)


if __name__ == "__main__":
    main()
