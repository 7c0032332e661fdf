"""skmlm on the designs of make_data.py, the same models as fit_lme4.R.

Usage: python fit_skmlm.py
"""

import pandas as pd

from skmlm import MixedLinearRegressor


def fit(file, reml, covariance="unstructured", weighted=False, factors=("g1", "g2"), slopes=("x1",), intercept=True):
    d = pd.read_csv(file, dtype={"g1": str, "g2": str})
    m = MixedLinearRegressor(random_slopes={"g1": list(slopes)} if slopes else None, random_intercept=intercept,
                             covariance=covariance, reml=reml).fit(
        d[["x1", "x2"]], d["y"], groups=d[list(factors)], sample_weight=d["w"] if weighted else None)
    print(file, covariance, list(factors), list(slopes), f"logLik {m.log_likelihood_:.7f}", "converged", m.converged_)
    print(" fixef", m.fixed_effects_["Estimate"].round(8).tolist())
    print(" se", m.fixed_effects_["Std. Error"].round(8).tolist())
    print(" " + "  ".join(f"{g} {m.random_covariance_[g].to_numpy().round(6).tolist()}" for g in factors),
          f"residual {m.residual_variance_:.6f}")


if __name__ == "__main__":
    fit("a.csv", True)
    fit("a.csv", False, "diagonal", True)
    fit("b.csv", True)
    fit("d.csv", False)
    # one scalar random term (the closed-form path) and crossed random intercepts
    fit("a.csv", True, weighted=True, factors=("g1",), slopes=())
    fit("b.csv", False, factors=("g1",), intercept=False)
    fit("d.csv", False, factors=("g1",), slopes=())
    fit("a.csv", True, slopes=())
