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
    """An lme4-style formula for the fitted model, e.g. ``y ~ Days + (Days | Subject)``: a
    formula model's own, as given."""
    if isinstance(getattr(model, "formula", None), str):
        return model.formula
    fixed = [n for n in getattr(model, "_design_names", model._fixed_names) if n != INTERCEPT]
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
    if getattr(model, "_has_offset", False):
        rhs += " + offset(offset)"
    return f"{getattr(model, '_response_name', 'y')} ~ {rhs} + " + " + ".join(bars)


def model_fit_block(model):
    """AIC, BIC, logLik, deviance and df.resid (ML), or the REML criterion."""
    info = model._fit_info
    if getattr(model, "reml", False):
        return f"REML criterion at convergence: {round(model.deviance_, 1):.1f}"
    # lme4's .prt.aictab: rounded to one decimal, df.resid an integer, every column as
    # wide as the widest name or value, right-aligned
    values = [f"{round(v, 1):.1f}" for v in (model.aic_, model.bic_, model.log_likelihood_, model.deviance_)]
    values.append(str(int(info["df_resid"])))
    names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    width = max(len(x) for x in names + values)
    return " ".join(n.rjust(width) for n in names) + "\n" + " ".join(v.rjust(width) for v in values)


def random_effects_block(model, with_residual=True):
    """lme4's VarCorr table: Groups, Name, Variance, Std.Dev., Corr."""
    rows = []
    for f, cov in model.random_covariance_.items():
        sd = np.sqrt(np.diag(cov.to_numpy()))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov.to_numpy() / np.outer(sd, sd)
        for i, term in enumerate(cov.index):
            uncorrelated = getattr(model, "_uncorrelated", {}).get(f, model.covariance == "diagonal")
            cor = " ".join(f"{corr[i, j]:5.2f}" for j in range(i)) if not uncorrelated else ""
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


def abbreviate(name, length=6):
    """Shorten a name as R's ``abbreviate`` does first: drop lower-case vowels from the
    end (never the first letter) until it fits, then cut (``period2`` -> ``perid2``)."""
    chars = list(name)
    i = len(chars) - 1
    while len(chars) > length and i > 0:
        if chars[i] in "aeiou":
            del chars[i]
        i -= 1
    return "".join(chars)[:length]


def fixed_correlation_block(model):
    """Lower triangle of the correlation of the fixed-effect estimates."""
    if model.coef_cov_.shape[0] < 2:
        return ""
    corr = model._fixed_correlation()
    names = list(model.fixed_effects_.index)
    short = [abbreviate(n) if n != INTERCEPT else "(Intr)" for n in names]
    width = max(len(n) for n in names)
    lines = ["Correlation of Fixed Effects:", " " * (width + 1) + " ".join(s.rjust(6) for s in short[:-1])]
    for i in range(1, len(names)):
        lines.append(names[i].ljust(width) + " " + " ".join(f"{corr[i, j]:6.3f}" for j in range(i)))
    return "\n".join(lines)


def _signif(p):
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def _format_p(p):
    if not np.isfinite(p):
        return "NA"
    return "<2e-16" if p < 2e-16 else f"{p:.3g}"


SIGNIF_CODES = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def with_p_values(table, pcol):
    """A fixed-effects table with its p-value column formatted as R does, and stars."""
    fe = table.copy()
    pv = fe.pop(pcol)
    lines = _format_table(fe).split("\n")
    stars = [""] + [_signif(p) for p in pv]
    pvals = [pcol] + [_format_p(p) for p in pv]
    w = max(len(v) for v in pvals)
    return "\n".join(f"{line} {p.rjust(w)} {st}".rstrip() for line, p, st in zip(lines, pvals, stars))


def singular_note(model):
    """The summary's note on a singular fit: what is on the boundary and what to do."""
    text = getattr(model, "singular_explanation_", "")
    if not text:
        text = ("boundary (singular) fit: a variance is estimated as 0 or a correlation as +-1; "
                "consider dropping that random term")
    return text


def linear_fixed_effects_block(model):
    """lmerTest's table: Estimate, Std. Error, df (Satterthwaite), t value, Pr(>|t|).

    Where the Satterthwaite degrees of freedom cannot be computed (e.g. a Hessian that is
    singular at a boundary fit), the table says so and shows the estimates without p-values.
    """
    try:
        table = model.fixed_effects_table()
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        note = f"(no Satterthwaite p-values: {err})"
        return _format_table(model.fixed_effects_) + "\n" + note, False
    table = table[["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]]
    return with_p_values(table, "Pr(>|t|)"), True


def linear_summary(model):
    """The whole summary of a fitted MixedLinearRegressor."""
    method = "REML" if model.reml else "maximum likelihood"
    fixed_table, with_p = linear_fixed_effects_block(model)
    tests = ". t-tests use Satterthwaite's method" if with_p else ""
    parts = [
        f"Linear mixed model fit by {method}{tests} ['{type(model).__name__}']",
        f"Formula: {formula(model)}",
        "",
        *middle_blocks(model, with_residual=True),
        fixed_table,
    ]
    if with_p:
        parts += ["---", SIGNIF_CODES]
    return "\n".join(parts + closing_blocks(model))


def middle_blocks(model, with_residual):
    """What both summaries share between the formula and the fixed effects' table."""
    info = model._fit_info
    if hasattr(model, "_residual_quantiles"):  # a linear model keeps them, not its rows
        q = model._residual_quantiles
    else:
        q = np.quantile(model._scaled_residuals, [0, 0.25, 0.5, 0.75, 1])
    if q is None:
        residuals = ("not available: the model was fitted from statistics (partial_fit or Dask), not rows; "
                     "model.residuals(X, y, groups=..., scaled=True) computes them in a pass over the data")
    else:
        residuals = _format_table(pd.DataFrame([q], columns=["Min", "1Q", "Median", "3Q", "Max"], index=[""]),
                                  "{:.4f}")
    groups = ", ".join(f"{f}, {k}" for f, k in model.n_groups_.items())
    return [
        model_fit_block(model),
        "",
        "Scaled residuals:",
        residuals,
        "",
        "Random effects:",
        random_effects_block(model, with_residual=with_residual),
        f"Number of obs: {info['n_obs']}, groups:  {groups}",
        "",
        "Fixed effects:",
    ]


def closing_blocks(model):
    """What ends both summaries: the fixed effects' correlations and any warnings."""
    parts = []
    corr = fixed_correlation_block(model)
    if corr:
        parts += ["", corr]
    if model.singular_:
        parts += ["", singular_note(model)]
    source = model._fit_info.get("coef_cov_source", "hessian")
    if not model.converged_:
        parts += ["", "The optimiser did not converge: the estimates may not be at the optimum, and the standard "
                      "errors are those of the point where it stopped."]
    if source == "pirls":
        parts += ["", "Standard errors from the PIRLS approximation (lme4's fallback to RX): the Hessian of the "
                      "deviance is not positive definite there."]
    dropped = getattr(model, "dropped_columns_", [])
    if dropped:
        k = len(dropped)
        parts += ["", f"fixed-effect model matrix is rank deficient so dropping {k} column{'s' if k > 1 else ''} / "
                      f"coefficient{'s' if k > 1 else ''}: {', '.join(dropped)} (coef_ 0)"]
    return parts


def generalized_summary(model):
    """The whole summary of a fitted GLMM (classifier or regressor), laid out as glmer's."""
    k = model.n_quadrature_points
    method = "Laplace Approximation" if k == 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {k}"
    family = model.family_
    parts = [
        f"Generalized linear mixed model fit by maximum likelihood ({method}) ['{type(model).__name__}']",
        f" Family: {family.name}  ( {family.link.name} )",
        f"Formula: {formula(model)}",
        "",
        *middle_blocks(model, with_residual=False),
        with_p_values(model.fixed_effects_, "Pr(>|z|)"),
        "---",
        SIGNIF_CODES,
    ]
    if family.has_dispersion:
        name = "theta (NB2 size; Var = mu + mu^2/theta)" if family.name == "negative_binomial" else (
            "phi (Var = phi mu^2)")
        parts.insert(3, f"Dispersion parameter {name}: {model.dispersion_:.4g}")
    return "\n".join(parts + closing_blocks(model))
