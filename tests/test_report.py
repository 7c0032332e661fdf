"""tab_models (side-by-side tables) and skmlm.plotting.caterpillar."""

import copy
import html
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from reporting_models import fitted
from scipy.stats import norm

from skmlm import MixedLinearRegressor, ModelTable, r2_nakagawa, tab_models

NAMES = ["null", "edu", "slope"]


@pytest.fixture(scope="module")
def table():
    return tab_models(*(fitted(n) for n in ("ess_null_ml", "ess_edu_ml", "ess_edu_slope_ml")), names=NAMES)


def test_frame_holds_wald_intervals_and_statistics(table):
    assert isinstance(table, ModelTable)
    f = table.to_frame()
    assert list(f.columns.get_level_values(0).unique()) == NAMES
    assert list(f.index[:2]) == ["(Intercept)", "eduyrs"]
    m = fitted("ess_edu_slope_ml")
    est, se = m.fixed_effects_["Estimate"], np.sqrt(np.diag(m.coef_cov_))
    np.testing.assert_allclose(f.loc[["(Intercept)", "eduyrs"], ("slope", "estimate")], est)
    np.testing.assert_allclose(f.loc[["(Intercept)", "eduyrs"], ("slope", "ci_low")], est - 1.959963984540054 * se)
    np.testing.assert_allclose(f.loc[["(Intercept)", "eduyrs"], ("slope", "ci_high")], est + 1.959963984540054 * se)
    # one significance rule with summary(): lmerTest's Satterthwaite p-values for a linear model
    np.testing.assert_allclose(f.loc[["(Intercept)", "eduyrs"], ("slope", "p")],
                               m.fixed_effects_table()["Pr(>|t|)"], rtol=1e-10)
    assert np.isnan(f.loc["eduyrs", ("null", "estimate")])  # the null model has no eduyrs
    cov = m.random_covariance_["cntry"].to_numpy()
    r2 = r2_nakagawa(m)
    col = ("slope", "estimate")
    assert f.loc["sigma2", col] == pytest.approx(m.residual_variance_)
    assert f.loc["tau00 cntry", col] == pytest.approx(cov[0, 0])
    assert f.loc["tau11 cntry.eduyrs", col] == pytest.approx(cov[1, 1])
    assert f.loc["rho01 cntry.eduyrs", col] == pytest.approx(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
    assert f.loc["ICC", col] == pytest.approx(m.icc_)
    assert f.loc["N cntry", col] == 29 and f.loc["Observations", col] == 5800
    assert f.loc["R2 marginal", col] == pytest.approx(r2["r2_marginal"])
    assert f.loc["R2 conditional", col] == pytest.approx(r2["r2_conditional"])
    assert f.loc["AIC", col] == pytest.approx(m.aic_)
    assert np.isnan(f.loc["tau11 cntry.eduyrs", ("edu", "estimate")])


def test_text(table):
    text = str(table)
    assert text == table.to_text() == repr(table)
    lines = text.splitlines()
    assert all(n in lines[0] for n in NAMES)
    assert "95% CI" in lines[1]
    edu = next(line for line in lines if line.startswith("eduyrs"))
    assert "***" in edu and "[" in edu
    assert "Random Effects" in text and "R2 conditional" in text and "p<0.001" in text


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.rows = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows += 1
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag


def test_html_is_balanced(table):
    h = table.to_html()
    assert h == table._repr_html_()
    assert h.startswith("<table") and h.rstrip().endswith("</table>")
    c = _Checker()
    c.feed(h)
    assert c.stack == []
    assert c.rows > 10 and "&tau;<sub>00</sub>" in h and "Marginal R<sup>2</sup>" in h


def test_logistic_and_odds_ratios():
    m = fitted("cbpp_binary_laplace")
    f = tab_models(m).to_frame()
    assert f.loc["sigma2", ("model1", "estimate")] == pytest.approx(np.pi**2 / 3)
    assert "Log-Odds" in tab_models(m).to_text()
    t = tab_models(m, exponentiate=True)
    np.testing.assert_allclose(t.to_frame()[("model1", "estimate")].iloc[:4], np.exp(m.fixed_effects_["Estimate"]))
    assert "Odds Ratios" in t.to_text()


def test_level_and_errors():
    m = fitted("ess_edu_ml")
    f = tab_models(m, level=0.9).to_frame()
    se = np.sqrt(m.coef_cov_[1, 1])
    assert f.loc["eduyrs", ("model1", "ci_high")] == pytest.approx(m.coef_[0] + norm.ppf(0.95) * se)
    assert "90% CI" in tab_models(m, level=0.9).to_text()
    with pytest.raises(ValueError, match="level"):
        tab_models(m, level=95)
    with pytest.raises(ValueError, match="names"):
        tab_models(m, names=["a", "b"])
    with pytest.raises(TypeError):
        tab_models(m, object())
    with pytest.raises(Exception, match="not fitted"):
        tab_models(MixedLinearRegressor())


# -- caterpillar ------------------------------------------------------------------------
def test_caterpillar_draws_sorted_modes_with_intervals():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skmlm.plotting import caterpillar

    m = fitted("ess_edu_slope_ml")
    re = m.random_effects_["cntry"]
    sd = pd.DataFrame(0.1, index=re.index, columns=re.columns)
    axes = caterpillar(m, sd=sd)
    assert len(axes) == 2
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == list(re["(Intercept)"].sort_values(kind="stable").index)
    assert len(axes[0].collections) >= 1  # the error bars
    plt.close("all")

    fig, ax = plt.subplots()
    out = caterpillar(fitted("ess_edu_ml"), ax=ax)  # conditional SDs from random_effects_variance()
    assert out[0] is ax and len(ax.collections) >= 1
    bare = copy.copy(fitted("ess_edu_ml"))
    bare.random_effects_variance = None  # a model without conditional variances: points only
    fig, ax = plt.subplots()
    caterpillar(bare, ax=ax)
    assert len(ax.collections) == 0 and len(ax.lines) >= 1
    cov = np.full((29, 2, 2), 0.01)  # covariances work as sd= too
    assert len(caterpillar(m, sd=cov)) == 2
    with pytest.raises(ValueError, match="terms"):
        caterpillar(m, ax=ax)  # two terms, one Axes
    with pytest.raises(ValueError, match="no grouping factor"):
        caterpillar(m, factor="school")
    plt.close("all")


def test_text_has_p_loglik_bic_and_no_broken_cells(table):
    """A p column, logLik and BIC rows; a degenerate value prints as 0 and a missing
    interval as nothing, never "[, ]" or "1.3e-32"."""
    text = table.to_text()
    assert " p" in text.splitlines()[1] and "logLik" in text and "BIC" in text
    assert "[, ]" not in text and "e-3" not in text
    m = fitted("ess_edu_slope_ml")
    t = tab_models(m, names=["slope"])
    t._fixed["slope"].loc["eduyrs", ["ci_low", "ci_high", "p"]] = np.nan  # a failed interval
    t._stats["slope"]["tau00 cntry"] = 1.3e-32  # a variance at its boundary
    text = t.to_text()
    assert "[, ]" not in text and "1.3e-32" not in text
    assert "tau00 cntry" in text and " 0.000" in text


def test_html_has_the_p_column_of_the_text(table):
    """Each model's block in HTML is estimate, interval and p, the p-values the text prints."""
    h = table.to_html()
    assert h.count("<i>p</i></th>") == len(table.names)
    text_p = next(line for line in table.to_text().splitlines() if line.startswith("eduyrs")).split()[-1]
    assert f">{html.escape(text_p)}</td>" in h
    row = next(r for r in h.split("<tr>") if r.startswith('<td style="padding:0.15em 0.6em;text-align:left">eduyrs<'))
    assert row.count("<td") == 1 + 3 * len(table.names) - 2  # the null model's empty block spans 3 columns
    assert f'colspan="{1 + 3 * len(table.names)}"' in h
