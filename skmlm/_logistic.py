"""MixedLogisticClassifier: binary outcomes by Laplace or adaptive quadrature, as lme4's ``glmer``."""

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from scipy.special import logit
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, column_or_1d

from ._base import SHARED_PARAMETER_CONSTRAINTS, fitted_view
from ._core.family import get_family
from ._generalized import GeneralizedMixin, population_average_mean
from ._input import INTERCEPT, validate_X

#: |fixed-effect linear predictor| beyond which a fitted probability is 0 or 1 numerically.
SEPARATION_ETA = 15.0


def _two_numeric_labels(y):
    """``(y, classes, codes)`` when ``y`` is a 1-d numeric array or Series of at most two
    finite, whole-valued labels (what scikit-learn's checks accept as binary), else None:
    then those checks run and explain what is wrong."""
    values = y.to_numpy() if isinstance(y, pd.Series) else y
    if not (isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "biuf" and len(values)):
        return None
    classes, codes = np.unique(values, return_inverse=True)
    if len(classes) > 2 or (values.dtype.kind == "f" and not np.all(np.isfinite(classes) & (classes == np.round(classes)))):
        return None
    return values, classes, codes


def _check_missing_labels(y):
    """A clear error for missing labels (None, NaN, pd.NA, NaT) in y, which would otherwise
    fail inside ``np.unique`` (None does not sort among strings)."""
    values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y
    if not isinstance(values, np.ndarray):
        try:
            values = np.asarray(values, dtype=object)
        except (TypeError, ValueError):  # ragged input: check_array explains
            return
    if values.dtype.kind in "biuc":  # cannot hold a missing value
        return
    missing = pd.isna(values)
    if np.any(missing):
        n_missing = int(np.count_nonzero(missing))
        raise ValueError(
            f"y has missing labels in {n_missing} rows (None or NaN): a classifier needs a label for every "
            "row; drop those rows (with their X and groups) before fitting"
        )


class MixedLogisticClassifier(GeneralizedMixin, ClassifierMixin, BaseEstimator):
    """Binary logistic mixed-effects model (lme4's ``glmer``, binomial) as a classifier.

    Fits ``logit P(y = 1) = X beta + Z b`` with random intercepts and slopes per level
    of one or more grouping factors (crossed or nested), ``b ~ N(0, Sigma)``, by
    maximum likelihood: the Laplace approximation (lme4's ``nAGQ = 1``) or adaptive
    Gauss-Hermite quadrature (``n_quadrature_points > 1``). The objective is lme4's,
    with the conditional modes converged tightly, so estimates agree with lme4's.

    Parameters
    ----------
    random_slopes : None, list or dict, default=None
        Columns of X that get a random slope. A list (names for a DataFrame, positions
        otherwise) when there is one grouping factor; a dict ``{factor: [columns]}``
        for several. None: random intercepts only.
    random_intercept : bool, default=True
        Whether every grouping factor has a random intercept.
    covariance : {"unstructured", "diagonal"}, default="unstructured"
        Correlated random effects within a factor (lme4's ``(x | g)``) or
        uncorrelated ones (``(x || g)``).
    n_quadrature_points : int, default=1
        1: the Laplace approximation. ``k > 1``: adaptive Gauss-Hermite quadrature
        with ``k`` points per random effect, centred at the conditional modes (lme4's
        ``nAGQ``). Needs a single grouping factor; with random slopes it uses the
        product rule of ``k ** q`` points per level (beyond lme4, which allows one
        scalar random effect only).
    fit_intercept : bool, default=True
        Whether the fixed effects include an intercept.
    group_columns : None, str, int or list, default=None
        Columns of X that hold grouping factors instead of features, so that groups
        travel with X through scikit-learn tools (pipelines, named scorers, searches,
        calibration): the way to give groups that works everywhere. A name also finds
        the column under a ``ColumnTransformer``'s prefix (``"store"`` is
        ``"remainder__store"``) when only one column ends in ``"__store"``.
    unseen_levels : {"average", "zero", "error"}, default="average"
        How :meth:`predict_proba` treats rows whose level of a grouping factor was not
        seen in ``fit``, missing labels (None, NaN) included, and all rows when no groups
        are given. ``"average"``: the population-averaged probability, the random effect
        integrated over its fitted normal distribution. ``"zero"``: the probability at
        random effect 0 (the "typical" level), which is further from 0.5 than the
        population average. ``"error"``: raise for rows with unseen or missing labels, as
        lme4's ``allow.new.levels = FALSE`` (predictions without any groups follow
        ``missing_groups``, as ``"average"``).
    missing_groups : {"warn", "population", "error"}, default="warn"
        When a prediction (or ``score``) gets no groups at all (no ``groups=`` and no
        ``group_columns``), as inside scikit-learn's named scorers, ``GridSearchCV.predict``
        or ``CalibratedClassifierCV`` without metadata routing of groups: every row gets
        the population prediction. ``"warn"``: with a
        :class:`~skmlm.GroupsMissingWarning`, once per fitted model. ``"population"``:
        population predictions are meant; no warning. ``"error"``: raise.
    max_iter : int, default=1000
        Largest number of optimiser iterations, all counted: every Newton or quasi-Newton
        step, every iteration of L-BFGS-B or COBYQA, in both stages of the search and its
        restarts (``n_iter_`` reports them); the inner PIRLS iterations for the
        conditional modes are not counted, nor evaluations that only judge the final
        point. A fit that reaches it before an optimum warns and has ``converged_`` False.
    tol : float, default=1e-6
        Convergence: the largest predicted further decrease of the deviance (Newton
        decrement) accepted at the optimum.
    verbose : int, default=0
        Print every evaluation of the objective when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the one whose probability is modelled.
    intercept_ : float
        Fixed intercept on the log-odds scale (0.0 when ``fit_intercept=False``).
    coef_ : ndarray of shape (n_features,)
        Fixed effects (log-odds ratios) of the feature columns (0 for a column in
        ``dropped_columns_``).
    fixed_effects_ : DataFrame
        Estimate, Std. Error, z value and Pr(>|z|) of every fixed effect.
    coef_cov_ : ndarray
        Covariance matrix of the fixed effects (intercept first), from the Hessian of
        the deviance in ``(theta, beta)`` as lme4's ``vcov``; where that Hessian is not
        positive definite (a fit stopped short of an optimum), from the joint PIRLS system
        at the point reached, as lme4 falls back to ``RX`` (the summary says so).
    random_effects_ : dict of str to DataFrame
        Conditional modes: one row per level, one column per term (log-odds scale).
    random_covariance_ : dict of str to DataFrame
        Covariance matrix of each factor's random effects (lme4's ``VarCorr``).
    log_likelihood_ : float
        Maximised (approximate) log-likelihood, as lme4's ``logLik``.
    deviance_ : float
        ``-2 * log_likelihood_``.
    aic_, bic_ : float
        Information criteria, as lme4's ``AIC``/``BIC``.
    n_params_ : int
        Fixed effects plus covariance parameters.
    icc_ : float
        Intraclass correlation on the latent (logit) scale: the random-effect variance
        averaged over the rows over itself plus ``pi**2 / 3`` (performance's ``icc``).
    n_groups_ : dict of str to int
        Levels per grouping factor.
    converged_ : bool
        Whether the optimiser reached an optimum (Newton decrement below ``tol``).
    singular_ : bool
        Whether the fit is on the boundary (a variance, or a correlation of +-1).
    n_iter_ : int
        Optimiser iterations, all counted (at most ``max_iter``).
    theta_ : ndarray
        lme4's relative covariance factor parameters, factor by factor.
    optimizer_log_ : DataFrame
        Every evaluation of the objective: theta, beta and deviance.
    dropped_columns_ : list of str
        Fixed-effect columns dropped as linear combinations of the columns before them
        (lme4's rank-deficiency check); their ``coef_`` is 0 and they have no row in
        ``fixed_effects_`` or ``coef_cov_``. Empty when none was.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    MixedLinearRegressor : the same for continuous outcomes.

    Notes
    -----
    :meth:`predict_proba` conditions on the random effects (conditional modes) of levels
    seen in ``fit``. For unseen levels and ``groups=None`` it returns, by default, the
    population-averaged probability ``E[expit(x'beta + z'b)]`` over ``b ~ N(0, Sigma)``,
    computed exactly by Gauss-Hermite quadrature over the normal random part of the
    linear predictor (variance ``z' Sigma z`` summed over the unknown factors); this
    is the probability for a new group drawn from the population, and is better
    calibrated for it than the probability at random effect 0 (``unseen_levels="zero"``).

    Examples
    --------
    >>> from skmlm import MixedLogisticClassifier
    >>> from skmlm.datasets import load_cbpp
    >>> df = load_cbpp()
    >>> X = df["period"].str.get_dummies().drop(columns="1").add_prefix("period").astype(float)
    >>> m = MixedLogisticClassifier().fit(X, df["y"], groups=df["herd"])
    >>> round(m.log_likelihood_, 3)
    -277.502
    """

    _parameter_constraints = {
        **SHARED_PARAMETER_CONSTRAINTS,
        "n_quadrature_points": [Interval(Integral, 1, None, closed="left")],
    }

    __metadata_request__predict_proba = {"groups": True, "offset": True}
    __metadata_request__predict_log_proba = {"groups": True, "offset": True}
    __metadata_request__decision_function = {"groups": True, "offset": True}

    def __init__(
        self, *, random_slopes=None, random_intercept=True, covariance="unstructured", n_quadrature_points=1,
        fit_intercept=True, group_columns=None, unseen_levels="average", missing_groups="warn", max_iter=1000,
        tol=1e-6, verbose=0,
    ):
        self.random_slopes = random_slopes
        self.random_intercept = random_intercept
        self.covariance = covariance
        self.n_quadrature_points = n_quadrature_points
        self.fit_intercept = fit_intercept
        self.group_columns = group_columns
        self.unseen_levels = unseen_levels
        self.missing_groups = missing_groups
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    # -- fit -----------------------------------------------------------------------
    @staticmethod
    def _encode_y(y, sample_weight=None):
        """``(classes, 0/1 float y)``; a clear error unless y has exactly two labels."""
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        labels = _two_numeric_labels(y)
        if labels is not None:  # the common case, without scikit-learn's general checks
            y, classes, y01 = labels
        else:
            _check_missing_labels(y)
            y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True, input_name="y")
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            classes, y01 = np.unique(y, return_inverse=True)
        if len(classes) > 2:
            raise ValueError(
                "Only binary classification is supported. The type of the target is "
                f"{type_of_target(y)}: MixedLogisticClassifier is a binary classifier but y has "
                f"{len(classes)} classes {list(classes[:5])}{' ...' if len(classes) > 5 else ''}"
            )
        present = classes
        if sample_weight is not None:
            sw = np.asarray(sample_weight)
            if sw.shape == y.shape and np.issubdtype(sw.dtype, np.number) and np.any(sw > 0):
                present = np.unique(y[sw > 0])
        if len(present) < 2:
            raise ValueError(
                f"y has 1 class ({present[0]}) among rows of positive weight: a binary classifier needs "
                "outcomes of two classes"
            )
        return classes, y01.astype(float)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        """Fit the model by maximum likelihood (Laplace or adaptive quadrature).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Fixed-effect features; may have zero columns (the null model).
        y : array-like of shape (n_samples,)
            Two labels of any type (0/1, booleans, strings).
        groups : array-like, Series or DataFrame, default=None
            One grouping factor (1-d) or several (2-d, one column each). Required
            unless ``group_columns`` names them in X.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights, as lme4's ``weights``: a row of weight ``k`` counts as ``k``
            Bernoulli trials with the same outcome.
        offset : array-like of shape (n_samples,), default=None
            A known term added to the linear predictor (lme4's ``offset()``).

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        if not isinstance(X, pd.DataFrame) and not hasattr(X, "shape"):
            X = np.asarray(X)
        validated_X = validate_X(self, X, reset=True)  # X errors before y errors, as scikit-learn
        classes, y01 = self._encode_y(y, sample_weight)
        self.classes_ = classes
        return self._fit_family(X, y01, groups, sample_weight, offset, get_family("binomial"), validated_X=validated_X)

    @fitted_view
    def icc_(self):
        """Intraclass correlation on the latent (logit) scale: residual variance pi^2/3, as
        performance::icc."""
        return self._var_random / (self._var_random + np.pi**2 / 3)

    def _after_fit(self, model, est, d):
        self._separated = False
        self._check_separation(est, d)
        self._check_random_separation(d)
        if self._separated:
            self.converged_ = False  # the maximum likelihood estimate does not exist

    def _check_separation(self, est, d):
        """Warn when fixed effects drift to infinity (complete or quasi-complete separation)."""
        Xf = d["Xf"]
        beta = self._beta()
        fixed = Xf @ beta if Xf.shape[1] else np.zeros(len(d["y"]))
        if Xf.shape[1] == 0 or np.abs(fixed).max() < SEPARATION_ETA:
            return
        contrib = np.abs(Xf * beta).max(axis=0)
        names = [self._fixed_names[j] for j in np.argsort(-contrib)[: min(3, len(beta))] if contrib[j] >= SEPARATION_ETA]
        self._separated = True
        warnings.warn(
            "the outcome is (quasi-)completely separated: some fitted probabilities are numerically "
            f"0 or 1 and the fixed effects {names} grow without bound (their maximum likelihood estimate "
            "is infinite). The fit is finite but those coefficients and their standard errors are not "
            "meaningful; remove or merge the separating predictor, or use a penalised model",
            UserWarning, stacklevel=3,
        )

    def _check_random_separation(self, d):
        """Warn when random effects drift to infinity: levels whose outcomes are all equal
        get effects that make their fitted probabilities numerically 0 or 1, as when the
        outcome is constant within every level and the variance grows without bound.

        Levels whose outcomes are all equal are common in ordinary data (few rows per
        level, probabilities near 0 or 1) and harmless: their effects are shrunk towards 0
        by the fitted distribution. Only effects beyond ``SEPARATION_ETA`` are reported.
        """
        for f, (_, _, _, modes, cov) in zip(d["factors"], self._random_parts):
            if f.q == 1 and f.terms[0] == INTERCEPT:  # the common case: the effects themselves
                if not np.abs(modes).max(initial=0.0) >= SEPARATION_ETA:
                    continue
                part = modes[f.codes, 0]
            else:
                part = np.einsum("ij,ij->i", f.z, modes[f.codes])
            big = np.abs(part) >= SEPARATION_ETA
            if not big.any():
                continue
            n_rows = np.bincount(f.codes, minlength=f.n_levels)
            ones = np.bincount(f.codes, weights=d["y"], minlength=f.n_levels)
            levels = np.zeros(f.n_levels, dtype=bool)
            levels[f.codes[big]] = True
            pure = int(np.count_nonzero(levels & ((ones == 0) | (ones == n_rows))))
            sd = np.sqrt(np.diag(cov))
            self._separated = True
            warnings.warn(
                f"grouping factor {f.name!r}: its random effects separate the outcomes: {int(levels.sum())} of "
                f"{f.n_levels} levels ({pure} with every outcome equal) have effects that make their fitted "
                f"probabilities numerically 0 or 1, and the variance of the random effects grows without bound "
                f"(standard deviation {', '.join(f'{v:.3g}' for v in sd)} on the logit scale; its maximum "
                "likelihood estimate is infinite). The fit is finite but that variance and those levels' effects "
                "are not meaningful; the grouping factor predicts the outcome by itself (consider it as a fixed "
                "effect, or merge levels)",
                UserWarning, stacklevel=3,
            )

    # -- prediction ----------------------------------------------------------------
    def predict_proba(self, X, groups=None, unseen_levels=None, offset=None):
        """Probabilities of ``classes_``: conditional on the random effects of known levels.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        groups : array-like, Series or DataFrame, default=None
            Grouping factors of the rows, as in ``fit`` (or none, with ``group_columns``).
            Rows of levels seen in ``fit`` use those levels' conditional modes; labels are
            matched by value, or by their text when their type differs from fit's (as
            lme4's factors). For levels not seen and missing labels, and for every row when
            ``groups=None`` (which warns, see ``missing_groups``), the random effect is
            unknown: by default the probability is
            the population average, integrated over the fitted distribution of the random
            effects (not the probability at random effect 0, which ``unseen_levels="zero"``
            gives). With several factors, known ones are conditioned on and unknown ones
            integrated over.
        unseen_levels : {"average", "zero", "error"} or None, default=None
            Overrides the estimator's ``unseen_levels`` for this call.
        offset : array-like of shape (n_samples,), default=None
            The rows' offsets, as in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, 2)
        """
        p1 = self._mean(X, groups, unseen_levels, offset)
        return np.column_stack([1.0 - p1, p1])

    def predict_log_proba(self, X, groups=None, unseen_levels=None, offset=None):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X, groups=groups, unseen_levels=unseen_levels, offset=offset))

    def decision_function(self, X, groups=None, offset=None, unseen_levels=None):
        """Log-odds of ``classes_[1]`` of :meth:`predict_proba`; positive predicts ``classes_[1]``.

        For known levels this is the linear predictor with their random effects.
        ``unseen_levels`` overrides the estimator's for this call.
        """
        eta, var = self._eta_and_variance_for(X, groups, unseen_levels, offset)
        if not np.any(var > 0):
            return eta
        p1 = np.clip(population_average_mean(self.family_, eta, var), 1e-300, 1 - 1e-16)
        return np.where(var > 0, logit(p1), eta)

    def predict(self, X, groups=None, offset=None, unseen_levels=None):
        """The more probable class of each row (see :meth:`predict_proba`)."""
        eta, _ = self._eta_and_variance(X, groups, offset, unseen_levels)
        # the population average is > 1/2 exactly when eta > 0 (symmetry of the logistic)
        return self.classes_[(eta > 0).astype(int)]

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        """Accuracy of :meth:`predict` (with ``groups``) against y."""
        return accuracy_score(y, self.predict(X, groups=groups, offset=offset), sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True  # made dense: see skmlm._input.validate_X
        tags.classifier_tags.multi_class = False
        return tags
