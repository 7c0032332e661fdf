"""Random effects on top of any scikit-learn model: MixedEffectsRegressor and MixedEffectsClassifier.

The model is ``y = f(X) + Z b + e`` (on the logit scale for the classifier), with ``f``
any scikit-learn estimator and ``Z b`` the random intercepts and slopes of one or more
grouping factors. ``f`` is fitted by the wrapped estimator; the random effects and their
covariance by skmlm's linear (or logistic) mixed model, through its public estimators.

What keeps a flexible ``f`` from absorbing the group effects is cross-fitting: the mixed
model sees ``f``'s predictions made out of fold, by models that never saw the rows'
groups, so a group's offset cannot hide in ``f``'s fit to that group's own rows.
"""

import copy
import time
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy.special import logit
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_feature_names, _check_n_features, check_array, check_is_fitted, column_or_1d, has_fit_parameter,
)

from ._base import MixedModelMixin
from ._core.lmm import LinearMixedModel
from ._input import (
    _check_2d, column_names, encode_levels, group_frame, resolve_random_slopes, split_group_columns,
    validate_y_weights,
)
from ._linear import MixedLinearRegressor
from ._logistic import MixedLogisticClassifier

#: Probabilities of the wrapped classifier are clipped to [EPS, 1 - EPS] before their
#: log-odds are taken: a forest's 0 and 1 would otherwise be infinite log-odds.
PROBABILITY_EPS = 1e-6

RELAXATION = 0.5

#: The column of the regressor's linear mixed model that holds f's out-of-fold predictions.
F_COLUMN = "f(X)"

#: The column of the logistic mixed model's design that holds the classifier's log-odds.
LOG_ODDS = "f(X) log-odds"

_PARAMETER_CONSTRAINTS = {
    "random_slopes": [None, list, tuple, dict, str],
    "random_intercept": ["boolean"],
    "covariance": [StrOptions({"unstructured", "diagonal"})],
    "group_columns": [None, list, tuple, str, Integral],
    "cv": [Interval(Integral, 2, None, closed="left"), None],
    "unseen_levels": [StrOptions({"average", "zero", "error"})],
    "missing_groups": [StrOptions({"warn", "population", "error"})],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="neither")],
    "verbose": ["verbose"],
}


def weight_parameter(estimator):
    """The name under which ``estimator.fit`` takes sample weights, or None.

    ``"sample_weight"`` for an estimator whose ``fit`` names it and for a ``Pipeline`` with
    metadata routing on (the pipeline routes it to the steps that request it);
    ``"<last step>__sample_weight"`` for a ``Pipeline`` whose last step takes it (the
    pipeline's own syntax otherwise): preprocessing then a weighted model, as users build it.
    """
    if has_fit_parameter(estimator, "sample_weight"):
        return "sample_weight"
    if isinstance(estimator, Pipeline):
        if get_config().get("enable_metadata_routing", False):
            return "sample_weight"
        name, last = estimator.steps[-1]
        if last not in (None, "passthrough") and weight_parameter(last) is not None:
            return f"{name}__{weight_parameter(last)}"
    return None

class FoldAverage(RegressorMixin, BaseEstimator):
    """The mean prediction of regressors fitted on the complements of the folds.

    :class:`MixedEffectsRegressor`'s ``f``: the cross-fitting fits these models anyway,
    and their mean varies less than one model fitted on all rows (as bagging's does).
    """

    def __init__(self, estimators):
        self.estimators = estimators

    def predict(self, X):
        return np.mean([np.asarray(m.predict(X), dtype=float) for m in self.estimators], axis=0)

    def __sklearn_is_fitted__(self):
        return True


class _MixedEffectsBase(BaseEstimator):
    """What both meta-estimators share: inputs, folds, the mixed model's design, groups at predict."""

    # scikit-learn metadata routing: groups reach fit, predict and score by default
    __metadata_request__fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__score = {"groups": True}

    @property
    def random_effects_(self):
        """Conditional modes (the classifier's on the log-odds scale): factor name ->
        DataFrame, one row per level, one column per term."""
        check_is_fitted(self)
        return self.mixed_model_.random_effects_

    @property
    def random_covariance_(self):
        """Covariance of each factor's random effects: factor name -> q x q DataFrame."""
        check_is_fitted(self)
        return self.mixed_model_.random_covariance_

    def _split_input(self, X, groups, reset):
        """``(X for f, grouping factors as a DataFrame or None, slope columns as a float DataFrame)``.

        X goes to the wrapped estimator as given, less its grouping columns: f may take
        what its own pipeline takes (strings for an encoder, NaN for a gradient boosting).
        """
        if not isinstance(X, pd.DataFrame) and not hasattr(X, "shape"):
            X = np.asarray(X)
        _check_2d(X)
        if getattr(X, "dtype", None) is not None and X.dtype.kind == "c":
            raise ValueError("Complex data not supported: X must hold real numbers")
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, X, reset=reset)
        n = X.shape[0]
        if reset and n < 2:
            raise ValueError(f"n_samples = {n}: a mixed model needs at least 2 rows")
        X_rest, g_from_X, kept = split_group_columns(X, self.group_columns)
        if np.shape(X_rest)[1] == 0:
            raise ValueError(
                f"X has n_features = {X.shape[1]} and all are grouping columns (group_columns): f needs at least "
                "one feature"
            )
        if groups is None and g_from_X is None:
            if reset:
                group_frame(None, n)  # raises: groups are required in fit
            return X_rest, None, self._slope_frame(X_rest, n)
        g = group_frame(groups, n, g_from_X, check_missing=reset, allow_missing=not reset)
        frame = pd.DataFrame({name: g[name] for name in g.columns})
        if reset:
            self._slopes = resolve_random_slopes(self.random_slopes, list(g.columns), X, kept)
            self._slope_names = column_names(X_rest)
        return X_rest, frame, self._slope_frame(X_rest, n)

    def _slope_frame(self, X_rest, n):
        """The mixed model's X, as floats: every column of f's X with a linear part
        (``linear_part=True``), else the columns with random slopes."""
        linear = self.linear_part
        used = range(len(self._slope_names)) if linear else sorted({j for pos in self._slopes.values() for j in pos})
        names = [self._slope_names[j] for j in used]
        if not used:
            return pd.DataFrame(index=range(n))
        cols = X_rest.iloc[:, list(used)] if isinstance(X_rest, pd.DataFrame) else np.asarray(X_rest)[:, list(used)]
        try:
            values = check_array(cols, dtype=np.float64, input_name="X")
        except (TypeError, ValueError) as e:
            what = "with linear_part=True, every feature of f" if linear else f"the random slope columns {names}"
            fix = " (or set linear_part=False to give f non-numeric columns)" if linear else ""
            raise type(e)(f"{what} must be numeric and finite{fix}: {e}") from e
        return pd.DataFrame(values, columns=names)

    def _mixed_slopes(self):
        """``random_slopes`` of the inner mixed model: names of its X's columns per factor."""
        return {f: [self._slope_names[j] for j in pos] for f, pos in self._slopes.items()}

    def _folds(self, groups, n):
        """Each row's fold: the levels of the first grouping factor split into ``cv`` folds
        (GroupKFold), so that an out-of-fold prediction never saw its row's level. None
        for ``cv=None`` (in-sample predictions)."""
        if self.cv is None:
            return None
        first = groups.columns[0]
        codes, levels = encode_levels(groups[first].to_numpy(), first)
        if len(levels) < self.cv:
            raise ValueError(
                f"cv={self.cv} folds of the levels of {first!r} need at least {self.cv} levels; it has "
                f"{len(levels)}. Set cv to at most {len(levels)}"
            )
        fold = np.empty(n, dtype=np.intp)
        for k, (_, test) in enumerate(GroupKFold(n_splits=self.cv).split(np.empty((n, 1)), groups=codes)):
            fold[test] = k
        return fold

    def _check_weights(self, estimator, sample_weight):
        if sample_weight is not None and weight_parameter(estimator) is None:
            raise ValueError(
                f"sample_weight was given but {type(estimator).__name__}.fit does not accept sample_weight: "
                "wrap an estimator that does, or fit without weights"
            )

    @staticmethod
    def _random_part(mixed, Xs, g, unseen_levels=None):
        """``Z b`` of the rows: the random effects of their levels (0 for unseen ones), on
        the scale of the linear predictor (``decision_function`` of a logistic model)."""
        fixed = mixed.intercept_ + Xs.to_numpy() @ mixed.coef_
        linear_predictor = getattr(mixed, "decision_function", mixed.predict)
        return linear_predictor(Xs, groups=g, unseen_levels=unseen_levels) - fixed

    @staticmethod
    def _fit_on(estimator, X, y, w, rows=None):
        """A clone of ``estimator`` fitted on ``rows`` (all when None), with weights if given."""
        est = clone(estimator)
        if rows is not None:
            X = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
            y = y[rows]
            w = None if w is None else w[rows]
        return est.fit(X, y) if w is None else est.fit(X, y, **{weight_parameter(est): w})

    def _groups_for_predict(self, X, groups):
        """The rows' groups as a DataFrame, or None (population predictions: ``missing_groups``)."""
        X_rest, g, Xs = self._split_input(X, groups, reset=False)
        if g is None:
            MixedModelMixin._predict_without_groups(self)
        return X_rest, g, Xs


class MixedEffectsRegressor(RegressorMixin, _MixedEffectsBase):
    """Random intercepts and slopes on top of any scikit-learn regressor.

    Fits ``y = c f(X) + X beta + Z b + e``, ``b ~ N(0, Sigma)``, ``e ~ N(0, sigma^2 / w)``,
    with ``f`` any scikit-learn regressor (gradient boosting by default), ``X beta`` a linear
    part in the features (``linear_part=True``; without it ``c = 1``, ``beta = 0``) and the
    random effects of one or more grouping factors (crossed or nested), by backfitting:

    0. start from the linear mixed model alone (:class:`MixedLinearRegressor`, maximum
       likelihood, on the features, or on the slope columns without the linear part): its
       part ``X beta + Z b``;
    1. fit ``f`` to ``y - X beta - Z b`` out of fold: the levels of the first grouping
       factor are split into ``cv`` folds, and each fold is predicted by ``f`` fitted on
       the others;
    2. with the linear part, the linear mixed model of ``y`` on those out-of-fold
       predictions and the features gives ``c``, the weight of ``f`` (see below); then the
       linear mixed model of ``y - c f(X)``: its variance components are the answer, its
       fixed effects and conditional modes give the new ``X beta + Z b``; the next target
       is the mean of the new and the previous part (a damped step, which keeps the
       iteration from oscillating when ``f`` can tell the groups apart);
    3. by default stop here (``max_iter=1``, ``tol=None``): one round from the linear
       mixed model's start, a one-step estimator; with ``tol``, repeat 1-2 until the part
       changes by at most ``tol`` times the residual standard deviation (root mean square
       over the rows), at most ``max_iter`` times;
    4. out of fold only (``cv=None`` keeps the last round's ``f`` and modes): fit ``f`` on
       all rows to ``y`` less the last part, and take as ``X beta + Z b`` the fixed effects
       and conditional modes of ``y - c f(X)`` at the variance components of step 2.

    The linear part and ``c``: boosting and forests approximate a linear trend by steps,
    at a cost in variance, and on data whose signal is mostly linear they fit noise the
    linear mixed model would not. Here the linear mixed model takes the linear trend, and
    ``f`` what is left; ``c`` is estimated on predictions ``f`` made for groups its model
    never saw, so it is near 1 when ``f`` finds structure the linear part misses and near
    0 when ``f`` fits only noise, the fit then being the linear mixed model's (stacking by
    held-out error, as the classifier's coefficient of the log-odds).

    Step 4 is what a known level's prediction gains from: the fold models each saw only
    ``(cv - 1) / cv`` of the levels, and their out-of-fold error, added to the noise,
    blurs a level's mean residual; the model fitted on all rows errs less, so the modes of
    its residuals are closer. The variance components stay those estimated out of fold,
    where ``f`` could not take up a group's effect; and ``f``'s target has the groups'
    effects removed, so the model on all rows finds little of them left to absorb.
    ``f`` of new rows (``regressor_``) is the mean, half and half, of the model on all
    rows and of the mean of the last round's fold models: it varies less than either, as
    bagging's does. The cost is ``cv`` fits of ``f`` on ``(cv - 1) / cv`` of the rows per
    round, plus one on all rows, and three fits of the linear mixed model.

    A flexible ``f`` fitted to the rows of a group learns that group's offset, and the
    in-sample residuals then hide it from the mixed model (the group variance shrinks
    towards 0, and with it the random effects): the classic failure of backfitting with
    a forest or boosting. Out of fold, no residual was fitted to its own group.

    Parameters
    ----------
    regressor : estimator, default=None
        The fixed part ``f``: any regressor with ``fit`` and ``predict``, cloned for every
        fit. None: ``HistGradientBoostingRegressor(random_state=0)``. Give a random
        estimator a fixed ``random_state``: backfitting stops when its predictions settle.
    random_slopes : None, list or dict, default=None
        Columns of X that get a random slope, as :class:`MixedLinearRegressor`'s: a list
        for one grouping factor, a dict ``{factor: [columns]}`` for several. They stay
        features of ``f`` too.
    random_intercept : bool, default=True
        Whether every grouping factor has a random intercept.
    covariance : {"unstructured", "diagonal"}, default="unstructured"
        Correlated or uncorrelated random effects within a factor.
    group_columns : None, str, int or list, default=None
        Columns of X that hold grouping factors; they are not features of ``f``.
    linear_part : bool, default=True
        Fit ``y = c f(X) + X beta + Z b``: a linear fixed part in every feature of ``f``
        (which must then all be numeric) estimated by the linear mixed model, ``f`` fitted
        to what is left, and ``f``'s weight ``c`` estimated out of fold. False:
        ``y = f(X) + Z b``, ``f`` carrying the whole fixed part (for features only ``f``'s
        own pipeline can read, such as strings).
    cv : int or None, default=2
        Folds of the first grouping factor's levels for the out-of-fold predictions
        (their cost grows with ``cv``, ``cv`` fits of ``f`` a round, plus one; the accuracy on
        known levels grows a little with it, as the mean of more fold models varies less).
        None: in-sample residuals (the classic backfitting, which lets a flexible ``f``
        absorb the group effects; for comparison).
    unseen_levels : {"average", "zero", "error"}, default="average"
        Rows of levels not seen in ``fit``: ``f(X)`` (random effects 0; "average" and
        "zero" are the same here), or raise.
    missing_groups : {"warn", "population", "error"}, default="warn"
        ``predict`` without any groups: ``f(X)`` for every row, with a warning, quietly,
        or an error (see :class:`MixedLinearRegressor`).
    max_iter : int, default=1
        Backfitting rounds after the start (at most, with ``tol``).
    tol : float or None, default=None
        None: run exactly ``max_iter`` rounds. A float: stop when the root mean square
        change of the random part over the training rows, relative to the residual
        standard deviation, is at most ``tol``, and warn if ``max_iter`` rounds do not
        get there. A tree ensemble's fit jumps with small changes of its target, so the
        iteration settles into a band (of about 0.1 residual standard deviations for
        gradient boosting on the benchmark's simulation) rather than on a point; the
        first round from the linear mixed model's start gets most of the way.
    verbose : int, default=0
        Print every iteration when > 0.

    Attributes
    ----------
    regressor_ : FoldAverage or estimator
        ``f``: half the last model fitted on all rows, half the mean of the ``cv`` fold
        models of the last round (for ``cv=None``, the last round's one model).
    mixed_model_ : MixedLinearRegressor
        The last mixed model fitted to ``y - c f(X)`` out of fold, with the conditional
        modes and fixed effects of step 4 (for ``cv=None``, as fitted); its variance
        components, log-likelihood and standard errors are the out-of-fold fit's. With the
        linear part its fixed effects are ``beta`` (and the intercept); without it they
        (an intercept and the slope columns) only keep the random effects centred, and
        ``f`` carries the fixed part in predictions.
    f_coefficient_ : float
        ``c``, the weight of ``f`` in predictions (1 without the linear part).
    random_effects_ : dict of str to DataFrame
        Conditional modes: one row per level, one column per term.
    random_covariance_ : dict of str to DataFrame
        Covariance of each factor's random effects.
    residual_variance_ : float
        sigma^2, from the out-of-fold residuals.
    n_iter_ : int
        Backfitting rounds run.
    converged_ : bool or None
        Whether the criterion (``tol``) was met within ``max_iter`` rounds; None when
        ``tol`` is None (a fixed number of rounds).
    iteration_log_ : DataFrame
        One row per iteration: the change of the mixed model's part (relative, as ``tol``),
        ``c``, the residual variance, each random-effect variance, the mixed model's log-likelihood
        and the seconds taken.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    MixedLinearRegressor : the linear mixed model, for a linear ``f``.
    MixedEffectsClassifier : the same for binary outcomes.

    Notes
    -----
    With ``f`` a ``LinearRegression`` the fixed point is close to the linear mixed
    model's maximum likelihood fit: the residuals come from fold models fitted to the
    other folds' levels, whose extra error (of relative order ``p / n_levels``) enlarges
    the residual variance slightly; ``residual_variance_`` is f's out-of-fold error plus
    the noise, the variance a prediction for a known level has.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlm import MixedEffectsRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = rng.integers(0, 30, 600)
    >>> X = rng.uniform(size=(600, 2))
    >>> y = np.sin(6 * X[:, 0]) + X[:, 1] + rng.normal(0, 1, 30)[g] + rng.normal(0, 0.3, 600)
    >>> m = MixedEffectsRegressor().fit(X, y, groups=g)
    >>> m.n_iter_
    1
    >>> float(np.sqrt(m.random_covariance_["group"].iloc[0, 0])) > 0.5
    True
    """

    _parameter_constraints = {
        "regressor": [HasMethods(["fit", "predict"]), None],
        **_PARAMETER_CONSTRAINTS,
        "tol": [Interval(Real, 0, None, closed="neither"), None],
        "linear_part": ["boolean"],
    }

    def __init__(
        self, regressor=None, *, random_slopes=None, random_intercept=True, covariance="unstructured",
        group_columns=None, linear_part=True, cv=2, unseen_levels="average", missing_groups="warn", max_iter=1,
        tol=None, verbose=0,
    ):
        self.regressor = regressor
        self.linear_part = linear_part
        self.random_slopes = random_slopes
        self.random_intercept = random_intercept
        self.covariance = covariance
        self.group_columns = group_columns
        self.cv = cv
        self.unseen_levels = unseen_levels
        self.missing_groups = missing_groups
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    def _regressor(self):
        return HistGradientBoostingRegressor(random_state=0) if self.regressor is None else self.regressor

    def _mixed_model(self):
        return MixedLinearRegressor(
            random_slopes=self._mixed_slopes(), random_intercept=self.random_intercept, covariance=self.covariance,
            reml=False, unseen_levels=self.unseen_levels, missing_groups="population",
        )

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit ``f`` and the random effects by backfitting.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Features of ``f`` (and the grouping columns named by ``group_columns``).
        y : array-like of shape (n_samples,)
        groups : array-like, Series or DataFrame, default=None
            One grouping factor (1-d) or several (2-d, one column each). Required
            unless ``group_columns`` names them in X.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights: of the mixed model (``residual_variance_ / w`` per row) and
            passed to ``f``'s ``fit``, which must accept them.

        Returns
        -------
        self
        """
        X_rest, g, Xs = self._split_input(X, groups, reset=True)
        n = Xs.shape[0]
        y, w = validate_y_weights(y, sample_weight, n)
        if np.ptp(y) == 0:
            raise ValueError("y is constant: there is nothing to fit")
        regressor = self._regressor()
        self._check_weights(regressor, sample_weight)
        w_f = None if sample_weight is None else w
        fold = self._folds(g, n)
        start = time.perf_counter()
        mixed = self._mixed_model().fit(Xs, y, groups=g, sample_weight=w_f)  # f constant: the mixed model alone
        part = target_part = self._mixed_part(mixed, Xs, g)
        log = [self._log_row(0, np.nan, mixed, 0.0, time.perf_counter() - start)]
        converged = False
        for it in range(1, self.max_iter + 1):
            start = time.perf_counter()
            models, f_hat = self._cross_fit(regressor, X_rest, y - target_part, w_f, fold)
            f_coef = self._f_coefficient(Xs, y, f_hat, g, w_f)
            mixed = self._mixed_model().fit(Xs, y - f_coef * f_hat, groups=g, sample_weight=w_f)
            new = self._mixed_part(mixed, Xs, g)
            sigma = np.sqrt(mixed.residual_variance_)
            change = np.sqrt(np.mean((new - part) ** 2)) / sigma if sigma > 0 else np.inf
            part = new
            target_part = RELAXATION * new + (1 - RELAXATION) * target_part
            log.append(self._log_row(it, change, mixed, f_coef, time.perf_counter() - start))
            if self.verbose:
                print(f"iteration {it}: change {change:.3g}, residual variance {mixed.residual_variance_:.4g}")
            if self.tol is not None and change <= self.tol:
                converged = True
                break
        if self.tol is not None and not converged:
            warnings.warn(
                f"backfitting stopped after max_iter={self.max_iter} iterations with the random part still "
                f"changing by {change:.3g} residual standard deviations (tol={self.tol}): increase max_iter, or "
                "give the regressor a fixed random_state if its fits vary from run to run",
                ConvergenceWarning, stacklevel=2,
            )
        if fold is None:  # in sample: the last round's f
            self.regressor_ = models[0]
        else:  # f on all rows, the modes of its residuals at the variance components out of fold
            full = self._fit_on(regressor, X_rest, y - part, w_f)
            mixed = self._modes_at_covariance(mixed, Xs, y - f_coef * full.predict(X_rest), g, w_f)
            self.regressor_ = FoldAverage([full] * len(models) + list(models))
        self.mixed_model_ = mixed
        self.f_coefficient_ = f_coef
        self.n_iter_ = it
        self.converged_ = converged if self.tol is not None else None
        self.iteration_log_ = pd.DataFrame(log).set_index("iteration")
        self._views = {}
        return self

    def _f_coefficient(self, Xs, y, f_hat, g, w):
        """``c`` of ``y = c f(X) + X beta + Z b``: the linear mixed model's ML coefficient of the
        out-of-fold predictions ``f_hat`` beside the features (``linear_part``); 1 otherwise.

        Out of fold, ``f_hat`` is judged on groups its model never saw: ``c`` near 1 when ``f``
        finds structure the linear part misses, near 0 when it fits only noise (then the fit
        is the linear mixed model's), as stacking weighs a learner by its held-out error.
        ``f_hat`` is the design's last column: when it is a linear combination of the
        features (a linear ``f`` in sample), it is the column dropped as aliased, and ``c = 0``
        is the same fit (the features' ``beta`` takes it up); the features' own aliasing is
        reported by the other fits."""
        if not self.linear_part:
            return 1.0
        D = Xs.copy()
        D[F_COLUMN] = f_hat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(self._mixed_model().fit(D, y, groups=g, sample_weight=w).coef_[-1])

    def _mixed_part(self, mixed, Xs, g, unseen_levels=None):
        """What the mixed model adds to ``f``: ``X beta + Z b`` with ``linear_part`` (its
        intercept included), else ``Z b`` (its intercept and slopes' fixed effects only
        centre the random effects; ``f`` carries the fixed part)."""
        if self.linear_part:  # groups None: the fixed part (the mixed model's missing_groups="population")
            return mixed.predict(Xs, groups=g, unseen_levels=unseen_levels)
        return self._random_part(mixed, Xs, g, unseen_levels)

    def _modes_at_covariance(self, mixed, Xs, residuals, g, w):
        """A copy of the mixed model ``mixed`` with the conditional modes (and fixed effects)
        of ``residuals`` at its variance components (its ``theta_``; its covariances and
        residual variance are kept).

        The variance components come from out-of-fold residuals, where ``f`` cannot hide a
        group's effect; the modes from the residuals of ``f`` fitted on all rows, whose error
        is smaller than that of the fold models (fitted on fewer levels each): less noise in
        a level's mean residual, closer modes. ``f``'s target had the random part removed
        already, so its fit cannot take up the groups' effects, only what was left of them."""
        fresh = self._mixed_model()
        d = fresh._prepare_fit(Xs, residuals, g, w)
        statistics = fresh._statistics_of(d)
        est = LinearMixedModel(statistics, reml=False).estimates(mixed.theta_)
        scale = statistics.y_scale  # the statistics hold y / y_scale: see skmlm._core.search.response_scale
        out = copy.deepcopy(mixed)
        out._set_fixed_effects(est["beta"] * scale)
        covariances = {name: cov.to_numpy() for name, cov in mixed.random_covariance_.items()}
        out._store_random_effects(d["factors"], {k: v * scale for k, v in est["random_effects"].items()}, covariances)
        return out

    def _cross_fit(self, regressor, X, target, w, fold):
        """``(models, predictions)``: ``f`` fitted on each fold's complement and its predictions of
        the fold's rows; for ``cv=None``, one model fitted on all rows and its in-sample predictions."""
        if fold is None:
            model = self._fit_on(regressor, X, target, w)
            return [model], model.predict(X)
        out, models = np.empty(len(target)), []
        for k in range(self.cv):
            test = fold == k
            models.append(self._fit_on(regressor, X, target, w, np.flatnonzero(~test)))
            out[test] = models[-1].predict(X.iloc[test] if hasattr(X, "iloc") else X[test])
        return models, out

    @staticmethod
    def _log_row(it, change, mixed, f_coef, seconds):
        row = {"iteration": it, "change": change, "f_coefficient": f_coef,
               "residual_variance": mixed.residual_variance_}
        for f, cov in mixed.random_covariance_.items():
            for term in cov.index:
                row[f"var {f}: {term}"] = float(cov.loc[term, term])
        row["log_likelihood"] = mixed.log_likelihood_
        row["seconds"] = seconds
        return row

    @property
    def residual_variance_(self):
        """Residual variance sigma^2 (for a row of weight 1), from the out-of-fold residuals."""
        check_is_fitted(self)
        return self.mixed_model_.residual_variance_

    def predict(self, X, groups=None, unseen_levels=None):
        """``f(X)`` plus the random effects of known levels (``f(X)`` for unseen ones).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        groups : array-like, Series or DataFrame, default=None
            Grouping factors of the rows, as in ``fit`` (or none, with ``group_columns``).
        unseen_levels : {"average", "zero", "error"} or None, default=None
            Overrides the estimator's ``unseen_levels`` for this call.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X_rest, g, Xs = self._groups_for_predict(X, groups)
        pred = self.f_coefficient_ * np.asarray(self.regressor_.predict(X_rest), dtype=float)
        if g is None and not self.linear_part:
            return pred
        return pred + self._mixed_part(self.mixed_model_, Xs, g, unseen_levels or self.unseen_levels)

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of :meth:`predict` (with ``groups``, or ``group_columns``) against y."""
        return r2_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class MixedEffectsClassifier(ClassifierMixin, _MixedEffectsBase):
    """Random intercepts and slopes on top of any scikit-learn binary classifier.

    Fits ``logit P(y = 1) = a + c f(X) + X beta + Z b`` (with ``linear_part``; otherwise
    ``beta`` only for the columns with a random slope), with ``f`` the log-odds of any
    scikit-learn classifier (gradient boosting by default), by the logistic mixed model
    (:class:`MixedLogisticClassifier`, Laplace) with ``f``'s log-odds as a covariate:

    0. the logistic mixed model alone (on the features, or on the slope columns without
       the linear part): each row's random part
       ``o = Z b``, and the classifier's sample weights ``exp(-o / 2)`` for ``y = 1``,
       ``exp(o / 2)`` for ``y = 0`` (``conditional=True``). A row's odds are
       ``exp(f + o)``; so weighted, the expected odds of the rows at ``x`` are ``exp(f(x))``
       whatever their groups' ``o``: the classifier learns the log-odds given the group,
       as a fit with ``o`` as offset would (scikit-learn's classifiers take no offset),
       and not the log-odds averaged over the groups, which a binary outcome's group
       effects flatten (and which fit the data less closely);
    1. ``f``'s log-odds of every row, out of fold: the levels of the first grouping factor
       are split into ``cv`` folds and each fold is predicted by the classifier fitted on
       the others, so no group's outcomes are hidden in the log-odds of its own rows;
    2. the logistic mixed model of ``y`` on the features and those log-odds, with the
       random effects: its variance components and modes are the answer; its coefficient
       ``c`` corrects an over- or under-confident classifier, as a calibration would (and,
       with ``conditional=False``, turns log-odds averaged over the groups into log-odds
       given the group); beside the features' linear part, ``c`` is the classifier's
       weight, judged on groups its model never saw (near 0 when it adds only noise to
       the linear part: the fit is then the logistic mixed model's);
    3. ``f`` of new rows is the mean of the fold classifiers' log-odds (``classifier_``).

    Unlike the regressor's ``f``, the classifier learns the whole log-odds given the
    group, not what the linear part leaves: weights can take out an offset only at a
    cost in variance that grows with its spread, small for the random part alone.
    The cost is one fit of the classifier per fold, with weights, and two fits of the
    logistic mixed model. More rounds of 0-2 (weights from the random part of step 2)
    did not lower the test log-loss further on the benchmark.

    Parameters
    ----------
    classifier : estimator, default=None
        Any binary classifier with ``fit`` and ``predict_proba``, cloned for every fit
        (with ``conditional=True``, its ``fit`` must take ``sample_weight``; a ``Pipeline``
        passes them to its last step). None:
        ``HistGradientBoostingClassifier(early_stopping=True, max_bins=63,
        random_state=0)``: its number of trees chosen on held-out rows, as gradient
        boosting with random effects chooses its rounds. Its log-odds are the mixed
        model's covariate, and a binary outcome's noise makes a boosting run to its full
        100 trees over-confident: noisy log-odds, whose coefficient the mixed model can
        only shrink as a whole. 63 bins per feature rather than 255: with sample weights,
        scikit-learn finds each bin's edge by a weighted percentile of its own, a cost
        that grows with the bins and dominated the fit with 255 (fewer bins did not
        change the benchmark's test log-loss).
    random_slopes, random_intercept, covariance, group_columns, missing_groups
        As :class:`MixedEffectsRegressor`'s.
    linear_part : bool, default=True
        A linear fixed part in every feature (which must then all be numeric) beside the
        classifier's log-odds in the logistic mixed model. False: fixed effects for the
        log-odds and the slope columns only.
    cv : int or None, default=5
        Folds of the first grouping factor's levels for the out-of-fold log-odds (the
        classifier is fitted once per fold and not refitted on all rows); None: in sample.
    conditional : bool, default=True
        Fit the classifier with the weights of step 0, so that its log-odds are those
        given the group. False: unweighted (prior weights only), for a classifier whose
        ``fit`` takes no ``sample_weight``; its log-odds then average over the groups and
        the mixed model rescales them.
    unseen_levels : {"average", "zero", "error"}, default="average"
        Rows of levels not seen in ``fit``: ``"average"``, the probability averaged over
        the fitted distribution of the random effects (for a new group drawn from the
        population); ``"zero"``, at random effect 0; ``"error"``: raise.
    max_iter : int, default=1000
        Largest number of iterations of the logistic mixed model's optimiser.
    tol : float, default=1e-6
        Its convergence tolerance (see :class:`MixedLogisticClassifier`).
    verbose : int, default=0

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    classifier_ : FoldAverage or estimator
        The fold classifiers, whose log-odds are averaged (the one classifier fitted on
        all rows for ``cv=None``).
    mixed_model_ : MixedLogisticClassifier
        The logistic mixed model on the features and the out-of-fold log-odds.
    f_coefficient_ : float
        ``c``, the coefficient of the log-odds (the mixed model's last ``coef_``).
    random_effects_, random_covariance_ : dict of str to DataFrame
        Conditional modes and covariances of the random effects (log-odds scale).
    n_iter_ : int
        The mixed model's optimiser iterations.
    converged_ : bool
        Whether the mixed model's optimiser converged.
    family_ : Family
        The binomial family (logit link).
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    MixedLogisticClassifier : the logistic mixed model, for a linear ``f``.
    MixedEffectsRegressor : the same for continuous outcomes, by backfitting.
    """

    _parameter_constraints = {
        "classifier": [HasMethods(["fit", "predict_proba"]), None],
        **_PARAMETER_CONSTRAINTS,
        "conditional": ["boolean"],
        "linear_part": ["boolean"],
    }

    def __init__(
        self, classifier=None, *, random_slopes=None, random_intercept=True, covariance="unstructured",
        group_columns=None, linear_part=True, cv=5, conditional=True, unseen_levels="average", missing_groups="warn",
        max_iter=1000, tol=1e-6, verbose=0,
    ):
        self.classifier = classifier
        self.linear_part = linear_part
        self.random_slopes = random_slopes
        self.random_intercept = random_intercept
        self.covariance = covariance
        self.group_columns = group_columns
        self.cv = cv
        self.conditional = conditional
        self.unseen_levels = unseen_levels
        self.missing_groups = missing_groups
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    def _classifier(self):
        if self.classifier is None:
            return HistGradientBoostingClassifier(early_stopping=True, max_bins=63, random_state=0)
        return self.classifier

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit the classifier out of fold (weighted by the random part of the logistic mixed model
        alone) and the logistic mixed model on its log-odds.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two labels of any type.
        groups : array-like, Series or DataFrame, default=None
            One grouping factor (1-d) or several (2-d). Required unless ``group_columns``
            names them in X.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights of the mixed model, passed to the classifier's ``fit`` too.

        Returns
        -------
        self
        """
        X_rest, g, Xs = self._split_input(X, groups, reset=True)
        n = Xs.shape[0]
        self.classes_, y01 = self._encode_y(y, n)
        classifier = self._classifier()
        self._check_weights(classifier, sample_weight)
        if self.conditional and weight_parameter(classifier) is None:
            raise ValueError(
                f"conditional=True fits the classifier with weights that remove the groups' effects, but "
                f"{type(classifier).__name__}.fit does not accept sample_weight: wrap a classifier that does, or set "
                "conditional=False (the classifier's log-odds then average over the groups)"
            )
        w = None if sample_weight is None else validate_y_weights(y01, sample_weight, n)[1]
        fold = self._folds(g, n)
        w_f = self._conditional_weights(Xs, y01, g, w)
        if fold is None:
            models = [self._fit_on(classifier, X_rest, y01, w_f)]
            log_odds = self._log_odds(models[0], X_rest)
        else:
            log_odds, models = np.empty(n), []
            for k in range(self.cv):
                test = fold == k
                train = np.flatnonzero(~test)
                if np.ptp(y01[train]) == 0:
                    raise ValueError(
                        f"the rows outside fold {k} of cv={self.cv} have one class only: the classifier cannot be "
                        "fitted there. Use fewer folds (cv) or more groups"
                    )
                models.append(self._fit_on(classifier, X_rest, y01, w_f, train))
                log_odds[test] = self._log_odds(models[-1], X_rest.iloc[test] if hasattr(X_rest, "iloc") else X_rest[test])
        self.mixed_model_ = self._mixed_model().fit(self._design(log_odds, Xs), y01, groups=g, sample_weight=w)
        self.classifier_ = models[0] if len(models) == 1 else FoldAverage(models)
        self.family_ = self.mixed_model_.family_
        self.n_iter_ = self.mixed_model_.n_iter_
        self.converged_ = self.mixed_model_.converged_
        self.f_coefficient_ = float(self.mixed_model_.coef_[-1])
        self._views = {}
        return self

    def _conditional_weights(self, Xs, y01, g, w):
        """The classifier's sample weights: ``w`` (None: 1) times ``exp(-(2 y - 1) o / 2)``, with
        ``o`` each row's random part ``Z b`` in the logistic mixed model alone (on the slope
        columns); ``w`` as given for ``conditional=False``.

        A row of linear predictor ``f + o`` has odds ``exp(f + o)``; weighting its ``y = 1``
        by ``exp(-o / 2)`` and its ``y = 0`` by ``exp(o / 2)`` makes the expected weighted
        odds ``exp(f)``, whatever ``o``: a classifier fitted to these weights estimates the
        log-odds given the group, as a fit with ``o`` as offset would (scikit-learn's
        classifiers take no offset), not the log-odds averaged over the groups."""
        if not self.conditional:
            return w
        start = self._mixed_model().fit(Xs, y01, groups=g, sample_weight=w)
        offset = self._random_part(start, Xs, g)
        weights = np.exp(-(2 * y01 - 1) * offset / 2)
        return weights if w is None else weights * w

    @staticmethod
    def _encode_y(y, n):
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y"), warn=True)
        check_classification_targets(y)
        if len(y) != n:
            raise ValueError(f"X has {n} rows but y has {len(y)}")
        classes, y01 = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {type_of_target(y)}: "
                f"MixedEffectsClassifier needs y of two classes; it has {len(classes)}"
            )
        return classes, y01.astype(float)

    def _mixed_model(self):
        slopes = self._mixed_slopes()
        return MixedLogisticClassifier(
            random_slopes=slopes, random_intercept=self.random_intercept, covariance=self.covariance,
            unseen_levels=self.unseen_levels, missing_groups="population", max_iter=self.max_iter, tol=self.tol,
            verbose=self.verbose,
        )

    @staticmethod
    def _log_odds(model, X):
        """The log-odds of ``P(y = 1)`` of a fitted classifier, its probabilities clipped to
        ``[PROBABILITY_EPS, 1 - PROBABILITY_EPS]``."""
        if isinstance(model, FoldAverage):  # the mean of the fold models' log-odds
            return np.mean([MixedEffectsClassifier._log_odds(m, X) for m in model.estimators], axis=0)
        p = model.predict_proba(X)[:, list(model.classes_).index(1.0)]
        return logit(np.clip(p, PROBABILITY_EPS, 1 - PROBABILITY_EPS))

    @staticmethod
    def _design(log_odds, Xs):
        """The mixed model's X: the features (or the slope columns), then the log-odds (last,
        so that log-odds in the features' span are the column dropped as aliased)."""
        D = Xs.copy()
        D[LOG_ODDS] = log_odds
        return D

    def predict_proba(self, X, groups=None, unseen_levels=None):
        """Probabilities of ``classes_``: given the random effects of known levels, averaged
        over the random effects for unseen levels (see ``unseen_levels``).

        Returns
        -------
        ndarray of shape (n_samples, 2)
        """
        check_is_fitted(self)
        X_rest, g, Xs = self._groups_for_predict(X, groups)
        D = self._design(self._log_odds(self.classifier_, X_rest), Xs)
        return self.mixed_model_.predict_proba(D, groups=g, unseen_levels=unseen_levels)

    def predict_log_proba(self, X, groups=None, unseen_levels=None):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X, groups=groups, unseen_levels=unseen_levels))

    def decision_function(self, X, groups=None, unseen_levels=None):
        """Log-odds of ``classes_[1]`` of :meth:`predict_proba`."""
        p1 = np.clip(self.predict_proba(X, groups=groups, unseen_levels=unseen_levels)[:, 1], 1e-300, 1 - 1e-16)
        return logit(p1)

    def predict(self, X, groups=None, unseen_levels=None):
        """The more probable class of each row."""
        p1 = self.predict_proba(X, groups=groups, unseen_levels=unseen_levels)[:, 1]
        return self.classes_[(p1 > 0.5).astype(int)]

    def score(self, X, y, groups=None, sample_weight=None):
        """Accuracy of :meth:`predict` against y."""
        return accuracy_score(y, self.predict(X, groups=groups), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_class = False
        return tags
