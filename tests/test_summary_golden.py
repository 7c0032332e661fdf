"""summary() against lme4's printed summaries (tests/golden/summaries/*.txt, made by
make_summaries.R there; lmerTest's for a linear model), line by line.

Every line but lme4's ``Data:``/``Control:`` (the call's variable names, which skmlm does
not have) must match: the same words in the same columns, and each number equal to
lme4's at its printed precision, within one unit of its last printed digit or ``RTOL``
relative (a p-value in scientific notation: ``LOG_TOL`` in log10), for the optima of skmlm
and lme4 differ in the 5th digit (lme4's fits stop at a gradient of ~1e-3; its GLMMs are
refitted with ``tolPwrss = 1e-12`` so that PIRLS is converged as skmlm converges it). The
negative binomial is glmer.nb's, whose likelihood is not glmmTMB's (which skmlm matches):
its estimates are ~1% apart, so 2% relative (5e-3 absolute) and 0.2 in log10 there.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from skmlm import _rprint as R  # noqa: E402
from skmlm import glmer, lmer  # noqa: E402
from skmlm._summary import generalized_summary, linear_summary  # noqa: E402
from skmlm.datasets import load_sleepstudy  # noqa: E402

ROOT = Path(__file__).parent.parent
GOLDEN = ROOT / "tests" / "golden" / "summaries"
RTOL, LOG_TOL = 2e-4, 0.01
# glmer.nb is a different fit (its Laplace likelihood is not glmmTMB's, which skmlm matches)
LOOSE = {"salamanders_nb2": (2e-2, 0.2, 5e-3)}


def _sleep():
    df = load_sleepstudy()
    return df.assign(Subject=df["Subject"].astype(str))


def _fit(name):
    if name == "sleep_slope_lmertest":
        return lmer("Reaction ~ Days + (Days | Subject)", _sleep()), "lmerModLmerTest"
    if name == "sleep_offset_ml":
        return lmer("Reaction ~ Days + offset(2 * log(Days + 1)) + (Days | Subject)", _sleep(), REML=False), "lmerModLmerTest"
    if name == "cbpp_logit":
        cbpp = pd.read_csv(ROOT / "skmlm" / "datasets" / "cbpp_binary.csv", dtype={"period": str, "herd": str})
        return glmer("y ~ period + (1 | herd)", cbpp), "glmerMod"
    if name == "poisson_offset":
        pois = pd.read_csv(ROOT / "tests" / "golden" / "families" / "sim_poisson_offset_slope.csv")
        return glmer("y ~ x + offset(offset) + (x | g_g)", pois, family="poisson"), "glmerMod"
    sal = pd.read_csv(ROOT / "tests" / "golden" / "families" / "salamanders_nb2.csv")
    formula = "y ~ sppPR + sppDM + sppEC_A + sppEC_L + sppDES_L + sppDF + minedno + (1 | g_site)"
    return glmer(formula, sal, family="nbinom2"), "glmerMod"


NAMES = ["sleep_slope_lmertest", "sleep_offset_ml", "cbpp_logit", "poisson_offset", "salamanders_nb2"]


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]\d+)?")


def _unit(token):
    """One unit of the last printed digit of a number as printed (``0.0332`` -> 1e-4)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _close(x, y, rtol, log_tol, atol):
    """Printed numbers equal within a unit of lme4's last digit or ``rtol`` relative;
    a tiny number in scientific notation (a p-value) within ``log_tol`` in log10."""
    vx, vy = float(x), float(y)
    if "e-" in y and vx > 0 and vy > 0:
        return abs(np.log10(vx) - np.log10(vy)) <= log_tol
    return abs(vx - vy) <= max(_unit(y), rtol * abs(vy), atol) * (1 + 1e-9)


def assert_same_print(ours, lme4, rtol=RTOL, log_tol=LOG_TOL, atol=0.0):
    """The same lines, each word aligned at the same left or right edge as lme4's and
    equal to it, numbers within the printed precision (:func:`_close`)."""
    assert len(ours) == len(lme4), "\n".join(ours)
    for a, b in zip(ours, lme4):
        if a == b:
            continue
        wa, wb = list(re.finditer(r"\S+", a)), list(re.finditer(r"\S+", b))
        assert len(wa) == len(wb), (a, b)
        for x, y in zip(wa, wb):
            assert x.start() == y.start() or x.end() == y.end(), (a, b)
            if x.group() == y.group():
                continue
            assert NUMBER.split(x.group()) == NUMBER.split(y.group()), (a, b)  # the words around numbers
            for nx, ny in zip(NUMBER.findall(x.group()), NUMBER.findall(y.group())):
                assert _close(nx, ny, rtol, log_tol, atol), (a, b)


@pytest.mark.parametrize("name", NAMES)
def test_summary_prints_as_lme4(name):
    m, cls = _fit(name)
    lme4 = [line.rstrip() for line in (GOLDEN / f"{name}.txt").read_text().splitlines()]
    lme4 = [line for line in lme4 if not line.startswith(("   Data:", "Control:"))]
    summary = linear_summary if name.startswith("sleep") else generalized_summary
    ours = summary(m, class_name=cls).splitlines()
    assert_same_print(ours, lme4, *LOOSE.get(name, (RTOL, LOG_TOL, 0.0)))
    # and with the estimator's own class in the header
    assert type(m).__name__ in m.summary()


def test_r_number_formatting():
    """R's format(), format.pval() and abbreviate() on values whose printing is known."""
    assert R.format_real([7282.0449, 7310.0494, -3636.0224, 7272.0449]) == [" 7282.045", " 7310.049", "-3636.022", " 7272.045"]
    assert R.format_real([0.705640, 0.001491, 4.295467], 4) == ["0.705640", "0.001491", "4.295467"]
    assert R.format_real([1e-20, 1], 4) == ["1e-20", "1e+00"]
    assert R.format_real([9996], 3) == ["9996"]  # 1.00e+04 in scientific, 4 digits in fixed
    assert R.format_real([np.nan, 1.5]) == [" NA", "1.5"]
    assert R.format_pval([1.47e-09, 0.001068, 0.000474]) == ["1.47e-09", "0.001068", "0.000474"]
    assert R.format_pval([1e-20, 3.26e-06]) == ["< 2e-16", "3.26e-06"]
    assert R.format_pval([1e-20, 0.5]) == ["<2e-16", "0.5"]
    assert [R.abbreviate(n, 6) for n in ["(Intercept)", "I(agea^2)", "gnipc1000", "sppDES_L"]] == [
        "(Intr)", "I(g^2)", "gn1000", "sDES_L"]
    assert R.abbreviate("eduyrs:gnipc1000", 11) == "edyrs:g1000"


def test_formula_lines_wrap_as_deparse():
    """A long formula breaks after a binary operator past 60 characters, as R's deparse."""
    lme4 = (ROOT / "tests" / "golden" / "formula" / "summary_person.txt").read_text().splitlines()
    f = "stflife ~ eduyrs * gnipc1000 + gndr + I(agea^2) + (1 + eduyrs | cntry)"
    assert [s.rstrip() for s in R.cat_fill([["Formula:"], R.deparse_formula(f)])] == [s.rstrip() for s in lme4[1:3]]
    assert R.method_title("Linear mixed model fit by maximum likelihood ", "lmerMod") == [lme4[0]]


def test_no_stars_without_a_p_value_below_0_1():
    table = pd.DataFrame({"Estimate": [0.1], "Std. Error": [1.0], "z value": [0.1], "Pr(>|z|)": [0.92]}, index=["x"])
    lines = R.coef_matrix(table)
    assert lines == ["  Estimate Std. Error z value Pr(>|z|)", "x      0.1        1.0     0.1     0.92"]
