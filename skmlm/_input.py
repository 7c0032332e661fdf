"""Input checking shared by the estimators: X, y, groups, weights and random slopes.

Everything here turns what a user passes into plain numpy arrays and
:class:`~skmlm._core.design.RandomFactor` objects, or raises an error that names the
problem. Nothing is dropped or repaired silently.
"""

import numbers
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import lapack
from sklearn import get_config
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_array, column_or_1d

from ._core.design import RandomFactor

INTERCEPT = "(Intercept)"


def column_names(X):
    """The names of X's columns: a DataFrame's own, else ``x0, x1, ...``."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    return [f"x{j}" for j in range(np.shape(X)[1])]


def _resolve_columns(spec, X, what):
    """Positions in X of the columns named (or numbered) in ``spec``.

    A name that is not a column of X is also found under the prefix a
    ``ColumnTransformer`` gives it (``"price"`` is ``"num__price"``, ``"store"`` is
    ``"remainder__store"``) when exactly one column ends in ``"__" + name``.
    """
    names = column_names(X)
    raw = list(X.columns) if isinstance(X, pd.DataFrame) else None
    out = []
    for c in spec:
        if isinstance(c, (numbers.Integral, np.integer)) and not isinstance(c, bool):
            if not -len(names) <= c < len(names):
                raise ValueError(f"{what} column {c} is out of range: X has {len(names)} columns")
            out.append(int(c) % len(names))
        elif raw is not None and c in raw:
            out.append(raw.index(c))
        elif raw is not None and str(c) in names:
            out.append(names.index(str(c)))
        else:
            out.append(_prefixed_column(c, names, raw is not None, what))
    return out


def _prefixed_column(c, names, named, what):
    """The position of the one column named ``<prefix>__c`` (a ColumnTransformer's output
    name for the input column ``c``), or an error that says what X has."""
    suffix = f"__{c}"
    found = [j for j, name in enumerate(names) if name.endswith(suffix)] if named else []
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(
            f"{what} column {c!r} is ambiguous: X has several columns named after it, "
            f"{[names[j] for j in found]}; give the full name"
        )
    have = ", ".join(map(repr, names)) if names else "no columns"
    hint = "" if named else " (X has no column names: give positions)"
    raise ValueError(f"{what} column {c!r} is not a column of X, which has {have}{hint}")


def _check_2d(X):
    if X is None or (isinstance(X, np.ndarray) and X.ndim == 0 and X.dtype == object and X.item() is None):
        raise ValueError(
            "X is None: pass the fixed-effect features as a 2-D array or DataFrame. For the null model (an "
            "intercept alone) pass X with no columns, e.g. df[[]], or use a formula: "
            "skmlm.lmer('y ~ 1 + (1 | g)', df)"
        )
    if sp.issparse(X):
        raise TypeError("sparse input is not supported: pass X as a dense array or DataFrame")
    ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
    if ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {ndim}D array instead: X must be a 2-D array or DataFrame. "
            "Reshape your data using array.reshape(-1, 1) if it has a single feature."
        )


def split_group_columns(X, group_columns):
    """Separate grouping columns named by ``group_columns`` from X.

    Returns ``(X_rest, groups_frame, kept_positions)``; ``groups_frame`` is None when
    ``group_columns`` is None. X is a 2-d array or DataFrame (the callers convert it and
    :func:`_check_2d` it).
    """
    if group_columns is None:
        return X, None, list(range(X.shape[1]))
    if X.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={np.shape(X)}) while a minimum of 1 is required: "
            f"group_columns={group_columns!r} names columns of X"
        )
    spec = [group_columns] if isinstance(group_columns, (str, numbers.Integral)) else list(group_columns)
    pos = _resolve_columns(spec, X, "group_columns")
    keep = [j for j in range(np.shape(X)[1]) if j not in pos]
    names = column_names(X)
    if isinstance(X, pd.DataFrame):
        g = X.iloc[:, pos].copy()
        # a factor is named as group_columns names it ("store", also when X calls it
        # "remainder__store"), or after its column when given by position
        g.columns = [c if isinstance(c, str) else names[j] for c, j in zip(spec, pos)]
        return X.iloc[:, keep], g, keep
    Xa = np.asarray(X)
    if len(pos) == 1:
        g = pd.DataFrame({"group": Xa[:, pos[0]]})
    else:
        g = pd.DataFrame({f"group{k}": Xa[:, j] for k, j in enumerate(pos)})
    return Xa[:, keep], g, keep


def finite_float_array(a, ndim):
    """``a`` as float64 when it is a plain numeric array or DataFrame of ``ndim``
    dimensions with finite values, else None (then ``check_array`` decides and explains).

    The common case costs a conversion and one finiteness test instead of
    scikit-learn's general validation, which dominates a small fit's time.
    """
    if isinstance(a, pd.DataFrame):
        # (reading a.dtypes costs more than this): numbers and booleans converted; complex,
        # object and nullable columns left to check_array, which raises or converts
        arr = a.to_numpy()
        if arr.dtype.kind not in "fiub":
            return None
        arr = arr.astype(np.float64, copy=False)
    elif isinstance(a, np.ndarray) and a.dtype.kind in "fiu":
        arr = np.asarray(a, dtype=np.float64)
    elif isinstance(a, pd.Series) and a.dtype.kind in "fiu":
        arr = a.to_numpy(dtype=np.float64)  # a fifth of np.asarray's cost on a Series
    else:
        return None
    if arr.ndim != ndim or arr.shape[0] == 0 or not np.isfinite(arr).all():
        return None
    return arr


def _string_column_names(estimator, X):
    """Record a DataFrame's column names as ``feature_names_in_`` when all are strings.

    What scikit-learn's ``_check_feature_names(reset=True)`` does in this, the common,
    case, at a fortieth of its cost; every other case goes to scikit-learn.
    """
    if not isinstance(X, pd.DataFrame):
        return False
    if len(X.columns) == 0:  # the null model's X: no names (scikit-learn drops old ones)
        estimator.__dict__.pop("feature_names_in_", None)
        return True
    if X.columns.inferred_type != "string" or X.columns.hasnans:  # (both cached by pandas)
        return False
    estimator.feature_names_in_ = np.asarray(X.columns, dtype=object)
    return True


def validate_X(estimator, X, reset):
    """Check X (feature names, count, finiteness) and split off grouping columns.

    A sparse X (a one-hot encoder's output) is made dense: the fixed effects need only
    the dense ``p x p`` cross-products, and the rows are read once.

    Returns ``(X_numeric, groups_from_X, kept)``; ``kept`` lists the positions in X of
    the columns that are features (all but the grouping columns).
    """
    if sp.issparse(X):
        X = X.toarray()
    _check_2d(X)
    if not isinstance(X, pd.DataFrame) and not hasattr(X, "shape"):
        X = np.asarray(X)
    if not (reset and _string_column_names(estimator, X)):
        _check_feature_names(estimator, X, reset=reset)
    if reset:  # scikit-learn's _check_n_features(reset=True), for an X of 2 dimensions
        estimator.n_features_in_ = X.shape[1]
    else:
        _check_n_features(estimator, X, reset=False)
    X_rest, g, kept = split_group_columns(X, estimator.group_columns)
    if not kept:  # the null model: pandas cannot say what dtype no columns have
        X_rest = np.empty((X_rest.shape[0], 0))
    Xn = finite_float_array(X_rest, ndim=2)
    if Xn is None:  # anything unusual: scikit-learn's checks, and their error messages
        _check_text_columns(X_rest)
        Xn = check_array(
            X_rest, dtype=np.float64, ensure_min_features=0, ensure_all_finite=True, input_name="X", estimator=estimator
        )
    return Xn, g, kept


def _check_text_columns(X):
    """An error naming the columns of X that hold text (not numbers), and what to do."""
    if isinstance(X, pd.DataFrame):
        columns = [(str(c), X[c]) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
                   and not pd.api.types.is_bool_dtype(X[c])]
    elif isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and X.ndim == 2:
        columns = [(f"x{j}", pd.Series(X[:, j])) for j in range(X.shape[1])]
    else:
        return
    text = []
    for name, values in columns:
        try:
            np.asarray(values, dtype=np.float64)
        except ValueError:  # (other objects: scikit-learn's TypeError)
            example = next((v for v in values if isinstance(v, (str, bytes))), None)
            if example is not None:
                text.append(f"{name!r} (e.g. {example!r})")
        except TypeError:
            pass
    if text:
        raise ValueError(
            f"X has column(s) of text, not numbers: {', '.join(text)}. A categorical predictor needs coding: "
            "a formula does it as R does (skmlm.lmer('y ~ x + (1 | g)', data)), or one-hot encode it "
            "(OneHotEncoder in a pipeline, pandas.get_dummies); a grouping factor goes to groups=, or stays in X "
            "named by group_columns"
        )


def validate_y_weights(y, sample_weight, n):
    """y as a finite float vector and weights as positive finite floats, length n."""
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    y_fast = finite_float_array(y, ndim=1)
    if y_fast is not None:
        y = y_fast
    else:
        y = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite=True, input_name="y")
        if y.ndim == 2 and y.shape[1] != 1:
            raise ValueError(f"y must be 1-dimensional; got shape {y.shape}")
        y = column_or_1d(y, warn=True)
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    if sample_weight is None:
        w = np.ones(n)
    else:
        w = finite_float_array(sample_weight, ndim=1)
        if w is None:  # anything unusual: scikit-learn's checks, and their messages
            w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
        if w.shape != (n,):
            raise ValueError(f"sample_weight has shape {w.shape}; expected ({n},)")
        if w.min() <= 0:  # (finite: check_array refused NaN and inf; n > 0: it refused no rows)
            raise ValueError(
                "sample_weight has zero or negative weights: prior weights must be positive "
                "(remove rows instead of giving them weight 0)"
            )
    return y, w


class GroupLabels:
    """The grouping factors: one name and one label array per factor, in order.

    A light stand-in for a DataFrame (``columns``, ``g[name]``, ``shape``): building a
    DataFrame costs more than a small fit's arithmetic.
    """

    def __init__(self, columns, arrays):
        self.columns = list(columns)
        self._arrays = list(arrays)

    def __getitem__(self, name):
        return self._arrays[self.columns.index(name)]

    def __len__(self):
        return len(self._arrays[0]) if self._arrays else 0

    @property
    def shape(self):
        return (len(self), len(self._arrays))


def _label_arrays(groups, from_X):
    """``(names, arrays)`` of the grouping factors as given (see :func:`group_frame`)."""
    if from_X is not None:
        groups = from_X
    if isinstance(groups, str):
        raise ValueError(
            f"groups={groups!r} is a name, but groups takes the labels themselves: pass groups=df[{groups!r}] "
            f"(one label per row), or keep the column in X and name it with group_columns={groups!r}"
        )
    if isinstance(groups, pd.DataFrame):
        return [str(c) for c in groups.columns], [s.to_numpy() for _, s in groups.items()]
    if isinstance(groups, pd.Series):
        return [str(groups.name) if groups.name is not None else "group"], [groups.to_numpy()]
    a = groups if isinstance(groups, np.ndarray) else np.asarray(groups, dtype=object)
    if a.ndim == 1:
        return ["group"], [a]
    if a.ndim == 2:
        names = [f"group{k}" for k in range(a.shape[1])] if a.shape[1] > 1 else ["group"]
        return names, [a[:, k] for k in range(a.shape[1])]
    raise ValueError(f"groups must be 1-d or 2-d; got {a.ndim} dimensions")


def group_frame(groups, n, from_X=None, check_missing=True, allow_missing=False):
    """The grouping factors as :class:`GroupLabels`, one named label array per factor.

    ``groups`` is a 1-d array or Series (one factor) or a 2-d array or DataFrame (one
    column per factor). Names: a DataFrame's columns, a Series' name, else ``group``
    (one factor) or ``group0, group1, ...``. ``check_missing=False`` leaves the test
    for missing labels to :func:`encode_levels`, which a fit calls anyway;
    ``allow_missing=True`` accepts them (prediction: a missing label is an unseen level).
    """
    if groups is None and from_X is None:
        raise ValueError(groups_required_message())
    if groups is not None and from_X is not None:
        raise ValueError("groups were given both as an argument and through group_columns; give one")
    names, arrays = _label_arrays(groups, from_X)
    if not arrays:
        raise ValueError("groups has no columns: at least one grouping factor is needed")
    if len(arrays[0]) != n:
        raise ValueError(f"groups has {len(arrays[0])} rows but X has {n}: one group label per row is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"grouping factors need distinct names; got {names}")
    for c, a in zip(names, arrays):
        if allow_missing:
            break
        bad = ~np.isfinite(a) if a.dtype.kind == "f" else (pd.isna(a) if check_missing else None)
        if bad is not None and bad.any():
            _missing_labels(c, bad)
    return GroupLabels(names, arrays)


def groups_required_message():
    """Why a step got no groups, and what to do: the commonest cause is a scikit-learn
    tool given ``groups=`` with metadata routing off, which hands them to its splitter."""
    base = (
        "groups is required: pass groups=... to fit (one label per row), or name the grouping "
        "columns of X with the group_columns parameter."
    )
    if get_config().get("enable_metadata_routing", False):
        return base + (
            " With metadata routing on, pass groups to the scikit-learn tool once: "
            "cross_validate(..., params={'groups': g}), GridSearchCV(...).fit(X, y, groups=g), "
            "pipeline.fit(X, y, groups=g); skmlm's estimators request them by default."
        )
    return base + (
        " If you gave groups to a scikit-learn tool, e.g. cross_validate(..., groups=g) or "
        "GridSearchCV(...).fit(X, y, groups=g), with metadata routing off (scikit-learn's default), "
        "they went to the cross-validation splitter only, not to this estimator. Either put the "
        "grouping column in X and name it with group_columns='...' on every skmlm step (the groups "
        "then travel with X through pipelines, scorers, searches and calibration), or switch "
        "routing on with sklearn.set_config(enable_metadata_routing=True) and pass "
        "params={'groups': g} to cross_validate (groups=g to GridSearchCV.fit)."
    )


def _missing_labels(name, bad):
    raise ValueError(f"grouping factor {name!r} has NaN, inf or missing labels in {int(bad.sum())} rows")


def _label_text(value):
    """A label as text, as R's factor levels are: ``308``, ``308.0``, ``np.int64(308)`` and
    ``"308"`` are all ``"308"``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def level_text_index(levels):
    """``(index of the levels' texts, their positions among the levels)``, for
    :func:`match_levels`; a text shared by several levels (``1`` and ``"1"``) is left out."""
    texts = pd.Index([_label_text(v) for v in levels])
    unique = ~texts.duplicated(keep=False)
    return texts[unique], np.flatnonzero(unique)


def match_levels(levels, labels, text_index):
    """Each label's position among the fitted ``levels`` (a ``pd.Index``); -1 for a label
    not seen in fit and for a missing one (None, NaN, NaT).

    Labels are matched by value, and those not found, when the labels and the levels are
    of different types, by their text (as lme4 matches factor levels): a model fitted
    with store ids ``308, 309, ...`` knows the store ``"308"``. ``text_index`` is a
    callable that returns :func:`level_text_index` of the levels (built when needed).
    """
    labels = np.asarray(labels)
    idx = levels.get_indexer(labels)
    unmatched = idx < 0
    kind = levels.dtype.kind
    if unmatched.any() and (labels.dtype.kind != kind or kind == "O"):
        rows = np.flatnonzero(unmatched)
        rows = rows[~pd.isna(labels[rows])]
        if len(rows) and not (_all_strings(levels) and _all_strings(labels[rows])):  # else text = value
            texts, positions = text_index()
            found = texts.get_indexer([_label_text(v) for v in labels[rows]])
            ok = found >= 0
            idx[rows[ok]] = positions[found[ok]]
    return idx


def _all_strings(values):
    return values.dtype.kind == "U" or (values.dtype.kind == "O" and pd.api.types.infer_dtype(values) == "string")


def unseen_levels_error(name, labels, idx):
    """The error for ``unseen_levels="error"``: which rows have labels not seen in fit."""
    labels = np.asarray(labels)
    bad = idx < 0
    missing = pd.isna(labels) & bad
    new = bad & ~missing
    parts = []
    if new.any():
        examples = list(pd.unique(labels[new])[:5])
        k = int(new.sum())
        parts.append(f"{k} row{'s' if k > 1 else ''} with levels not seen in fit (e.g. {examples})")
    if missing.any():
        k = int(missing.sum())
        parts.append(f"{k} row{'s' if k > 1 else ''} with missing labels")
    raise ValueError(
        f"grouping factor {name!r} has {' and '.join(parts)}, and unseen_levels='error' (as lme4's "
        "allow.new.levels=FALSE). Set unseen_levels='average' (or 'zero') to give those rows the "
        "population prediction"
    )


def resolve_random_slopes(random_slopes, factor_names, X, kept):
    """``{factor: [feature positions]}`` from the ``random_slopes`` parameter.

    Columns are named, or numbered, as in X as given; ``kept`` maps X's positions to
    feature positions (X without its grouping columns).
    """
    if random_slopes is None:
        return {f: [] for f in factor_names}
    if isinstance(random_slopes, dict):
        unknown = [k for k in random_slopes if str(k) not in factor_names]
        if unknown:
            raise ValueError(f"random_slopes names factors {unknown} that are not among the grouping factors {factor_names}")
        spec = {str(k): v for k, v in random_slopes.items()}
    else:
        if isinstance(random_slopes, (str, numbers.Integral)):
            random_slopes = [random_slopes]
        if len(factor_names) > 1:
            raise ValueError(
                f"random_slopes is a list but there are {len(factor_names)} grouping factors {factor_names}: "
                "pass a dict {factor: [columns]}"
            )
        spec = {factor_names[0]: random_slopes}
    out = {}
    for f in factor_names:
        cols = spec.get(f, [])
        cols = [cols] if isinstance(cols, (str, numbers.Integral)) else list(cols)
        pos = _resolve_columns(cols, X, "random slope")
        if len(set(pos)) != len(pos):
            raise ValueError(f"random slopes for {f!r} name a column twice: {cols}")
        grouping = [c for c, j in zip(cols, pos) if j not in kept]
        if grouping:
            raise ValueError(f"random slope column(s) {grouping} are grouping columns, not features")
        out[f] = [kept.index(j) for j in pos]
    return out


def encode_levels(labels, name):
    """Integer codes and sorted unique levels of one grouping factor; an error for
    missing labels (None, NaN, NaT: code -1).

    The levels are found in the order of first appearance and then sorted, which costs
    half of pandas' sorted factorisation; labels that do not sort among themselves
    (mixed types) go to pandas, which orders them its way.
    """
    codes, levels = pd.factorize(np.asarray(labels))
    if codes.min() < 0:
        _missing_labels(name, codes < 0)
    try:
        order = np.argsort(levels, kind="stable")
    except TypeError:
        codes, levels = pd.factorize(np.asarray(labels), sort=True)
        return codes.astype(np.intp), np.asarray(levels)
    rank = order.argsort()  # each level's place among the sorted ones
    return rank[codes], np.asarray(levels)[order]


def build_factors(groups, slope_positions, X, names, random_intercept, covariance):
    """One :class:`RandomFactor` per grouping factor."""
    factors = []
    n = X.shape[0]
    for f in groups.columns:
        pos = slope_positions[f]
        if not random_intercept and not pos:
            raise ValueError(f"grouping factor {f!r} has neither a random intercept nor random slopes")
        codes, levels = encode_levels(groups[f], f)
        if pos:
            z = np.column_stack(([np.ones(n)] if random_intercept else []) + [X[:, j] for j in pos])
        else:  # a random intercept alone
            z = np.ones((n, 1))
        terms = ([INTERCEPT] if random_intercept else []) + [names[j] for j in pos]
        factors.append(RandomFactor(f, codes, levels, z, terms, covariance == "diagonal"))
    return factors


def check_identifiable(factors, n, warn_residual=True):
    """Refuse a factor with one level; warn (``warn_residual``) where one cannot be told
    apart from the residual."""
    for f in factors:
        if f.n_levels < 2:
            raise ValueError(
                f"grouping factor {f.name!r} has a single level: a random effect needs at least 2 groups "
                "(with one group, fit an ordinary regression)"
            )
        if warn_residual and f.n_levels * f.q >= n:
            warnings.warn(
                f"grouping factor {f.name!r} has {f.n_levels} levels for {n} rows: its random effects "
                "cannot be told apart from the residual", UserWarning, stacklevel=4,
            )


def fixed_design(X, fit_intercept):
    """X with a leading column of ones when the model has an intercept."""
    if not fit_intercept:
        return X
    n, p = X.shape
    Xf = np.empty_like(X, dtype=np.float64, shape=(n, p + 1))  # X's memory order, as column_stack keeps it
    Xf[:, 0] = 1.0
    Xf[:, 1:] = X
    return Xf


#: A column whose part orthogonal to the columns before it is below this fraction of its
#: norm is aliased (lme4's ``chkRank.drop.cols``: R's ``qr(X, tol = 1e-7)``).
RANK_TOL = 1e-7


def independent_columns(Xf):
    """Positions of the columns of the fixed-effects design that lme4 keeps: all but those
    that are (up to ``RANK_TOL``) linear combinations of the columns before them.

    As R's ``qr(X, tol = 1e-7)`` with its limited pivoting (LINPACK's ``dqrdc2``), which
    lme4 uses to drop columns: a column is aliased when the norm of its part orthogonal to
    the earlier columns kept is below ``RANK_TOL`` times its own norm; the earlier column
    is kept (for one-hot columns beside an intercept: the last category's). A column of
    zeros is aliased. A design clearly of full rank (:func:`clearly_full_rank` of its
    cross-products, one BLAS product without a copy of the rows) needs no QR.
    """
    n, p = Xf.shape
    if p == 0:
        return range(0)
    gram = Xf.T @ Xf  # one BLAS product, no copy of the rows
    scale = np.sqrt(gram.diagonal())
    if p <= n and scale.all() and (p == 1 or clearly_full_rank(gram / scale / scale[:, None])):
        return range(p)
    kept = [j for j in range(p) if scale[j] > 0]
    while len(kept) > 1:
        d = np.abs(np.diag(lapack.dgeqrf(Xf[:, kept] / scale[kept])[0]))
        bad = np.flatnonzero(d < RANK_TOL)
        if len(bad):  # the first aliased column; the later ones are judged again without it
            del kept[int(bad[0])]
            continue
        del kept[n:]  # beyond n independent columns every one is a combination of them
        break
    return kept


#: Smallest diagonal entry of the Cholesky factor of the scaled cross-products that proves
#: a design of full rank without its QR factorisation: the factor's diagonal is the QR's
#: ``|diag R|`` up to rounding of order ``p eps / entry``, far below ``RANK_TOL`` here.
CLEAR_RANK = 1e-3


def clearly_full_rank(G):
    """Whether the design whose scaled cross-products (unit diagonal) are ``G`` has full
    rank beyond doubt: every column's part orthogonal to the ones before it is at least
    ``CLEAR_RANK`` of its norm. False decides nothing (the QR of the rows judges)."""
    L, info = lapack.dpotrf(G, lower=1)
    return info == 0 and L.diagonal().min() >= CLEAR_RANK


def independent_columns_of_cross_products(G):
    """:func:`independent_columns` from the design's cross-products ``G = Xf'Xf`` instead
    of its rows (a fit from statistics): a column is aliased when the part of it
    orthogonal to the earlier columns kept, the square root of its Schur complement in
    ``G``, is below ``RANK_TOL`` times its own norm."""
    p = G.shape[0]
    scale = np.sqrt(np.diag(G))
    kept = []
    for j in range(p):
        if not scale[j] > 0:
            continue
        g = G[kept, j] / (scale[kept] * scale[j])
        inner = G[np.ix_(kept, kept)] / np.outer(scale[kept], scale[kept])
        rest = 1.0 - (g @ np.linalg.solve(inner, g) if kept else 0.0)
        if np.sqrt(max(rest, 0.0)) >= RANK_TOL:
            kept.append(j)
    return kept
