"""The models of tests/golden/make_reporting.R, fitted by skmlm (cached: fitted once per session)."""

import json
from functools import lru_cache

from golden_cases import GOLDEN, load_case

from skmlm import MixedLinearRegressor, MixedLogisticClassifier, between_within
from skmlm.datasets import load_ess, load_sleepstudy


def golden(name):
    """reporting_anova or reporting_r2, with JSON nulls (R's NA) as None."""
    return json.loads((GOLDEN / f"reporting_{name}.json").read_text())


def ess_frame():
    df = load_ess()
    df = df.join(between_within(df[["eduyrs"]], groups=df["cntry"]))
    df["w_edu_x_gni"] = df["eduyrs_within"] * df["gnipc1000"]
    return df


@lru_cache(maxsize=None)
def fitted(name):
    """The skmlm fit of one model named as in make_reporting.R."""
    if name.startswith("ess_"):
        df = ess_frame()
        y, g = df["stflife"], df["cntry"]
        reml = name.endswith("_reml")
        bw = ["eduyrs_between", "eduyrs_within", "gnipc1000"]
        spec = {
            "null": ([], None), "edu": (["eduyrs"], None), "edu_slope": (["eduyrs"], ["eduyrs"]),
            "bw_gni": (bw, None), "bw_slope_cross": (bw + ["w_edu_x_gni"], ["eduyrs_within"]),
        }[name[4:].rsplit("_", 1)[0]]
        return MixedLinearRegressor(reml=reml, random_slopes=spec[1]).fit(df[spec[0]], y, groups=g)
    if name.startswith("sleepstudy_"):
        df = load_sleepstudy()
        slopes = ["Days"] if "_rs_" in name else None
        return MixedLinearRegressor(reml=name.endswith("_reml"), random_slopes=slopes).fit(
            df[["Days"]], df["Reaction"], groups=df["Subject"])
    if name.startswith("cbpp_"):
        _, data = load_case("cbpp_binary_laplace")
        X = data[[] if "null" in name else ["period2", "period3", "period4"]]
        return MixedLogisticClassifier().fit(X, data["y"], groups=data["g_herd"])
    raise KeyError(name)
