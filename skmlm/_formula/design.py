"""From a formula and a DataFrame to the arrays skmlm fits, named as lme4 names them.

:class:`FormulaDesign` is fitted once on the training data: formulaic builds the fixed
part and the left side of every bar and remembers what new data need (the levels of
categorical predictors, the state of ``center``, ``scale``, ``within`` and ``between``);
``transform`` applies exactly that to new data. Columns are named as lme4 names them:
``(Intercept)``, ``sexM`` (treatment contrasts, the first level the reference),
``eduyrs:gnipc1000``.
"""

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._input import INTERCEPT
from .parse import FormulaError, parse_formula
from .transforms import context


def _formulaic():
    try:
        import formulaic
    except ImportError as e:  # an optional extra
        raise ImportError(
            "formulas need the formulaic package: pip install 'skmlm[formula]' (or pip install formulaic)"
        ) from e
    return formulaic


#: formulaic's name of a categorical column's level: ``sex[T.M]`` (treatment), ``sex[M]`` (full).
_LEVEL = re.compile(r"\[(?:T\.)?(.*)\]$")


def lme4_name(column):
    """lme4's name for a formulaic column: ``Intercept`` -> ``(Intercept)``, ``sex[T.M]`` ->
    ``sexM``, ``x:sex[T.M]`` -> ``x:sexM``, ``I(age ** 2)`` -> ``I(age^2)`` (R's power, as
    the formula wrote it)."""
    if column == "Intercept":
        return INTERCEPT
    return ":".join(_r_power(_LEVEL.sub(r"\1", part)) for part in _split_colon(column))


def _r_power(part):
    """R's ``^`` for formulaic's ``**`` in an ``I(...)`` term (the inverse of the parser's
    translation)."""
    return part.replace(" ** ", "^").replace("**", "^") if part.startswith("I(") else part


def _split_colon(name):
    """A column name cut at the ``:`` of interactions (not inside brackets or parentheses)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(name):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts.append(name[start:i])
            start = i + 1
    parts.append(name[start:])
    return parts


@dataclass
class Frame:
    """What a formula makes of a DataFrame (see :class:`FormulaDesign`)."""

    X: pd.DataFrame  # fixed-effect columns, intercept left out
    y: object  # the response (a Series, or proportions for cbind), None without one
    trials: object  # cbind's successes + failures per row, else None
    offset: object  # the sum of the offset(...) terms per row, else None
    groups: pd.DataFrame  # one column of labels per random factor
    z: dict  # random factor -> (n, q) covariates


@dataclass
class RandomFactorSpec:
    """A random factor: its name, the bars it is made of and their formulaic specs."""

    name: str
    group: tuple
    specs: list
    terms: list
    diagonal: bool


class FormulaDesign:
    """A formula's design, fitted on the training data and applied to new data."""

    def __init__(self, formula):
        self.parsed = parse_formula(formula)
        self.formula = formula

    # -- fit ------------------------------------------------------------------------
    def fit(self, data):
        """Build the design on the training data; returns its :class:`Frame`."""
        data = self._check_data(data, fitting=True)
        fm = _formulaic()
        p = self.parsed
        mm = self._matrix(fm, p.fixed, data, where="the fixed part")
        self.fixed_spec = mm.model_spec
        names = [lme4_name(c) for c in mm.columns]
        self.has_intercept = INTERCEPT in names
        self.fixed_names = [n for n in names if n != INTERCEPT]
        # the bars: one spec each, then grouped into lme4's random factors
        bars = []
        for t in p.random:
            mt = self._matrix(fm, t.lhs, data, where=f"the random-effect term ({t.lhs} | {t.group_name})")
            bars.append((t, mt.model_spec, [lme4_name(c) for c in mt.columns]))
        self.factors = _random_factors(bars)
        self.response_name = p.response or None
        return self._frame(data, mm, with_response=True)

    def _frame(self, data, mm, with_response):
        X = pd.DataFrame(np.asarray(mm, dtype=float), columns=[lme4_name(c) for c in mm.columns], index=data.index)
        X = X.drop(columns=[INTERCEPT], errors="ignore")
        groups = pd.DataFrame({f.name: _group_labels(data, f.group) for f in self.factors}, index=data.index)
        z = {f.name: self._random_covariates(data, f) for f in self.factors}
        y = trials = None
        if with_response and self.parsed.response:
            y, trials = self._response(data)
        offset = None
        if self.parsed.offsets:
            offset = sum(self._expression(o, data, "offset") for o in self.parsed.offsets)
        return Frame(X, y, trials, offset, groups, z)

    def _random_covariates(self, data, factor):
        cols = [np.asarray(self._apply(spec, data), dtype=float) for spec in factor.specs]
        return np.column_stack(cols) if cols else np.ones((len(data), 0))

    # -- new data -------------------------------------------------------------------
    def transform(self, data, with_response=False):
        """The :class:`Frame` of new data: the same columns, levels and transforms as in fit."""
        data = self._check_data(data, fitting=False)
        return self._frame(data, self._apply(self.fixed_spec, data), with_response)

    def offset(self, data):
        """The offset of new data (None when the formula has none)."""
        if not self.parsed.offsets:
            return None
        data = self._check_data(data, fitting=False, columns=self._offset_columns(data))
        return sum(self._expression(o, data, "offset") for o in self.parsed.offsets)

    def _offset_columns(self, data):
        fm = _formulaic()
        used = set()
        for o in self.parsed.offsets:
            used |= set(fm.Formula(f"0 + I({o})").required_variables)
        return [c for c in data.columns if c in used]

    def response(self, data):
        """The response of ``data`` by the formula's left side (``y`` and trials)."""
        if not self.parsed.response:
            raise ValueError(f"the formula {self.formula!r} has no response (nothing before '~'): pass y")
        data = self._check_data(data, fitting=False, columns=self._response_columns(data))
        return self._response(data)

    # -- pieces ---------------------------------------------------------------------
    def _response(self, data):
        cb = self.parsed.cbind
        if cb is not None:
            s = self._expression(cb[0], data, "cbind's successes")
            f = self._expression(cb[1], data, "cbind's failures")
            if np.any(s < 0) or np.any(f < 0):
                raise ValueError(f"{self.parsed.response}: successes and failures must be >= 0")
            n = s + f
            if np.any(n <= 0):
                raise ValueError(
                    f"{self.parsed.response}: {int(np.sum(n <= 0))} rows have no trials (successes + failures = 0); "
                    "remove them"
                )
            return pd.Series(s / n, index=data.index, name=self.parsed.response), n
        r = self.parsed.response
        if r in data.columns:
            return data[r], None
        return pd.Series(self._expression(r, data, "the response"), index=data.index, name=r), None

    def _response_columns(self, data):
        fm = _formulaic()
        cb = self.parsed.cbind
        exprs = cb if cb is not None else (self.parsed.response,)
        used = set()
        for e in exprs:
            if e in data.columns:
                used.add(e)
            else:
                used |= set(fm.Formula(f"0 + I({e})").required_variables)
        return [c for c in data.columns if c in used]

    def _expression(self, expr, data, what):
        """A numeric expression of the data's columns (``log(exposure)``, ``size - k``)."""
        if expr in data.columns:
            values = data[expr]
            if not pd.api.types.is_numeric_dtype(values):
                raise ValueError(f"{what} {expr!r} is a column of {values.dtype} values: it must be numeric")
            return values.to_numpy(dtype=float)
        fm = _formulaic()
        mm = self._matrix(fm, f"0 + I({expr})", data, where=what)
        return np.asarray(mm, dtype=float)[:, 0]

    def _matrix(self, fm, text, data, where):
        """formulaic's model matrix of ``text``, its errors said in the formula's terms."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", fm.errors.DataMismatchWarning)
                return fm.model_matrix(text, data, context=context(), na_action="raise", output="pandas")
        except fm.errors.FormulaSyntaxError as e:
            raise self._located(text, e, where) from None
        except fm.errors.FactorEvaluationError as e:
            raise ValueError(f"in {where} of {self.formula!r}: {_evaluation_problem(e, data)}") from None

    def _apply(self, spec, data):
        fm = _formulaic()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", fm.errors.DataMismatchWarning)
                return spec.get_model_matrix(data, context=context(), na_action="raise", output="pandas")
        except fm.errors.DataMismatchWarning as e:
            raise ValueError(
                f"new data have levels of a categorical predictor not seen in fit: {e}. The fixed effects of "
                "a level exist only for levels seen in fit"
            ) from None
        except fm.errors.FactorEvaluationError as e:
            raise ValueError(f"{self.formula!r} on new data: {_evaluation_problem(e, data)}") from None

    def _located(self, text, error, where):
        """A formulaic syntax error as a :class:`FormulaError` pointing into the whole formula."""
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
        lines = message.splitlines()
        marked = next((ln for ln in lines if "⧛" in ln), None)
        problem = lines[0].strip() if lines else "cannot read this"
        position = self.formula.find(text.strip()[:20])
        if marked is not None and position >= 0:
            position += marked.index("⧛")
        return FormulaError(self.formula, max(position, 0), f"in {where}: {problem}")

    def _check_data(self, data, fitting, columns=None):
        """``data`` as a DataFrame, booleans as R's factors (FALSE/TRUE); an error naming the
        columns with missing values (nothing is dropped silently)."""
        if not isinstance(data, pd.DataFrame):
            if isinstance(data, dict):
                data = pd.DataFrame(data)
            else:
                raise TypeError(
                    f"a formula needs its data as a pandas DataFrame (columns by name); got {type(data).__name__}"
                )
        used = self._used_columns(data) if columns is None else columns
        if columns is None:
            # every variable the formula names must be a column; formulaic says so for the
            # fixed part, this for the grouping factors
            for f in self.parsed.random:
                for g in f.group:
                    if g not in data.columns:
                        raise ValueError(
                            f"the grouping factor {g!r} of ({f.lhs} | {f.group_name}) is not a column of data; "
                            f"data has {_some(data.columns)}"
                            + ("" if fitting else ". For population predictions give the column with labels not "
                               "seen in fit (or missing)")
                        )
        bad = {c: int(data[c].isna().sum()) for c in used if c in data.columns and data[c].isna().any()}
        group_cols = {g for f in self.parsed.random for g in f.group}
        if not fitting:  # a missing grouping label at prediction is an unseen level
            bad = {c: k for c, k in bad.items() if c not in group_cols}
        if bad:
            listed = ", ".join(f"{c!r} ({k} rows)" for c, k in bad.items())
            raise ValueError(
                f"missing values (NaN/None) in {listed}: skmlm drops no rows silently; remove or impute them "
                "first (lme4 drops them by na.omit)"
            )
        bools = [c for c in used if c in data.columns and pd.api.types.is_bool_dtype(data[c])]
        if bools:
            data = data.copy()
            for c in bools:
                data[c] = pd.Categorical(np.where(data[c], "TRUE", "FALSE"), categories=["FALSE", "TRUE"])
        return data

    def _used_columns(self, data):
        fm = _formulaic()
        p = self.parsed
        names = set(fm.Formula(p.fixed).required_variables)
        for t in p.random:
            names |= set(fm.Formula(t.lhs).required_variables) | set(t.group)
        for o in p.offsets:
            names |= set(fm.Formula(f"0 + I({o})").required_variables)
        if p.response:
            names |= set(self._response_columns(data))
        return [c for c in data.columns if c in names]


def _evaluation_problem(error, data):
    """formulaic's evaluation error in a sentence: a name that is not a column of the data
    is said so, with the columns the data have."""
    message = re.sub(r"\s+", " ", str(error)).strip()
    missing = re.search(r"NameError: `([^`]+)` is not present", message)
    if missing:
        return f"{missing.group(1)!r} is not a column of data (nor a function formulas know); data has {_some(data.columns)}"
    return message


def _some(columns, k=12):
    cols = [str(c) for c in columns]
    return ", ".join(map(repr, cols[:k])) + (f", ... ({len(cols)} columns)" if len(cols) > k else "")


def _group_labels(data, group):
    """The labels of a grouping factor: a column's own values, or for ``a:b`` the labels of
    the columns joined by ``:`` (R's ``interaction(a, b, sep = ":")``)."""
    if len(group) == 1:
        return data[group[0]].to_numpy()
    texts = [data[g].astype(str).to_numpy(dtype=object) for g in group]
    out = texts[0]
    for t in texts[1:]:
        out = out + ":" + t
    return out


def _random_factors(bars):
    """lme4's random factors from the expanded bars.

    Bars on the same grouping factor with one column each (``(x || g)``, or ``(1 | g) +
    (0 + x | g)``) are one factor with uncorrelated terms; other repeats of a grouping
    factor are factors of their own, named ``g.1``, ``g.2``, ... as lme4's ``VarCorr``.
    """
    by_group = {}
    for t, spec, names in bars:
        by_group.setdefault(t.group, []).append((t, spec, names))
    out = []
    for group, items in by_group.items():
        name = ":".join(group)
        single = all(len(names) == 1 for _, _, names in items)
        if len(items) > 1 and single:
            terms = [n for _, _, ns in items for n in ns]
            _check_distinct(terms, name)
            # the intercept first, as the array API's factors
            order = sorted(range(len(items)), key=lambda k: items[k][2][0] != INTERCEPT)
            out.append(RandomFactorSpec(
                name, group, [items[k][1] for k in order], [items[k][2][0] for k in order], True
            ))
            continue
        for k, (t, spec, names) in enumerate(items):
            if not names:
                raise ValueError(f"the random-effect term ({t.lhs} | {name}) has no columns")
            out.append(RandomFactorSpec(name if k == 0 else f"{name}.{k}", group, [spec], names, False))
    return out


def _check_distinct(terms, name):
    dup = sorted({t for t in terms if terms.count(t) > 1})
    if dup:
        raise ValueError(f"the grouping factor {name!r} has the random-effect term(s) {dup} twice")
