"""skmlm on the designs of make_data.py, the same models as fit_lme4.R.

Usage: python fit_skmlm.py
"""

import pandas as pd

from skmlm import MixedLinearRegressor


def fit(file, reml, covariance="unstructured", weighted=False):
    d = pd.read_csv(file, dtype={"g1": str, "g2": str})
    m = MixedLinearRegressor(random_slopes={"g1": ["x1"]}, covariance=covariance, reml=reml).fit(
        d[["x1", "x2"]], d["y"], groups=d[["g1", "g2"]], sample_weight=d["w"] if weighted else None)
    print(file, covariance, f"logLik {m.log_likelihood_:.7f}", "converged", m.converged_)
    print(" fixef", m.fixed_effects_["Estimate"].round(8).tolist())
    print(" se", m.fixed_effects_["Std. Error"].round(8).tolist())
    print(" g1", m.random_covariance_["g1"].to_numpy().round(6).tolist(),
          "g2", m.random_covariance_["g2"].to_numpy().round(6).tolist(), f"residual {m.residual_variance_:.6f}")


if __name__ == "__main__":
    fit("a.csv", True)
    fit("a.csv", False, "diagonal", True)
    fit("b.csv", True)
    fit("d.csv", False)
