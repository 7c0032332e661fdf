"""Printed summaries that read like lme4's ``summary()``."""

import numpy as np
import pandas as pd

from ._input import INTERCEPT


def _format_table(df, floatfmt="{:.4g}"):
    """Right-aligned text table of a DataFrame, numbers to 4 significant digits."""
    cells = [[""] + [str(c) for c in df.columns]]
    for name, row in df.iterrows():
        cells.append([str(name)] + [v if isinstance(v, str) else floatfmt.format(v) for v in row])
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    lines = []
    for r in cells:
        lines.append(" ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))
    return "\n".join(lines)


def formula(model):
    """An lme4-style formula for the fitted model, e.g. ``y ~ Days + (Days | Subject)``."""
    fixed = [n for n in model._fixed_names if n != INTERCEPT]
    rhs = " + ".join(fixed) if fixed else "1"
    if not model.fit_intercept:
        rhs = "0 + " + rhs
    bars = []
    for f, terms in model._terms.items():
        t = ["1" if x == INTERCEPT else x for x in terms]
        if terms[0] != INTERCEPT:
            t = ["0"] + t
        bar = "||" if model.covariance == "diagonal" and len(terms) > 1 else "|"
        bars.append(f"({' + '.join(t)} {bar} {f})")
    return f"y ~ {rhs} + " + " + ".join(bars)


def model_fit_block(model):
    """AIC, BIC, logLik, deviance and df.resid (ML), or the REML criterion."""
    info = model._fit_info
    if getattr(model, "reml", False):
        return f"REML criterion at convergence: {model.deviance_:.4f}"
    t = pd.DataFrame(
        [[model.aic_, model.bic_, model.log_likelihood_, model.deviance_, float(info["df_resid"])]],
        columns=["AIC", "BIC", "logLik", "deviance", "df.resid"], index=[""],
    )
    return _format_table(t, "{:.4f}").replace("\n ", "\n ")


def random_effects_block(model, with_residual=True):
    """lme4's VarCorr table: Groups, Name, Variance, Std.Dev., Corr."""
    rows = []
    for f, cov in model.random_covariance_.items():
        sd = np.sqrt(np.diag(cov.to_numpy()))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov.to_numpy() / np.outer(sd, sd)
        for i, term in enumerate(cov.index):
            cor = " ".join(f"{corr[i, j]:5.2f}" for j in range(i)) if model.covariance != "diagonal" else ""
            rows.append([f if i == 0 else "", term, f"{cov.iloc[i, i]:.4g}", f"{sd[i]:.4g}", cor])
    if with_residual:
        rows.append(["Residual", "", f"{model.residual_variance_:.4g}", f"{np.sqrt(model.residual_variance_):.4g}", ""])
    head = ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    widths = [max(len(str(r[j])) for r in rows + [head]) for j in range(5)]
    fmt = lambda r: " " + " ".join(
        [str(r[0]).ljust(widths[0]), str(r[1]).ljust(widths[1])] + [str(r[j]).rjust(widths[j]) for j in (2, 3)]
        + [str(r[4]).ljust(widths[4])]
    )
    return "\n".join(fmt(r).rstrip() for r in [head] + rows)


def fixed_correlation_block(model):
    """Lower triangle of the correlation of the fixed-effect estimates."""
    cov = model.coef_cov_
    if cov.shape[0] < 2:
        return ""
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    names = list(model.fixed_effects_.index)
    short = [n[:6] if n != INTERCEPT else "(Intr)" for n in names]
    width = max(len(n) for n in names)
    lines = ["Correlation of Fixed Effects:", " " * (width + 1) + " ".join(s.rjust(6) for s in short[:-1])]
    for i in range(1, len(names)):
        lines.append(names[i].ljust(width) + " " + " ".join(f"{corr[i, j]:6.3f}" for j in range(i)))
    return "\n".join(lines)


def linear_summary(model):
    """The whole summary of a fitted MixedLinearRegressor."""
    info = model._fit_info
    method = "REML" if model.reml else "maximum likelihood"
    q = info["scaled_residual_quantiles"]
    res = pd.DataFrame([q], columns=["Min", "1Q", "Median", "3Q", "Max"], index=[""])
    groups = ", ".join(f"{f}, {k}" for f, k in model.n_groups_.items())
    parts = [
        f"Linear mixed model fit by {method} ['MixedLinearRegressor']",
        f"Formula: {formula(model)}",
        "",
        model_fit_block(model),
        "",
        "Scaled residuals:",
        _format_table(res, "{:.4f}"),
        "",
        "Random effects:",
        random_effects_block(model),
        f"Number of obs: {info['n_obs']}, groups:  {groups}",
        "",
        "Fixed effects:",
        _format_table(model.fixed_effects_),
    ]
    corr = fixed_correlation_block(model)
    if corr:
        parts += ["", corr]
    if model.singular_:
        parts += ["", "boundary (singular) fit: a variance is estimated as 0 or a correlation as +-1; "
                  "consider dropping that random term"]
    if not model.converged_:
        parts += ["", "The optimiser did not converge: the estimates may not be at the optimum."]
    return "\n".join(parts)
