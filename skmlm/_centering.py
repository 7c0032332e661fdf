"""Between/within decomposition and centering of features by group: a transformer and a function.

For a column ``x`` and a grouping factor ``j`` the between-within (hybrid) model uses

* ``x_between = xbar_j``, the mean of ``x`` in the row's group, and
* ``x_within = x - xbar_j``, the row's deviation from it,

so that ``y ~ x_within + x_between + (1 | j)`` separates the within-group effect of ``x``
(equal to the fixed-effects, group-dummy, estimate) from the between-group one. Group-mean
centering alone keeps ``x_within`` only; grand-mean centering subtracts the overall mean
``xbar`` and changes no fit, only what the intercept means.

Group means are learnt in ``fit`` and reused at transform time, so that the rows of a
test fold are centred with the means of the training data. Everything is vectorised:
one ``bincount`` per centred column, no loop over groups or rows.
"""

import numbers
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import (
    _check_feature_names, _check_feature_names_in, _check_n_features, check_array, check_is_fitted,
)

from ._input import (
    _check_2d, _resolve_columns, column_names, group_frame, level_text_index, match_levels, split_group_columns,
)

_SUFFIXES = {"between_within": ("_between", "_within"), "within": ("_within",), "grand": ("_grand_centered",)}


def _group_means(codes, n_levels, values):
    """Mean of every column of ``values`` (n, k) per integer code: ``(n_levels, k)``."""
    counts = np.bincount(codes, minlength=n_levels).astype(np.float64)
    sums = np.column_stack(
        [np.bincount(codes, weights=values[:, k], minlength=n_levels) for k in range(values.shape[1])]
    ) if values.shape[1] else np.zeros((n_levels, 0))
    return sums / counts[:, None]


class BetweenWithinTransformer(TransformerMixin, BaseEstimator):
    """Split features into group means and deviations from them, or centre them.

    For every chosen column ``x`` the output holds, in the place of ``x``:

    * ``centering="between_within"``: ``x_between`` (the mean of ``x`` in the row's
      group) and ``x_within`` (``x - x_between``), the between-within model;
    * ``centering="within"``: ``x_within`` only, group-mean centering (CWC);
    * ``centering="grand"``: ``x_grand_centered`` (``x`` minus its mean over all rows
      seen in ``fit``), grand-mean centering (CGM); needs no groups.

    Other columns, the grouping columns named by ``group_columns`` among them, pass
    through unchanged and in place, so a :class:`MixedLinearRegressor` with the same
    ``group_columns`` further down a pipeline still finds them.

    Parameters
    ----------
    columns : None, str, int or list, default=None
        Columns to decompose or centre: names for a DataFrame, positions in X as given
        (grouping columns included) otherwise. None: every column that is not a
        grouping column and is not constant within every group (those are level-2
        variables, such as a country's GNI, and pass through whole; ``level2_columns_``
        lists them). Listing a column constant within every group is an error for
        ``"between_within"`` and ``"within"``: its within part is 0.
    centering : {"between_within", "within", "grand"}, default="between_within"
        What to output for each chosen column (see above).
    unseen_groups : {"own_mean", "grand_mean", "error"}, default="own_mean"
        Group means for levels not seen in ``fit``, at transform time:
        ``"own_mean"`` computes them from the rows of that level in the data being
        transformed (the level's mean of x is a group-level covariate, observed without
        y); ``"grand_mean"`` uses the mean over all rows seen in ``fit`` (so
        ``x_between`` is that mean and ``x_within = x - `` that mean); ``"error"``
        raises. Known levels always use their means from ``fit``.
    factor : None, str or int, default=None
        The grouping factor whose groups define the means, when there are several (a
        name among the columns of ``groups``, or a position). None: the only one.
    group_columns : None, str, int or list, default=None
        Columns of X that hold grouping factors, as in :class:`MixedLinearRegressor`,
        so that groups travel with X through scikit-learn tools when metadata routing
        is off. They are never centred and pass through to the output.

    Attributes
    ----------
    group_means_ : DataFrame or None
        Mean of each chosen column (columns) per level of the factor seen in ``fit``
        (index, named after the factor). None for ``centering="grand"``.
    grand_means_ : Series
        Mean of each chosen column over all rows seen in ``fit``.
    factor_ : str or None
        Name of the grouping factor used (None for ``centering="grand"`` without groups).
    columns_ : list of str
        Names of the chosen columns.
    level2_columns_ : list of str
        With ``columns=None``: the columns left whole because they are constant within
        every group (level-2 variables). Empty otherwise.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X has string column names.

    See Also
    --------
    between_within : the same as a function.
    MixedLinearRegressor : the model the outputs are meant for.

    Notes
    -----
    Means are unweighted means over rows. ``fit_transform`` on the training data and
    ``transform`` of the same data give the same result.

    ``groups`` is requested by ``fit`` and ``transform`` by default: with scikit-learn's
    metadata routing enabled, ``Pipeline``, ``cross_validate`` and ``GridSearchCV`` pass
    it to this step without any ``set_*_request`` call. With routing off, name the
    grouping columns of X with ``group_columns`` here and on the regressor.

    Output names are ``<column>_between``, ``<column>_within`` and
    ``<column>_grand_centered`` (see :meth:`get_feature_names_out`; use
    ``set_output(transform="pandas")`` to get a DataFrame).

    Examples
    --------
    >>> import pandas as pd
    >>> from skmlm import BetweenWithinTransformer
    >>> X = pd.DataFrame({"x": [1.0, 3.0, 10.0, 14.0], "g": ["a", "a", "b", "b"]})
    >>> bw = BetweenWithinTransformer(columns=["x"], group_columns="g").set_output(transform="pandas")
    >>> bw.fit_transform(X)
       x_between  x_within  g
    0        2.0      -1.0  a
    1        2.0       1.0  a
    2       12.0      -2.0  b
    3       12.0       2.0  b
    """

    # scikit-learn metadata routing: groups reach fit and transform by default
    __metadata_request__fit = {"groups": True}
    __metadata_request__transform = {"groups": True}

    _parameter_constraints = {
        "columns": [None, list, tuple, str, Integral],
        "centering": [StrOptions({"between_within", "within", "grand"})],
        "unseen_groups": [StrOptions({"own_mean", "grand_mean", "error"})],
        "factor": [None, str, Integral],
        "group_columns": [None, list, tuple, str, Integral],
    }

    def __init__(self, *, columns=None, centering="between_within", unseen_groups="own_mean", factor=None,
                 group_columns=None):
        self.columns = columns
        self.centering = centering
        self.unseen_groups = unseen_groups
        self.factor = factor
        self.group_columns = group_columns

    # ------------------------------------------------------------------ input
    def _parse(self, X, groups, reset):
        """``(X, chosen values (n, k) float, group labels or None)``, checked."""
        _check_2d(X)
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, X, reset=reset)
        if not isinstance(X, pd.DataFrame):
            X = np.asarray(X)
        n = X.shape[0]
        if X.shape[1] == 0:
            raise ValueError(f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        _, g_from_X, _ = split_group_columns(X, self.group_columns)
        needs_groups = self.centering != "grand"
        if groups is None and g_from_X is None and not needs_groups:
            g = None
        elif groups is None and g_from_X is None and not reset:
            raise ValueError(
                f"groups is required to transform with centering={self.centering!r}: pass groups=... (one "
                "label per row), or name the grouping columns of X with group_columns. Under metadata routing, "
                "GridSearchCV.predict, CalibratedClassifierCV and scikit-learn's named scorers (e.g. scoring='r2') "
                "call predict without metadata: put the grouping column in X and name it with group_columns on "
                "every skmlm step (then any scorer works), score with skmlm.make_grouped_scorer('r2') or "
                "scoring=None (the estimator's score), and predict with best_estimator_.predict(X, groups=g)"
            )
        else:
            g = group_frame(groups, n, g_from_X)
        if reset:
            self._group_positions = self._resolve_group_positions(X)
            self._positions = self._resolve_chosen(X)
            self.columns_ = [column_names(X)[j] for j in self._positions]
            if g is not None:
                self.factor_ = self._pick_factor(list(g.columns))
            else:
                self.factor_ = None
        sub = X.iloc[:, self._positions] if isinstance(X, pd.DataFrame) else X[:, self._positions]
        values = check_array(
            sub, dtype=np.float64, ensure_all_finite=True, ensure_min_features=0, ensure_min_samples=1,
            input_name="X",
        )
        labels = None if g is None else self._factor_labels(g)
        return X, values, labels

    def _resolve_group_positions(self, X):
        if self.group_columns is None:
            return []
        spec = [self.group_columns] if isinstance(self.group_columns, (str, numbers.Integral)) else self.group_columns
        return _resolve_columns(list(spec), X, "group_columns")

    def _resolve_chosen(self, X):
        if self.columns is None:
            return [j for j in range(X.shape[1]) if j not in self._group_positions]
        spec = [self.columns] if isinstance(self.columns, (str, numbers.Integral)) else list(self.columns)
        pos = _resolve_columns(spec, X, "columns")
        if len(set(pos)) != len(pos):
            raise ValueError(f"columns names a column twice: {spec}")
        clash = [column_names(X)[j] for j in pos if j in self._group_positions]
        if clash:
            raise ValueError(f"columns {clash} are grouping columns (group_columns) and cannot be centred")
        return pos

    def _pick_factor(self, names):
        if self.factor is None:
            if len(names) > 1:
                raise ValueError(
                    f"groups have {len(names)} grouping factors {names}: choose the one whose means are used "
                    "with factor=..."
                )
            return names[0]
        if isinstance(self.factor, numbers.Integral):
            if not -len(names) <= self.factor < len(names):
                raise ValueError(
                    f"factor={self.factor} is out of range: there are {len(names)} grouping factors {names}"
                )
            return names[self.factor]
        if str(self.factor) not in names:
            raise ValueError(f"factor={self.factor!r} is not among the grouping factors {names}")
        return str(self.factor)

    def _factor_labels(self, g):
        names = list(g.columns)
        if self.factor_ in names:
            name = self.factor_
        elif len(names) == 1 and (self.factor is None or isinstance(self.factor, numbers.Integral)):
            name = names[0]  # one factor, named differently (e.g. an array, not a Series)
        else:
            raise ValueError(f"groups lack the grouping factor {self.factor_!r} seen in fit; got {names}")
        return g[name]  # group_frame has checked the labels

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, groups=None):
        """Learn the group means (and grand means) of the chosen columns.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : ignored
        groups : array-like, Series or DataFrame, default=None
            Grouping factor(s), one label per row (several: one column each, pick one
            with ``factor``). Required unless ``group_columns`` names them in X, or
            ``centering="grand"``.

        Returns
        -------
        self
        """
        X, values, labels = self._parse(X, groups, reset=True)
        self.level2_columns_ = []
        if self.centering != "grand":
            values = self._keep_level2_whole(values, labels)
        names = self.get_feature_names_out()
        if len(set(names)) != len(names):
            dup = sorted({s for s in names if list(names).count(s) > 1})
            raise ValueError(f"output column names would repeat {dup}: rename the input columns")
        self.grand_means_ = pd.Series(values.mean(axis=0), index=self.columns_, dtype=np.float64)
        if self.centering == "grand":
            self.group_means_ = None
            return self
        codes, levels = pd.factorize(pd.Series(labels), sort=True)
        means = _group_means(codes, len(levels), values)
        self.group_means_ = pd.DataFrame(means, index=pd.Index(levels, name=self.factor_), columns=self.columns_)
        return self

    def _keep_level2_whole(self, values, labels):
        """Columns constant within every group are level-2 variables (a country's GNI):
        with ``columns=None`` they pass through whole (their within part would be rounding
        noise, which a model then fits with an absurd coefficient); named in ``columns``
        they are an error. Returns the values of the columns still chosen."""
        codes, levels = pd.factorize(pd.Series(labels), sort=True)
        if len(levels) == len(codes):  # a row per group: nothing says what is level 2
            return values
        within = values - _group_means(codes, len(levels), values)[codes]
        scale = np.abs(values).max(axis=0) if len(values) else np.zeros(values.shape[1])
        constant = np.abs(within).max(axis=0, initial=0.0) <= 1e-12 * np.maximum(scale, np.finfo(float).tiny)
        if not constant.any():
            return values
        names = [self.columns_[j] for j in np.flatnonzero(constant)]
        if self.columns is not None:
            raise ValueError(
                f"columns {names} are constant within every group of {self.factor_!r}: group-level (level-2) "
                "variables have no within part. Leave them out of columns; they pass through whole"
            )
        keep = np.flatnonzero(~constant)
        self.level2_columns_ = names
        self._positions = [self._positions[j] for j in keep]
        self.columns_ = [self.columns_[j] for j in keep]
        return values[:, keep]

    # -------------------------------------------------------------- transform
    def _row_means(self, values, labels):
        """Group mean of every chosen column for every row: ``(n, k)``."""
        levels = self.group_means_.index  # matched by value, or by text across types (as the models)
        idx = match_levels(levels, labels, lambda: level_text_index(levels))
        out = np.empty_like(values)
        known = idx >= 0
        out[known] = self.group_means_.to_numpy()[idx[known]]
        unseen = ~known
        if unseen.any():
            if self.unseen_groups == "error":
                new = pd.unique(labels[unseen])
                raise ValueError(
                    f"{len(new)} level(s) of {self.factor_!r} not seen in fit, e.g. {list(new[:5])}; set "
                    "unseen_groups='own_mean' or 'grand_mean' to centre them"
                )
            if self.unseen_groups == "grand_mean":
                out[unseen] = self.grand_means_.to_numpy()
            else:  # own_mean: the unseen levels' means in the data given
                codes, levels = pd.factorize(pd.Series(labels[unseen]))
                out[unseen] = _group_means(codes, len(levels), values[unseen])[codes]
        return out

    def _transform(self, X, values, labels):
        k_out = {}
        if self.centering == "grand":
            k_out = {"_grand_centered": values - self.grand_means_.to_numpy()}
        else:
            between = self._row_means(values, labels)
            if self.centering == "between_within":
                k_out["_between"] = between
            k_out["_within"] = values - between
        names_in = _check_feature_names_in(self, None)
        where = {j: c for c, j in enumerate(self._positions)}
        pieces = []  # (name, 1-d column) in output order
        for j, name in enumerate(names_in):
            if j in where:
                c = where[j]
                pieces.extend((f"{name}{s}", k_out[s][:, c]) for s in _SUFFIXES[self.centering])
            else:
                pieces.append((name, X.iloc[:, j] if isinstance(X, pd.DataFrame) else X[:, j]))
        if _get_output_config("transform", self)["dense"] == "pandas":
            index = X.index if isinstance(X, pd.DataFrame) else None
            cols = {name: (col.to_numpy() if isinstance(col, pd.Series) else col) for name, col in pieces}
            return pd.DataFrame(cols, index=index)
        arrays = [np.asarray(col) for _, col in pieces]
        if all(a.dtype.kind in "biuf" for a in arrays):
            return np.column_stack(arrays).astype(np.float64, copy=False) if arrays else np.empty((len(X), 0))
        return np.column_stack([a.astype(object) for a in arrays])

    def transform(self, X, groups=None):
        """Replace each chosen column by its between and/or within part, or centre it.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The columns seen in ``fit``.
        groups : array-like, Series or DataFrame, default=None
            Grouping factor(s) of the rows, as in ``fit`` (not needed for
            ``centering="grand"`` or with ``group_columns``). Levels seen in ``fit``
            use their means from ``fit``; others follow ``unseen_groups``.

        Returns
        -------
        ndarray or DataFrame of shape (n_samples, n_features_out)
            Columns in the order of X, each chosen one replaced in place (see
            :meth:`get_feature_names_out`). A DataFrame under
            ``set_output(transform="pandas")``; otherwise an array, of dtype object
            when a passed-through column is not numeric.
        """
        check_is_fitted(self)
        X, values, labels = self._parse(X, groups, reset=False)
        return self._transform(X, values, labels)

    def fit_transform(self, X, y=None, groups=None):
        """Fit on X and transform it, with ``groups`` going to both (see :meth:`fit`)."""
        self.fit(X, y, groups=groups)
        X, values, labels = self._parse(X, groups, reset=False)
        return self._transform(X, values, labels)

    def get_feature_names_out(self, input_features=None):
        """Output column names: ``<name>_between``, ``<name>_within``, ``<name>_grand_centered``, others as given.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input names; by default ``feature_names_in_``, or ``x0, x1, ...``.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "n_features_in_")
        names_in = _check_feature_names_in(self, input_features)
        chosen = set(self._positions)
        out = []
        for j, name in enumerate(names_in):
            out.extend([f"{name}{s}" for s in _SUFFIXES[self.centering]] if j in chosen else [name])
        return np.asarray(out, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def between_within(X, groups=None, *, columns=None, centering="between_within", factor=None, group_columns=None):
    """Between/within decomposition or centering of the columns of X, in one call.

    The function form of :class:`BetweenWithinTransformer`: ``fit_transform`` on X, so
    every group's mean is its mean in X. A DataFrame X gives a DataFrame (columns named
    ``<name>_between``, ``<name>_within``, ``<name>_grand_centered``), an array an array.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_features)
    groups : array-like, Series or DataFrame, default=None
        Grouping factor(s), one label per row; not needed for ``centering="grand"`` or
        with ``group_columns``.
    columns, centering, factor, group_columns
        As in :class:`BetweenWithinTransformer`.

    Returns
    -------
    DataFrame or ndarray

    Examples
    --------
    >>> import pandas as pd
    >>> from skmlm import between_within
    >>> X = pd.DataFrame({"x": [1.0, 3.0, 10.0, 14.0]})
    >>> between_within(X, groups=["a", "a", "b", "b"])
       x_between  x_within
    0        2.0      -1.0
    1        2.0       1.0
    2       12.0      -2.0
    3       12.0       2.0
    """
    est = BetweenWithinTransformer(columns=columns, centering=centering, factor=factor, group_columns=group_columns)
    if isinstance(X, pd.DataFrame):
        est.set_output(transform="pandas")
    return est.fit_transform(X, groups=groups)
