"""What both mixed-model estimators share: inputs, random-effect bookkeeping, prediction.

The numeric fitting lives in :mod:`skmlm._core`; this mixin turns user input into core
objects and fitted core results back into scikit-learn attributes.
"""

import os
import sys
import warnings

from numbers import Integral, Real
from operator import attrgetter

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._input import (
    INTERCEPT, build_factors, check_identifiable, column_names, fixed_design, group_frame, independent_columns,
    level_text_index, match_levels, resolve_random_slopes, unseen_levels_error, validate_X, validate_y_weights,
)


class GroupsMissingWarning(UserWarning):
    """A model fitted with groups was asked to predict without them.

    Every row then gets the population prediction (random effects 0, or averaged over
    them), not the model's prediction with the random effects of its groups. It happens
    silently inside scikit-learn tools that call ``predict`` with ``X`` alone: named
    scorers (``scoring="neg_root_mean_squared_error"``, ``"roc_auc"``, ...),
    ``GridSearchCV.predict``, ``CalibratedClassifierCV``. Given once per fitted model;
    ``missing_groups="population"`` says that population predictions are meant.
    """


class fitted_view:
    """A fitted attribute built on first access from the arrays that ``fit`` stored.

    The DataFrames a user reads (conditional modes, covariances, tables, the optimiser's
    log) cost more to build than a small fit's arithmetic, and a cross-validation loop
    never reads them. The built value is kept in ``self._views``, which every fit
    replaces, so a refit never shows a stale table (nor keeps a flag of the last fit,
    such as whether :class:`GroupsMissingWarning` was given).
    """

    def __init__(self, build):
        self.build = build
        self.__doc__ = build.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        views = obj.__dict__.get("_views")
        if views is None:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r} (not fitted yet)")
        if self.name not in views:
            views[self.name] = self.build(obj)
        return views[self.name]


class MixedModelMixin:
    """Shared machinery for :class:`MixedLinearRegressor` and :class:`MixedLogisticClassifier`."""

    #: Whether a factor with a level per row is confounded with the residual (gaussian and
    #: 0/1 outcomes), so that check_identifiable warns; counts and proportions tell an
    #: observation-level random effect (overdispersion) apart.
    _residual_confounds_observation_levels = True

    # scikit-learn metadata routing: groups reach fit, predict and score by default
    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

    def _validate_params(self):
        """scikit-learn's check of the constructor parameters, once per setting and class.

        The check costs ~60 us, as much as a small model's search; a grid search repeats
        a few settings many times. Settings made of plain values (None, bool, int, float,
        str, and lists, tuples or dicts of them) that passed are remembered; any other
        setting is checked every time.
        """
        cls = type(self)
        read = _PARAM_READERS.get(cls)
        if read is None:
            read = _PARAM_READERS[cls] = _parameter_reader(cls._get_param_names())
        values = read(self)
        types = tuple(map(type, values))
        try:  # scalars as they are (with their types: 1, 1.0 and True are equal), containers copied
            key = (cls, types, values) if _SCALAR_TYPES.issuperset(types) else (cls, tuple(map(_plain, values)))
        except TypeError:  # not plain values
            key = None
        if key is not None and key in _VALID_SETTINGS:
            return
        super()._validate_params()
        if key is not None:
            if len(_VALID_SETTINGS) >= 4096:
                _VALID_SETTINGS.clear()
            _VALID_SETTINGS.add(key)

    def _prepare_fit(self, X, y, groups, sample_weight, validated_X=None, chunk=False):
        """Validate inputs and build the core's design: returns a dict of arrays and factors.
        ``validated_X``: what :func:`validate_X` returned for ``X``, if the caller has it.
        ``chunk``: the rows are a part of the data (``partial_fit``, a Dask partition):
        what needs all rows (at least 2 rows and 2 levels, the columns aliased in the
        design) is left to the fit of the statistics of all of them."""
        if not isinstance(X, pd.DataFrame) and not hasattr(X, "shape"):
            X = np.asarray(X)
        Xn, g_from_X, kept = validate_X(self, X, reset=True) if validated_X is None else validated_X
        n = Xn.shape[0]
        if n < 2 and not chunk:
            raise ValueError(f"n_samples = {n}: a mixed model needs at least 2 rows")
        y_given = y
        y, w = validate_y_weights(y, sample_weight, n)
        groups = group_frame(groups, n, g_from_X, check_missing=False)  # build_factors checks
        names_in = self.__dict__.get("feature_names_in_")  # X's column names, as validate_X recorded them
        all_names = names_in.tolist() if isinstance(X, pd.DataFrame) and names_in is not None else column_names(X)
        names = [all_names[j] for j in kept]
        factors = self._random_factors(groups, X, Xn, kept, names)
        if not chunk:
            check_identifiable(factors, n, warn_residual=self._residual_confounds_observation_levels)
        fixed_names = ([INTERCEPT] if self.fit_intercept else []) + names
        Xf = fixed_design(Xn, self.fit_intercept)
        self._design_names = fixed_names
        if not chunk:
            Xf, fixed_names = self._drop_aliased_columns(Xf, fixed_names)
        self._fixed_names = fixed_names
        self._response_name = str(y_name) if (y_name := getattr(y_given, "name", None)) is not None else "y"
        return {"X": Xn, "Xf": Xf, "y": y, "w": w, "factors": factors}

    def _random_factors(self, groups, X, Xn, kept, names):
        """The core's random factors from the grouping factors and ``random_slopes`` (a hook:
        formula models build theirs from the formula's bars)."""
        slopes = resolve_random_slopes(self.random_slopes, list(groups.columns), X, kept)
        self._slope_positions = slopes
        return build_factors(groups, slopes, Xn, names, self.random_intercept, self.covariance)

    def _drop_aliased_columns(self, Xf, names):
        """The fixed-effects design without its aliased columns, as lme4 fits it.

        Columns that are linear combinations of earlier ones (one-hot columns of every
        category beside the intercept, spline bases with their bias) are dropped, with one
        warning naming them; ``dropped_columns_`` lists them, and their ``coef_`` will be 0
        (so that ``X @ coef_ + intercept_`` is the reduced model's prediction).
        """
        kept = self._keep_columns(independent_columns(Xf), names)
        return (Xf, names) if kept is None else (Xf[:, kept], [names[j] for j in kept])

    def _keep_columns(self, kept, names):
        """Record which columns of the design ``names`` are ``kept`` (``dropped_columns_``,
        the mask of ``coef_``) and warn about the others; None where all are kept."""
        p = len(names)
        if len(kept) == p:
            self.dropped_columns_ = []
            self._feature_mask = None
            return None
        offset = 1 if self.fit_intercept else 0
        kept_set = set(kept)
        dropped = [names[j] for j in range(p) if j not in kept_set]
        mask = np.zeros(p - offset, dtype=bool)
        mask[[j - offset for j in kept if j >= offset]] = True
        self.dropped_columns_ = dropped
        self._feature_mask = mask
        k = len(dropped)
        warnings.warn(
            f"the fixed-effects design is rank deficient: dropping {k} column{'s' if k > 1 else ''} "
            f"{', '.join(map(repr, dropped))}, a linear combination of the others (as lme4 does); "
            f"{'their' if k > 1 else 'its'} coef_ is 0 and dropped_columns_ lists {'them' if k > 1 else 'it'}",
            UserWarning, stacklevel=7,  # the caller of fit
        )
        return list(kept)

    def _set_fixed_effects(self, beta):
        """``intercept_`` and ``coef_`` from the estimated fixed effects (intercept first):
        ``coef_`` has one entry per feature, 0 for a column dropped as aliased."""
        self.intercept_ = float(beta[0]) if self.fit_intercept else 0.0
        coef = beta[1:] if self.fit_intercept else beta
        mask = self._feature_mask
        if mask is not None:
            full = np.zeros(len(mask))
            full[mask] = coef
            coef = full
        self.coef_ = coef

    def _standard_errors(self):
        """Standard errors of the fixed effects estimated (intercept first). For a y of order
        1e160, whose variances are not floats (``coef_cov_`` is inf), from the covariance
        in the units the fit ran in."""
        unscaled = self.__dict__.get("_coef_cov_unscaled")
        if unscaled is None:
            return np.sqrt(np.diag(self.coef_cov_))
        cov, scale = unscaled
        return np.sqrt(np.diag(cov)) * scale

    def _fixed_correlation(self):
        """Correlation of the fixed-effect estimates (NaN where a variance is 0)."""
        unscaled = self.__dict__.get("_coef_cov_unscaled")
        cov = self.coef_cov_ if unscaled is None else unscaled[0]
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            return cov / np.outer(sd, sd)

    def _store_random_effects(self, factors, modes, covariances):
        """Keep what ``random_effects_`` and ``random_covariance_`` are built from; fill
        ``n_groups_``. Starts the fit's views afresh (see :class:`fitted_view`)."""
        self._views = {}
        self._random_parts = [(f.name, f.levels, list(f.terms), modes[f.name], covariances[f.name]) for f in factors]
        self.n_groups_ = {f.name: f.n_levels for f in factors}
        self._terms = {f.name: list(f.terms) for f in factors}
        self._uncorrelated = {f.name: bool(f.diagonal) for f in factors}

    @fitted_view
    def random_effects_(self):
        """Conditional modes: factor name -> DataFrame, one row per level, one column per term."""
        return {
            name: pd.DataFrame(modes, index=pd.Index(levels, name=name), columns=terms)
            for name, levels, terms, modes, _ in self._random_parts
        }

    @fitted_view
    def random_covariance_(self):
        """Covariance of each factor's random effects: factor name -> q x q DataFrame."""
        return {name: pd.DataFrame(cov, index=terms, columns=terms) for name, _, terms, _, cov in self._random_parts}

    def _beta(self):
        """The fixed effects estimated, intercept first (where the model has one); columns
        dropped as aliased left out."""
        coef = np.asarray(self.coef_, dtype=float)
        mask = getattr(self, "_feature_mask", None)
        if mask is not None:
            coef = coef[mask]
        if not self.fit_intercept:
            return coef
        beta = np.empty(len(coef) + 1)  # not np.concatenate: its conversion of a list costs more at every fit
        beta[0], beta[1:] = self.intercept_, coef
        return beta

    def _training_linear_predictor(self):
        """``X beta + Z b`` on the training rows, from the fitted coefficients and modes."""
        d = self._inference_data
        beta = self._beta()
        eta = d["X"] @ beta if len(beta) else np.zeros(len(d["y"]))
        for f, (_, _, _, modes, _) in zip(d["factors"], self._random_parts):
            eta += np.einsum("ij,ij->i", f.z, modes[f.codes])
        return eta

    @fitted_view
    def _var_fixed(self):
        """Variance of the fixed part ``X beta`` over the training rows (Nakagawa's R^2)."""
        beta = self._beta()
        return float(np.var(self._inference_data["X"] @ beta, ddof=1)) if len(beta) else 0.0

    def coef(self):
        """lme4's ``coef``: per grouping factor a DataFrame, one row per level, the fixed
        effects plus the level's random effects (the level's own intercept and slopes)."""
        from ._fitted import coef_per_group

        return coef_per_group(self)

    def fitted(self, X=None, groups=None, **predict_params):
        """The rows' fitted values, conditional on their groups' random effects, on the
        response scale (lme4's ``fitted``). ``X=None``: the training rows, where the model
        keeps them (a GLMM); a linear model keeps statistics, not rows: pass them again
        (a formula model: the data frame)."""
        from ._fitted import fitted_values

        return fitted_values(self, X, groups, **predict_params)

    def residuals(self, X=None, y=None, groups=None, sample_weight=None, *, type="response",  # noqa: A002
                  scaled=False, **predict_params):
        """The rows' residuals, as lme4's ``residuals(type=, scaled=)``: ``"response"``,
        ``"pearson"`` or ``"deviance"``; ``scaled``: a linear model's over sigma (lme4's
        scaled residuals). ``X=None``: the training rows, where the model keeps them (a
        GLMM); a linear model keeps statistics, not rows, so its residuals are a second pass
        over the data (in memory, or a chunk at a time; a formula model: the data frame)."""
        from ._fitted import residuals

        return residuals(self, X, y, groups, sample_weight, type, scaled, **predict_params)

    @fitted_view
    def optimizer_log_(self):
        """Every evaluation of the objective: the search's parameters and the deviance."""
        x = np.array([x for x, _ in self._optimizer_log])
        return pd.DataFrame(
            np.column_stack([x.reshape(len(self._optimizer_log), -1), [f for _, f in self._optimizer_log]]),
            columns=self._optimizer_log_names + ["deviance"],
        )

    # -- prediction ----------------------------------------------------------------
    @fitted_view
    def _level_index(self):
        """Per grouping factor, its levels seen in fit as a ``pd.Index``."""
        return {name: pd.Index(levels) for name, levels, _, _, _ in self._random_parts}

    @fitted_view
    def _level_texts(self):
        """Per grouping factor, :func:`~skmlm._input.level_text_index` of its levels (built
        on first use: only predictions with labels of another type need it)."""
        return {}

    def _level_text_index(self, f):
        texts = self._level_texts
        if f not in texts:
            texts[f] = level_text_index(self._level_index[f])
        return texts[f]

    def _unseen_mode(self, unseen_levels):
        mode = self.unseen_levels if unseen_levels is None else unseen_levels
        if mode not in ("average", "zero", "error"):
            raise ValueError(f"unseen_levels must be 'average', 'zero' or 'error'; got {mode!r}")
        return mode

    def _level_positions(self, n, groups, g_from_X, unseen_levels):
        """Per grouping factor seen in fit, each row's position among its levels: -1 for a
        level not seen in fit and for a missing label (an error for ``unseen_levels="error"``).
        None when no groups were given (see ``missing_groups``)."""
        if groups is None and g_from_X is None:
            self._predict_without_groups()
            return None
        g = group_frame(groups, n, g_from_X, allow_missing=True)
        names = list(self._terms)
        if g.shape[1] == 1 and len(names) == 1:  # one factor: its name does not matter
            g.columns = names
        missing = [f for f in names if f not in g.columns]
        if missing:
            raise ValueError(f"groups lack the grouping factor(s) {missing} seen in fit; got {list(g.columns)}")
        out = {}
        for f, levels in self._level_index.items():
            idx = match_levels(levels, g[f], lambda f=f: self._level_text_index(f))
            if unseen_levels == "error" and np.any(idx < 0):
                unseen_levels_error(f, g[f], idx)
            out[f] = idx
        return out

    def _predict_without_groups(self):
        """``missing_groups``: warn (once per fitted model), go on quietly, or raise."""
        mode = self.missing_groups
        if mode == "population":
            return
        name = type(self).__name__
        if mode == "error":
            raise ValueError(
                f"{name} was fitted with groups but was asked to predict with no groups (no groups= and no "
                "group_columns), and missing_groups='error'. Pass groups=..., or name the grouping columns of X "
                "with group_columns; missing_groups='population' allows population predictions"
            )
        if self._views.get("groups_missing_warned"):
            return
        self._views["groups_missing_warned"] = True
        frame, level = sys._getframe(0), 1  # point at the first caller outside skmlm
        while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frame, level = frame.f_back, level + 1
        population = (  # a GLMM averages over the random effects' distribution by default
            "averaged over the random effects" if hasattr(self, "family_") else "random effects 0"
        )
        warnings.warn(GroupsMissingWarning(
            f"{name} was fitted with groups but was asked to predict without them (no groups= and no "
            f"group_columns): every row gets the population prediction ({population}), not the model's "
            "prediction with the random effects of its groups. scikit-learn's named scorers (scoring="
            "'neg_root_mean_squared_error', 'roc_auc', ...), GridSearchCV.predict and CalibratedClassifierCV "
            "call predict with X alone: put the grouping column in X and name it with group_columns='...', "
            "or, with metadata routing on, score with skmlm.make_grouped_scorer(...), which passes the routed "
            "groups to predict (skmlm's estimators request groups in predict by default, as "
            "set_predict_request(groups=True)). For population predictions on purpose, set "
            "missing_groups='population'. (Said once per fitted model.)"
        ), stacklevel=level)

    def _linear_predictor(self, X, groups, unseen_levels=None):
        """Fixed part plus the random effects of known levels (0 for unseen ones)."""
        check_is_fitted(self)
        mode = self._unseen_mode(unseen_levels)
        Xn, source, g_from_X, groups = self._prediction_design(X, groups)
        eta = self.intercept_ + Xn @ self.coef_
        positions = self._level_positions(Xn.shape[0], groups, g_from_X, mode)
        if positions is None:
            return eta
        for f, _, _, modes, _ in self._random_parts:
            idx = positions[f]
            known = idx >= 0
            if known.any():
                eta[known] += np.einsum("ij,ij->i", self._random_design(source, f)[known], modes[idx[known]])
        return eta

    def _prediction_design(self, X, groups):
        """``(fixed features, source of the random covariates, groups found in X, groups)``
        of the rows to predict (a hook: formula models read all of them from a DataFrame)."""
        Xn, g_from_X, _ = validate_X(self, X, reset=False)
        return Xn, Xn, g_from_X, groups

    def _random_design(self, source, f):
        """The columns of factor ``f``'s random effects (intercept, slopes) for the rows of
        ``source`` (X's features; a formula model's covariates per factor)."""
        n = source.shape[0]
        terms = self._terms[f]
        return np.column_stack(
            ([np.ones(n)] if terms[0] == INTERCEPT else []) + [source[:, j] for j in self._slope_positions[f]]
        )


#: Where skmlm's modules are: a warning points at the first caller outside them.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: The constructor parameters every mixed model shares, as scikit-learn validates them.
SHARED_PARAMETER_CONSTRAINTS = {
    "random_slopes": [None, list, tuple, dict, str],
    "random_intercept": ["boolean"],
    "covariance": [StrOptions({"unstructured", "diagonal"})],
    "fit_intercept": ["boolean"],
    "group_columns": [None, list, tuple, str, Integral],
    "unseen_levels": [StrOptions({"average", "zero", "error"})],
    "missing_groups": [StrOptions({"warn", "population", "error"})],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="neither")],
    "verbose": ["verbose"],
}

#: The reader of the constructor parameters per estimator class (see
#: :func:`_parameter_reader`), and settings that passed validation.
_PARAM_READERS = {}
_VALID_SETTINGS = set()


def _parameter_reader(names):
    """A function of an estimator that returns the values of its parameters ``names``, as a
    tuple, in one call."""
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda estimator: (get(estimator),)
    return attrgetter(*names)


def _plain(value):
    """A hashable, type-exact copy of a plain parameter value; TypeError for anything else."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return (kind, value)
    if kind is list or kind is tuple:
        return (kind, tuple(map(_plain, value)))
    if kind is dict:
        return (dict, tuple((_plain(k), _plain(v)) for k, v in value.items()))
    raise TypeError(f"not a plain value: {kind.__name__}")


#: The parameter values :func:`_plain` copies as they are.
_SCALAR_TYPES = frozenset({type(None), bool, int, float, str})


def not_converged_message(opt, max_iter):
    """The warning for a fit that stopped short of an optimum: the cap it reached, or why
    the search stopped."""
    where = "the estimates and their standard errors are those of the point where it stopped and may be off"
    if opt.n_iter >= max_iter:
        return (
            f"the optimiser stopped after max_iter={max_iter} iterations, before reaching an optimum: {where}. "
            "Increase max_iter."
        )
    return f"the optimiser stopped after {opt.n_iter} iterations before reaching an optimum ({opt.message}): {where}."


def mean_random_variance(factors, covariances):
    """Variance of the random part ``z_i' b`` averaged over the rows, summed over factors.

    Nakagawa's random-effect variance (performance's ``var.random``): with random slopes
    it depends on the covariates, so it is the mean of ``z_i' Sigma z_i`` over the rows.
    """
    return sum(float(np.sum(covariances[f.name] * f.z_mean_square())) for f in factors)


def choose_factor(names, factor, purpose):
    """The grouping factor ``factor`` among ``names``, or the only one when it is None."""
    names = list(names)
    if factor is None:
        if len(names) != 1:
            raise ValueError(f"the model has several grouping factors {names}: {purpose} with factor=")
        return names[0]
    if factor not in names:
        raise ValueError(f"no grouping factor {factor!r}; the model has {names}")
    return factor
