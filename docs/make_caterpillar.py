"""Render docs/caterpillar_ess.png: the caterpillar plot of docs/model_comparison.md.

Run from the repository root: ``python docs/make_caterpillar.py`` (needs matplotlib).
"""

import matplotlib

matplotlib.use("Agg")
from skmlm import MixedLinearRegressor  # noqa: E402
from skmlm.datasets import load_ess  # noqa: E402
from skmlm.plotting import caterpillar  # noqa: E402

df = load_ess()
m = MixedLinearRegressor(reml=False, random_slopes=["eduyrs"]).fit(df[["eduyrs"]], df["stflife"], groups=df["cntry"])
print("conditional SD of C01:", m.random_effects_variance()["cntry"].iloc[0].to_numpy())  # lme4: 0.33503208 0.02642219

axes = caterpillar(m)  # conditional SDs from m.random_effects_variance()
fig = axes[0].figure
fig.suptitle("Conditional modes of the country effects, +- 1.96 conditional SD", fontsize=10)
fig.tight_layout()
fig.savefig("docs/caterpillar_ess.png", dpi=110)
print("wrote docs/caterpillar_ess.png")
