"""Printed summaries that read as lme4's ``print(summary(m))`` (lmerTest's for a linear
model): the same blocks, numbers laid out by R's rules (skmlm._rprint)."""

import numpy as np

from . import _rprint as R
from ._input import INTERCEPT

DIGITS = 4  # print.summary.merMod's max(3, getOption("digits") - 3)
MAX_CORRELATION = 12  # lme4.summary.cor.max: no correlation table for more fixed effects

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
    """lme4's .prt.aictab: AIC, BIC, logLik and deviance rounded to one decimal and
    formatted together, df.resid apart; or the REML criterion."""
    if getattr(model, "reml", False):
        return [f"REML criterion at convergence: {R.format_real([round(model.deviance_, 1)])[0].strip()}"]
    values = [round(v, 1) for v in (model.aic_, model.bic_, model.log_likelihood_, model.deviance_)]
    df_resid = int(model._fit_info["df_resid"])
    cells = R.format_real(values + [df_resid])[:-1] + [str(df_resid)]
    return R.print_named(cells, ["AIC", "BIC", "logLik", "deviance", "df.resid"])


def scaled_residuals_block(model):
    """The quartiles of the scaled residuals, zapsmall-ed to 5 digits, printed with 4. A
    linear model keeps them from its fit, not its rows; one fitted from statistics only
    (partial_fit, Dask) has none."""
    if hasattr(model, "_residual_quantiles"):
        q = model._residual_quantiles
        if q is None:
            return ["Scaled residuals: not available: the model was fitted from statistics (partial_fit or "
                    "Dask), not rows; model.residuals(X, y, groups=..., scaled=True) computes them in a pass "
                    "over the data"]
    else:
        q = np.quantile(model._scaled_residuals, [0, 0.25, 0.5, 0.75, 1])
    mx = np.max(np.abs(q))
    if mx > 0:
        q = R.round_half_even(q, int(max(0, DIGITS + 1 - np.ceil(np.log10(mx)))))
    return ["Scaled residuals: ", *R.print_named(R.format_real(q, DIGITS), ["Min", "1Q", "Median", "3Q", "Max"])]


def _variance_components(model):
    """(group, terms, standard deviations, correlation or None) as lme4's VarCorr lists
    them: an uncorrelated factor as one entry per term (``g``, ``g.1``, ...)."""
    out = []
    for f, cov in model.random_covariance_.items():
        c = cov.to_numpy()
        sd = np.sqrt(np.diag(c))
        terms = list(cov.index)
        if getattr(model, "_uncorrelated", {}).get(f, model.covariance == "diagonal") and len(terms) > 1:
            out += [(f if i == 0 else f"{f}.{i}", [t], sd[i:i + 1], None) for i, t in enumerate(terms)]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append((f, terms, sd, c / np.outer(sd, sd)))
    return out


def random_effects_block(model, residual_variance=None):
    """lme4's formatVC: Groups, Name, Variance and Std.Dev. each formatted as one vector to
    4 significant digits, correlations to 2 decimals, left-aligned."""
    comps = _variance_components(model)
    groups, names, sds = [], [], []
    for f, terms, sd, _ in comps:
        groups += [f] + [""] * (len(terms) - 1)
        names += terms
        sds += list(sd)
    if residual_variance is not None:
        groups.append("Residual")
        names.append("")
        sds.append(np.sqrt(residual_variance))
    sds = np.array(sds)
    cols = [groups, names, R.format_real(sds**2, DIGITS), R.format_real(sds, DIGITS)]
    head = ["Groups", "Name", "Variance", "Std.Dev."]
    widest = max(len(t) for _, t, _, _ in comps)
    if widest > 1:
        corr_rows = []
        for _, terms, _, corr in comps:
            k = len(terms)
            cells = np.full((k, widest - 1), "", dtype=object)
            if corr is not None:
                text = np.array(R.format_real(R.round_half_even(corr, 2).ravel(), nsmall=2)).reshape(k, k)
                for i in range(1, k):
                    cells[i, :i] = text[i, :i]
            corr_rows += cells.tolist()
        corr_rows += [[""] * (widest - 1)] * (len(groups) - len(corr_rows))
        cols += [list(c) for c in zip(*corr_rows)]
        head += ["Corr"] + [""] * (widest - 2)
    rows = [list(r) for r in zip(*cols)]
    return ["Random effects:", *R.print_matrix(rows, [""] * len(rows), head, right=False)]


def groups_line(model):
    """lme4's "Number of obs: n, groups:  g, k; h, l"."""
    groups = "; ".join(f"{f}, {k}" for f, k in model.n_groups_.items())
    return R.cat_fill([[f"Number of obs: {model._fit_info['n_obs']}, groups: "], [groups]])


def fixed_correlation_block(model):
    """lme4's correlation of the fixed effects: 3 decimals, names abbreviated (rows to 11
    characters, columns to 6), the lower triangle; not shown past 12 coefficients."""
    p = model.coef_cov_.shape[0]
    if p < 2 or p > MAX_CORRELATION:
        return []
    corr = model._fixed_correlation()
    names = list(model.fixed_effects_.index)
    text = np.array(R.format_real(R.round_half_even(corr, 3).ravel(), nsmall=3)).reshape(p, p)
    cells = [[text[i, j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    rows = [R.abbreviate(n, 11) for n in names[1:]]
    cols = [R.abbreviate(n, 6) for n in names[:-1]]
    return ["", "Correlation of Fixed Effects:", *R.print_matrix(cells, rows, cols, right=False)]


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
    singular at a boundary fit), lme4's table without p-values, and a note saying why.
    """
    try:
        table = model.fixed_effects_table()
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        return R.coef_matrix(model.fixed_effects_, DIGITS) + [f"(no Satterthwaite p-values: {err})"], False
    table = table[["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]]
    return R.coef_matrix(table, DIGITS), True


def _summary(model, title, family_line, fixed_lines, residual_variance, class_name):
    lines = R.method_title(title, class_name or type(model).__name__)
    lines += family_line
    lines += R.cat_fill([["Formula:"], R.deparse_formula(formula(model))])
    lines += ["", *model_fit_block(model), ""]
    lines += scaled_residuals_block(model) + [""]
    lines += random_effects_block(model, residual_variance)
    lines += groups_line(model)
    if model.coef_cov_.shape[0] > 0:  # lme4 prints no table without fixed effects
        lines += ["", "Fixed effects:", *fixed_lines()]
    lines += fixed_correlation_block(model)
    return "\n".join(line.rstrip() for line in lines + closing_blocks(model))


def linear_summary(model, class_name=None):
    """The whole summary of a fitted MixedLinearRegressor, as lmerTest prints it (the
    header names ``class_name``, by default the estimator's class)."""
    method = "REML" if model.reml else "maximum likelihood "  # lme4's title, its space included
    fixed_lines, with_p = linear_fixed_effects_block(model) if model.coef_cov_.shape[0] else ([], False)
    title = f"Linear mixed model fit by {method}" + (". t-tests use Satterthwaite's method" if with_p else "")
    return _summary(model, title, [], lambda: fixed_lines, model.residual_variance_, class_name)


def closing_blocks(model):
    """What ends both summaries: warnings and notes."""
    parts = []
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


def family_name(family, dispersion):
    """R's name of the family: ``Gamma``, and MASS's ``Negative Binomial(theta)``."""
    if family.name == "negative_binomial":
        return f"Negative Binomial({R.format_real([round(dispersion, 4)])[0]})"
    return {"gamma": "Gamma"}.get(family.name, family.name)


def generalized_summary(model, class_name=None):
    """The whole summary of a fitted GLMM (classifier or regressor), laid out as glmer's
    (glmer.nb's for the negative binomial; a Gamma model's scale as the Residual row)."""
    k = model.n_quadrature_points
    method = "Laplace Approximation" if k == 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {k}"
    family = model.family_
    dispersion = getattr(model, "dispersion_", None)
    name = family_name(family, dispersion)
    family_line = R.cat_fill([[" Family:"], [name], [f" ( {family.link.name} )"]])
    # lme4's sigma of a Gamma GLMM is the square root of its dispersion phi: the Residual row
    residual = dispersion if family.name == "gamma" else None
    return _summary(model, f"Generalized linear mixed model fit by maximum likelihood ({method})", family_line,
                    lambda: R.coef_matrix(model.fixed_effects_, DIGITS), residual, class_name)
