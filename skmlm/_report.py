"""Several fitted mixed models side by side, as sjPlot's ``tab_model``: text, HTML, DataFrame."""

import html

import numpy as np
import pandas as pd
from scipy.stats import norm

from ._input import INTERCEPT
from ._r2 import r2_nakagawa

FIELDS = ["estimate", "ci_low", "ci_high", "p"]

#: Values of at most this size print as 0 (a variance at its boundary, 1e-32 in floats).
DEGENERATE = 1e-10

#: The one significance rule of tab_models and summary(), stated under the table.
SIGNIFICANCE_NOTE = (
    "* p<0.05   ** p<0.01   *** p<0.001; p as in summary(): Satterthwaite t for linear models (Wald z where "
    "its df cannot be had), Wald z for GLMMs; intervals: Wald, normal quantile"
)


def _p_values(model, est, se):
    """The p-values of summary(): lmerTest's Satterthwaite t-tests for a linear model, the
    Wald z-tests for a GLMM (and for a linear model whose Satterthwaite df fail)."""
    if not hasattr(model, "family_"):
        try:
            return model.fixed_effects_table()["Pr(>|t|)"].to_numpy()
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            pass
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * norm.sf(np.abs(est / se))


def _format_p(p):
    """A p-value as sjPlot prints it: three decimals, ``<0.001`` below; empty when missing."""
    if not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _stars(p):
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


class ModelTable:
    """Fixed effects, variance components and fit statistics of several models.

    Made by :func:`tab_models`; show it with ``print`` (:meth:`to_text`), in a notebook
    (:meth:`_repr_html_`), as HTML (:meth:`to_html`) or as numbers (:meth:`to_frame`).

    Attributes
    ----------
    names : list of str
        Column labels, one per model.
    level : float
        Confidence level of the intervals.
    """

    def __init__(self, models, names, level, digits, exponentiate):
        self.names = names
        self.level = level
        self.digits = digits
        self.exponentiate = exponentiate
        self._logistic = [hasattr(m, "family_") for m in models]
        self._fixed, self._stats = self._collect(models)

    # -- numbers ---------------------------------------------------------------------
    def _collect(self, models):
        z = norm.ppf(0.5 + self.level / 2)
        fixed, stats = {}, {}
        for name, m in zip(self.names, models):
            est = m.fixed_effects_["Estimate"].to_numpy()
            se = m._standard_errors()
            p = _p_values(m, est, se)
            lo, hi = est - z * se, est + z * se
            if self.exponentiate and hasattr(m, "family_"):
                est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
            fixed[name] = pd.DataFrame({"estimate": est, "ci_low": lo, "ci_high": hi, "p": p},
                                       index=m.fixed_effects_.index)
            r2 = r2_nakagawa(m)
            s = {"sigma2": r2["var_residual"]}
            for f, cov in m.random_covariance_.items():
                terms = list(cov.index)
                c = cov.to_numpy()
                for i, t in enumerate(terms):
                    key = f"tau00 {f}" if t == INTERCEPT else f"tau11 {f}.{t}"
                    s[key] = c[i, i]
                if terms[0] == INTERCEPT and not getattr(m, "_uncorrelated", {}).get(f, m.covariance == "diagonal"):
                    for i, t in enumerate(terms[1:], start=1):
                        denom = np.sqrt(c[0, 0] * c[i, i])
                        s[f"rho01 {f}.{t}"] = c[0, i] / denom if denom > 0 else np.nan
            s["ICC"] = m.icc_
            for f, k in m.n_groups_.items():
                s[f"N {f}"] = k
            s["Observations"] = m._fit_info["n_obs"]
            s["R2 marginal"] = r2["r2_marginal"]
            s["R2 conditional"] = r2["r2_conditional"]
            s["AIC"] = m.aic_
            s["BIC"] = m.bic_
            s["logLik"] = m.log_likelihood_
            stats[name] = s
        return fixed, stats

    def _fixed_rows(self):
        rows = []
        for t in self._fixed.values():
            rows += [r for r in t.index if r not in rows]
        return rows

    def _stat_rows(self):
        order = ["sigma2"]
        keys = [k for s in self._stats.values() for k in s]
        for prefix in ("tau00 ", "tau11 ", "rho01 "):
            order += [k for k in dict.fromkeys(keys) if k.startswith(prefix)]
        order.append("ICC")
        order += [k for k in dict.fromkeys(keys) if k.startswith("N ")]
        return order + ["Observations", "R2 marginal", "R2 conditional", "AIC", "BIC", "logLik"]

    def to_frame(self):
        """The table as numbers.

        Returns
        -------
        DataFrame
            Index: the fixed effects, then ``sigma2``, ``tau00 <factor>``, ``tau11
            <factor>.<term>``, ``rho01 <factor>.<term>``, ``ICC``, ``N <factor>``,
            ``Observations``, ``R2 marginal``, ``R2 conditional``, ``AIC``, ``BIC``,
            ``logLik``. Columns: a
            MultiIndex (model, field) with fields ``estimate``, ``ci_low``, ``ci_high``
            and ``p``; the rows after the fixed effects fill ``estimate`` only. NaN where
            a model lacks the term.
        """
        fixed_rows, stat_rows = self._fixed_rows(), self._stat_rows()
        cols = pd.MultiIndex.from_product([self.names, FIELDS], names=["model", "field"])
        out = pd.DataFrame(np.nan, index=pd.Index(fixed_rows + stat_rows), columns=cols)
        for name in self.names:
            t = self._fixed[name]
            for fld in FIELDS:
                out.loc[t.index, (name, fld)] = t[fld].to_numpy()
            for k, v in self._stats[name].items():
                out.loc[k, (name, "estimate")] = v
        return out

    # -- formatting --------------------------------------------------------------------
    def _fmt(self, v, digits=None):
        d = self.digits if digits is None else digits
        if not np.isfinite(v):
            return "NA"
        if DEGENERATE < abs(v) < 0.5 * 10.0**-d:  # would print as 0.000: two significant digits instead
            return f"{v:.2g}"
        return f"{0.0 if abs(v) <= DEGENERATE else v:.{d}f}"

    def _cells(self, dash):
        """(row label, is-section, [(estimate text, CI text) per model]) for text and HTML."""
        out = []
        for r in self._fixed_rows():
            cells = []
            for name in self.names:
                t = self._fixed[name]
                if r in t.index:
                    e = t.loc[r]
                    ci = (f"{self._fmt(e['ci_low'])}{dash}{self._fmt(e['ci_high'])}"
                          if np.isfinite(e["ci_low"]) and np.isfinite(e["ci_high"]) else "")
                    cells.append((f"{self._fmt(e['estimate'])} {_stars(e['p'])}".rstrip(), ci, _format_p(e["p"])))
                else:
                    cells.append(("", "", ""))
            out.append((r, False, cells))
        out.append(("Random Effects", True, None))
        for k in self._stat_rows():
            cells = []
            for name in self.names:
                v = self._stats[name].get(k, np.nan)
                if k not in self._stats[name]:
                    txt = ""
                elif k in ("Observations",) or k.startswith("N "):
                    txt = f"{int(v)}"
                elif k in ("AIC", "BIC", "logLik"):
                    txt = self._fmt(v, 1)
                else:
                    txt = self._fmt(v)
                cells.append((txt, "", ""))
            out.append((k, False, cells))
        return out

    def _head(self):
        kinds = {self._logistic[i] and self.exponentiate for i in range(len(self.names))}
        est = "Odds Ratios" if kinds == {True} else "Log-Odds" if all(self._logistic) else "Estimates"
        return est, f"{round(self.level * 100):g}% CI"

    def to_text(self):
        """The table as plain text (what ``print`` shows)."""
        est_head, ci_head = self._head()
        rows = self._cells(dash=", ")
        label_w = max(len("Predictors"), *(len(r[0]) for r in rows))
        ests = [[c[i][0] for r, sec, c in rows if not sec] for i in range(len(self.names))]
        cis = [[f"[{c[i][1]}]" if c[i][1] else "" for r, sec, c in rows if not sec] for i in range(len(self.names))]
        ps = [[c[i][2] for r, sec, c in rows if not sec] for i in range(len(self.names))]
        ew = [max(len(est_head), *(len(x) for x in e)) for e in ests]
        cw = [max(len(ci_head), *(len(x) for x in c)) for c in cis]
        pw = [max(1, *(len(x) for x in p)) for p in ps]
        blockw = [a + 2 + b + 2 + c for a, b, c in zip(ew, cw, pw)]
        top = " " * label_w + "  " + "  ".join(n.center(w) for n, w in zip(self.names, blockw))
        head = "Predictors".ljust(label_w) + "  " + "  ".join(
            est_head.rjust(a) + "  " + ci_head.ljust(b) + "  " + "p".rjust(c) for a, b, c in zip(ew, cw, pw))
        rule = "-" * len(head)
        lines = [top.rstrip(), head.rstrip(), rule]
        k = 0
        for label, section, cells in rows:
            if section:
                lines += [rule, label]
                continue
            parts = []
            for i in range(len(self.names)):
                ci = cis[i][k]
                parts.append(ests[i][k].rjust(ew[i]) + "  " + ci.ljust(cw[i]) + "  " + ps[i][k].rjust(pw[i]))
            lines.append((label.ljust(label_w) + "  " + "  ".join(parts)).rstrip())
            k += 1
        lines += [rule, SIGNIFICANCE_NOTE]
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()

    def __repr__(self):
        return self.to_text()

    def to_html(self):
        """The table as an HTML ``<table>`` (what a notebook shows)."""
        est_head, ci_head = self._head()
        pretty = {"sigma2": "&sigma;<sup>2</sup>", "ICC": "ICC", "Observations": "Observations",
                  "R2 marginal": "Marginal R<sup>2</sup>", "R2 conditional": "Conditional R<sup>2</sup>",
                  "AIC": "AIC"}

        def label(k):
            if k in pretty:
                return pretty[k]
            for pre, sym in (("tau00 ", "&tau;<sub>00</sub>"), ("tau11 ", "&tau;<sub>11</sub>"),
                             ("rho01 ", "&rho;<sub>01</sub>"), ("N ", "N")):
                if k.startswith(pre):
                    return f"{sym} <sub>{html.escape(k[len(pre):])}</sub>"
            return html.escape(k)

        td = 'style="padding:0.15em 0.6em;text-align:{}"'
        h = ['<table class="skmlm-tab-models" style="border-collapse:collapse;font-family:sans-serif">',
             "<thead>", '<tr><th style="border-top:double"></th>']
        h += [f'<th colspan="3" style="border-top:double;text-align:center">{html.escape(n)}</th>'
              for n in self.names]
        h += ['</tr>', f'<tr><th {td.format("left")}>Predictors</th>']
        h += [f'<th {td.format("center")}>{est_head}</th><th {td.format("center")}>{ci_head}</th>'
              f'<th {td.format("center")}><i>p</i></th>' for _ in self.names]
        h += ["</tr>", "</thead>", "<tbody>"]
        for key, section, cells in self._cells(dash=" &ndash; "):
            if section:
                h.append(f'<tr><td colspan="{1 + 3 * len(self.names)}" '
                         f'style="border-top:1px solid;text-align:left;font-weight:bold">{key}</td></tr>')
                continue
            lab = label(key) if key not in self._fixed_rows() else html.escape(key)
            row = [f'<tr><td {td.format("left")}>{lab}</td>']
            for est, ci, p in cells:
                est_html = html.escape(est).replace("*", "<sup>*</sup>") if est else ""
                if ci or p:  # a fixed effect: estimate, interval and p-value (the text table's columns)
                    row.append(f'<td {td.format("center")}>{est_html}</td><td {td.format("center")}>{ci}</td>'
                               f'<td {td.format("center")}>{html.escape(p)}</td>')
                else:
                    row.append(f'<td colspan="3" {td.format("center")}>{est_html}</td>')
            h.append("".join(row) + "</tr>")
        h += ["</tbody>", f'<tfoot><tr><td colspan="{1 + 3 * len(self.names)}" style="border-top:double;'
              f'font-style:italic;text-align:right">{html.escape(SIGNIFICANCE_NOTE)}</td></tr></tfoot>', "</table>"]
        return "\n".join(h)

    def _repr_html_(self):
        return self.to_html()


def tab_models(*models, names=None, level=0.95, digits=3, exponentiate=False):
    """Several fitted mixed models side by side, as sjPlot's ``tab_model``.

    One column pair per model: fixed-effect estimates with significance stars and
    Wald confidence intervals, then the random-effect part: residual variance
    sigma^2 (``pi^2/3`` for a logistic model, the latent scale), the random-intercept
    variances tau00 and slope variances tau11 per grouping factor, the
    intercept-slope correlations rho01, the ICC, the number of groups per factor, the
    number of observations, Nakagawa's marginal and conditional R^2, the AIC, the BIC and
    the log-likelihood.

    Parameters
    ----------
    *models : fitted MixedLinearRegressor or MixedLogisticClassifier
    names : list of str, default=None
        Column labels; default ``model1``, ``model2``, ...
    level : float, default=0.95
        Confidence level of the intervals.
    digits : int, default=3
        Decimals shown in the text and HTML tables.
    exponentiate : bool, default=False
        Show odds ratios (``exp`` of estimates and interval ends) for logistic models.

    Returns
    -------
    ModelTable
        ``print`` it, show it in a notebook, or call ``to_frame()``, ``to_html()``,
        ``to_text()``.

    See Also
    --------
    compare_models : likelihood-ratio tests and information criteria.
    r2_nakagawa : the R^2 and ICC shown here.

    Notes
    -----
    Intervals are Wald intervals ``estimate +- z * SE`` with the normal quantile ``z``
    (1.96 at 95%) and ``SE`` from ``coef_cov_``, for logistic and linear models alike,
    as lme4's ``confint(method = "Wald")``. The p column and the stars follow one rule,
    the one of ``summary()``: lmerTest's Satterthwaite t-test for a linear model, the
    Wald z-test for a GLMM. For a linear model with few groups a t or Satterthwaite
    interval is wider: use profile or bootstrap intervals where that matters. A value
    that cannot be had prints as ``NA`` (an interval as nothing), a value of at most
    1e-10 in size (a variance at its boundary) as 0.

    Examples
    --------
    >>> from skmlm import MixedLinearRegressor, tab_models
    >>> from skmlm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> X, y, g = df[["Days"]], df["Reaction"], df["Subject"]
    >>> m = MixedLinearRegressor(random_slopes=["Days"]).fit(X, y, groups=g)
    >>> t = tab_models(m, names=["slopes"])
    >>> t.to_frame().loc["Days", ("slopes", "estimate")].round(3)
    np.float64(10.467)
    """
    from ._compare import fitted_models

    models, names = fitted_models(models, names, "tab_models")
    if len(names) != len(models):
        raise ValueError(f"{len(names)} names for {len(models)} models")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be unique; got {names}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1; got {level}")
    return ModelTable(list(models), names, level, int(digits), bool(exponentiate))
