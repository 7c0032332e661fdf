"""What both mixed-model estimators share: inputs, random-effect bookkeeping, prediction.

The numeric fitting lives in :mod:`skmlm._core`; this mixin turns user input into core
objects and fitted core results back into scikit-learn attributes.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ._input import (
    INTERCEPT, build_factors, check_identifiable, column_names, fixed_design,
    group_frame, independent_columns, resolve_random_slopes, validate_X, validate_y_weights,
)


class fitted_view:
    """A fitted attribute built on first access from the arrays that ``fit`` stored.

    The DataFrames a user reads (conditional modes, covariances, tables, the optimiser's
    log) cost more to build than a small fit's arithmetic, and a cross-validation loop
    never reads them. The built value is kept in ``self._views``, which every fit
    replaces, so a refit never shows a stale table.
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
        names = _PARAM_NAMES.get(cls)
        if names is None:
            names = _PARAM_NAMES[cls] = tuple(cls._get_param_names())
        try:
            key = (cls, tuple(_plain(getattr(self, name)) for name in names))
        except TypeError:  # not plain values
            key = None
        if key is not None and key in _VALID_SETTINGS:
            return
        super()._validate_params()
        if key is not None:
            if len(_VALID_SETTINGS) >= 4096:
                _VALID_SETTINGS.clear()
            _VALID_SETTINGS.add(key)

    def _prepare_fit(self, X, y, groups, sample_weight, validated_X=None):
        """Validate inputs and build the core's design: returns a dict of arrays and factors.
        ``validated_X``: what :func:`validate_X` returned for ``X``, if the caller has it."""
        if not isinstance(X, pd.DataFrame) and not hasattr(X, "shape"):
            X = np.asarray(X)
        Xn, g_from_X, kept = validate_X(self, X, reset=True) if validated_X is None else validated_X
        n = Xn.shape[0]
        if n < 2:
            raise ValueError(f"n_samples = {n}: a mixed model needs at least 2 rows")
        y_given = y
        y, w = validate_y_weights(y, sample_weight, n)
        groups = group_frame(groups, n, g_from_X, check_missing=False)  # build_factors checks
        all_names = column_names(X)
        names = [all_names[j] for j in kept]
        slopes = resolve_random_slopes(self.random_slopes, list(groups.columns), X, kept)
        factors = build_factors(groups, slopes, Xn, names, self.random_intercept, self.covariance)
        check_identifiable(factors, n, warn_residual=self._residual_confounds_observation_levels)
        fixed_names = ([INTERCEPT] if self.fit_intercept else []) + names
        Xf = fixed_design(Xn, self.fit_intercept)
        self._design_names = fixed_names
        Xf, fixed_names = self._drop_aliased_columns(Xf, fixed_names)
        self._slope_positions = slopes
        self._fixed_names = fixed_names
        self._response_name = str(y_name) if (y_name := getattr(y_given, "name", None)) is not None else "y"
        return {"X": Xn, "Xf": Xf, "y": y, "w": w, "factors": factors}

    def _drop_aliased_columns(self, Xf, names):
        """The fixed-effects design without its aliased columns, as lme4 fits it.

        Columns that are linear combinations of earlier ones (one-hot columns of every
        category beside the intercept, spline bases with their bias) are dropped, with one
        warning naming them; ``dropped_columns_`` lists them, and their ``coef_`` will be 0
        (so that ``X @ coef_ + intercept_`` is the reduced model's prediction).
        """
        kept = independent_columns(Xf)
        if len(kept) == Xf.shape[1]:
            self.dropped_columns_ = []
            self._feature_mask = None
            return Xf, names
        offset = 1 if self.fit_intercept else 0
        kept_set = set(kept)
        dropped = [names[j] for j in range(Xf.shape[1]) if j not in kept_set]
        mask = np.zeros(Xf.shape[1] - offset, dtype=bool)
        mask[[j - offset for j in kept if j >= offset]] = True
        self.dropped_columns_ = dropped
        self._feature_mask = mask
        k = len(dropped)
        warnings.warn(
            f"the fixed-effects design is rank deficient: dropping {k} column{'s' if k > 1 else ''} "
            f"{', '.join(map(repr, dropped))}, a linear combination of the others (as lme4 does); "
            f"{'their' if k > 1 else 'its'} coef_ is 0 and dropped_columns_ lists {'them' if k > 1 else 'it'}",
            UserWarning, stacklevel=6,  # the caller of fit
        )
        return Xf[:, kept], [names[j] for j in kept]

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
        return np.concatenate(([self.intercept_], coef)) if self.fit_intercept else coef

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

    @fitted_view
    def optimizer_log_(self):
        """Every evaluation of the objective: the search's parameters and the deviance."""
        x = np.array([x for x, _ in self._optimizer_log])
        return pd.DataFrame(
            np.column_stack([x.reshape(len(self._optimizer_log), -1), [f for _, f in self._optimizer_log]]),
            columns=self._optimizer_log_names + ["deviance"],
        )

    def _linear_predictor(self, X, groups):
        """Fixed part plus the random effects of known levels (0 for unseen ones)."""
        check_is_fitted(self)
        Xn, g_from_X, _ = validate_X(self, X, reset=False)
        eta = self.intercept_ + Xn @ self.coef_
        if groups is None and g_from_X is None:
            return eta
        g = group_frame(groups, Xn.shape[0], g_from_X)
        if g.shape[1] == 1 and len(self.random_effects_) == 1:  # one factor: its name does not matter
            g.columns = list(self.random_effects_)
        missing = [f for f in self.random_effects_ if f not in g.columns]
        if missing:
            raise ValueError(f"groups lack the grouping factor(s) {missing} seen in fit; got {list(g.columns)}")
        n = Xn.shape[0]
        for f, re in self.random_effects_.items():
            idx = re.index.get_indexer(pd.Index(g[f]))
            known = idx >= 0
            if not known.any():
                continue
            terms = self._terms[f]
            z = np.column_stack(
                ([np.ones(n)] if terms[0] == INTERCEPT else []) + [Xn[:, j] for j in self._slope_positions[f]]
            )
            b = re.to_numpy()[idx[known]]
            eta[known] += np.einsum("ij,ij->i", z[known], b)
        return eta


#: Constructor parameter names per estimator class, and settings that passed validation.
_PARAM_NAMES = {}
_VALID_SETTINGS = set()


def _plain(value):
    """A hashable, type-exact copy of a plain parameter value; TypeError for anything else."""
    if value is None or type(value) in (bool, int, float, str):
        return (type(value), value)
    if type(value) in (list, tuple):
        return (type(value), tuple(_plain(v) for v in value))
    if type(value) is dict:
        return (dict, tuple((_plain(k), _plain(v)) for k, v in value.items()))
    raise TypeError(f"not a plain value: {type(value).__name__}")


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
    return sum(float(np.sum(covariances[f.name] * ((f.z.T @ f.z) / len(f.z)))) for f in factors)


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
