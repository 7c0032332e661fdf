"""MixedLinearRegressor: linear mixed models by ML or REML, as lme4's ``lmer``."""

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score

from sklearn.utils.validation import check_is_fitted

from ._base import SHARED_PARAMETER_CONSTRAINTS, MixedModelMixin, fitted_view, mean_random_variance, not_converged_message
from ._inference import InferenceMixin
from ._input import check_identifiable, independent_columns_of_cross_products, validate_X
from ._core.design import split_theta
from ._core.search import fit_lmm, response_scale
from ._core.statistics import LinearMixedStatistics
from ._threads import single_blas_thread

#: lme4's ``isSingular`` tolerance on the variance parameters of ``theta``.
SINGULAR_TOL = 1e-4

#: The quantiles of the scaled residuals in the summary.
RESIDUAL_QUANTILES = [0, 0.25, 0.5, 0.75, 1]


def is_dask_collection(x):
    """Whether ``x`` is a Dask collection (without importing Dask). The method is looked up
    on the type: on a pandas DataFrame an attribute lookup on the instance searches its
    columns first, a cost every in-memory fit would pay."""
    return callable(getattr(type(x), "__dask_graph__", None)) and x.__dask_graph__() is not None


def quartiles(values):
    """``np.quantile(values, RESIDUAL_QUANTILES)`` (its default, linear interpolation, with
    the same arithmetic), sorting ``values`` in place (the caller's temporary): at the
    sizes of an in-memory fit a sort costs about what a partition at the three inner
    quantiles and the reductions for the other order statistics cost together, far less
    than ``np.quantile``'s general machinery, which a small fit would pay at every ``fit``."""
    values.sort()
    n = len(values)
    out = []
    for q in RESIDUAL_QUANTILES:  # five numbers: numpy's _lerp, in Python floats (the same IEEE arithmetic)
        i = int(q * (n - 1))  # q (n - 1) is exact: quarters of an integer
        t = q * (n - 1) - i
        a, b = values.item(i), values.item(min(i + 1, n - 1))  # Python floats, no numpy scalars
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return np.array(out)


def fixed_part(X, beta):
    """``X @ beta`` (one column: a scaled copy of it, as numpy's matrix-vector product of
    an ``(n, 1)`` matrix loops over the rows)."""
    return X[:, 0] * beta[0] if X.shape[1] == 1 else X @ beta


class MixedLinearRegressor(InferenceMixin, MixedModelMixin, RegressorMixin, BaseEstimator):
    """Linear mixed-effects regression (lme4's ``lmer``) as a scikit-learn regressor.

    Fits ``y = X beta + Z b + e`` with random intercepts and slopes per level of one or
    more grouping factors (crossed or nested), by maximum likelihood or REML. The
    objective is lme4's profiled deviance, so estimates agree with lme4's.

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
    reml : bool, default=True
        Restricted maximum likelihood (lme4's default) instead of maximum likelihood.
        Compare models that differ in fixed effects with ``reml=False``.
    fit_intercept : bool, default=True
        Whether the fixed effects include an intercept.
    group_columns : None, str, int or list, default=None
        Columns of X that hold grouping factors instead of features, so that groups
        travel with X through scikit-learn tools (pipelines, named scorers, searches,
        ``cross_validate``): the way to give groups that works everywhere. They are not
        used as features. A name also finds the column under a ``ColumnTransformer``'s
        prefix (``"store"`` is ``"remainder__store"``) when only one column ends in
        ``"__store"``; the grouping factor keeps the name given here.
    unseen_levels : {"average", "zero", "error"}, default="average"
        Rows whose label was not seen in ``fit``, missing labels (None, NaN) included, at
        prediction time. ``"average"`` and ``"zero"`` (the same for a linear model; both
        are accepted so that the parameter reads as on the GLMMs): the population
        prediction, random effects 0. ``"error"``: raise, as lme4's
        ``allow.new.levels = FALSE``.
    missing_groups : {"warn", "population", "error"}, default="warn"
        When ``predict`` or ``score`` get no groups at all (no ``groups=`` and no
        ``group_columns``), as inside scikit-learn's named scorers, ``GridSearchCV.predict``
        or ``CalibratedClassifierCV`` without metadata routing of groups: every row gets
        the population prediction. ``"warn"``: with a
        :class:`~skmlm.GroupsMissingWarning`, once per fitted model. ``"population"``:
        population predictions are meant; no warning. ``"error"``: raise.
    max_iter : int, default=1000
        Largest number of optimiser iterations, all counted: every Newton or quasi-Newton
        step, every iteration of L-BFGS-B or COBYQA, in every stage and restart of the
        search (``n_iter_`` reports them). Evaluations that only judge the final point are
        not iterations. A fit that reaches it before an optimum warns and has
        ``converged_`` False.
    tol : float, default=1e-6
        Convergence: the largest predicted further decrease of the deviance (Newton
        decrement) accepted at the optimum.
    verbose : int, default=0
        Print every evaluation of the objective when > 0.

    Attributes
    ----------
    intercept_ : float
        Fixed intercept (0.0 when ``fit_intercept=False``).
    coef_ : ndarray of shape (n_features,)
        Fixed effects of the feature columns (0 for a column in ``dropped_columns_``).
    fixed_effects_ : DataFrame
        Estimate, Std. Error and t value of every fixed effect, intercept first.
    coef_cov_ : ndarray
        Covariance matrix of the fixed effects estimated (intercept first; the columns in
        ``dropped_columns_`` left out, as lme4's ``vcov``).
    random_effects_ : dict of str to DataFrame
        Conditional modes (BLUPs): one row per level, one column per term.
    random_covariance_ : dict of str to DataFrame
        Covariance matrix of each factor's random effects (lme4's ``VarCorr``).
    residual_variance_ : float
        Residual variance sigma^2 (for a row of weight 1).
    log_likelihood_ : float
        Maximised log-likelihood; the REML one when ``reml=True`` (lme4's ``logLik``).
    deviance_ : float
        ``-2 * log_likelihood_`` (the REML criterion when ``reml=True``).
    aic_, bic_ : float
        Information criteria from ``log_likelihood_``, as lme4's ``AIC``/``BIC``.
    icc_ : float
        Intraclass correlation: the share of the random effects in the total variance,
        the random-effect variance averaged over the rows (Nakagawa et al. 2017).
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
        Every evaluation of the objective: theta and deviance. theta is the search's:
        for a factor with a random intercept and correlated slopes, the search runs on
        slope covariates centred at their means (the same model, better conditioned),
        so its theta there differs from ``theta_``, which is lme4's.
    dropped_columns_ : list of str
        Fixed-effect columns dropped as linear combinations of the columns before them
        (lme4's rank-deficiency check); their ``coef_`` is 0 and they have no row in
        ``fixed_effects_`` or ``coef_cov_``. Empty when none was.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    MixedLogisticClassifier : the same for binary outcomes.

    Notes
    -----
    ``predict`` uses the conditional modes of levels seen in ``fit``; for unseen levels,
    or when no groups are given, it predicts the population line (random effects 0).
    Labels are matched by value, and, when their types differ from those seen in ``fit``,
    by their text, as lme4 matches factor levels: a model fitted with store ids
    ``308, 309, ...`` knows the store ``"308"``.

    Examples
    --------
    >>> from skmlm import MixedLinearRegressor
    >>> from skmlm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    >>> round(m.log_likelihood_, 3)
    -871.814
    """

    _parameter_constraints = {
        **SHARED_PARAMETER_CONSTRAINTS,
        "reml": ["boolean"],
    }

    def __init__(
        self, *, random_slopes=None, random_intercept=True, covariance="unstructured", reml=True,
        fit_intercept=True, group_columns=None, unseen_levels="average", missing_groups="warn", max_iter=1000,
        tol=1e-6, verbose=0,
    ):
        self.random_slopes = random_slopes
        self.random_intercept = random_intercept
        self.covariance = covariance
        self.reml = reml
        self.fit_intercept = fit_intercept
        self.group_columns = group_columns
        self.unseen_levels = unseen_levels
        self.missing_groups = missing_groups
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit the model by ML or REML.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Fixed-effect features; may have zero columns (the null model).
        y : array-like of shape (n_samples,)
        groups : array-like, Series or DataFrame, default=None
            One grouping factor (1-d) or several (2-d, one column each). Required
            unless ``group_columns`` names them in X.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights, as lme4's ``weights``: the residual variance of a row is
            ``residual_variance_ / weight``.

        Returns
        -------
        self
        """
        with single_blas_thread():  # a fit's BLAS calls are small: see skmlm._threads
            return self._fit(X, y, groups, sample_weight)

    def _fit(self, X, y, groups, sample_weight):
        if is_dask_collection(X):
            from ._dask import dask_statistics

            self._design_statistics = dask_statistics(self, X, y, groups, sample_weight)
            return self._fit_statistics(self._without_aliased(self._design_statistics))
        d = self._prepare_fit(X, y, groups, sample_weight)
        del d["X"]  # the linear model reads the design with its intercept (Xf) only
        response = d["y"]
        if not np.count_nonzero(response != response[0]):  # all the first value (np.ptp's reductions cost more)
            raise ValueError("y is constant: there is no variance to split between levels")
        d["unit_weights"] = sample_weight is None
        statistics = self._statistics_of(d)
        # partial_fit adds to the statistics of the whole design (no column dropped)
        self._design_statistics = None if self.dropped_columns_ else statistics
        self._fit_statistics(statistics, checked=True)
        self._residual_quantiles = quartiles(self._residuals_of(d, scaled=True, intercepts=[
            f.intercept for f in statistics.factors]))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, groups=None, sample_weight=None):
        """Add a chunk of rows to the fit: their statistics join those of the chunks before,
        and the model is fitted to all of them.

        The model keeps statistics of the rows, not the rows (see ``statistics_``), and a
        fit from them costs nothing in the number of rows: a file too large for memory is
        read in chunks, each passed here (any order of rows and of levels). After every
        call the model is the fit to all rows seen, as ``fit`` on their concatenation
        would give it. A call on a fitted model (by ``fit`` or ``partial_fit``) adds to its
        statistics; ``fit`` starts afresh.

        Parameters
        ----------
        X, y, groups, sample_weight
            One chunk of rows, as in :meth:`fit` (the same columns and grouping factors in
            every chunk).

        Returns
        -------
        self

        Notes
        -----
        The chunk's statistics are added before the fit: where the rows seen so far do not
        yet make a model (a grouping factor with a single level, say), the error says so
        and the next chunk adds to them all the same. The summary's scaled residuals need
        the rows: :meth:`residuals` computes them in a second pass.
        """
        with single_blas_thread():
            previous = getattr(self, "_design_statistics", None)
            if previous is None and hasattr(self, "statistics_"):
                raise ValueError(
                    "this model was fitted by fit() on a design with aliased columns (dropped_columns_), and "
                    "partial_fit cannot add rows to it: fit it by partial_fit from the first chunk on"
                )
            validated = None if previous is None else validate_X(self, X, reset=False)  # the same features
            d = self._prepare_fit(X, y, groups, sample_weight, validated_X=validated, chunk=True)
            d["unit_weights"] = sample_weight is None
            chunk = self._statistics_of(d, columns=self._design_names)
            self._design_statistics = chunk if previous is None else previous + chunk
            return self._fit_statistics(self._without_aliased(self._design_statistics))

    def _statistics_of(self, d, columns=None):
        """The statistics of the rows of ``d`` (what :meth:`_prepare_fit` returned)."""
        scale = response_scale(d["y"])
        y = d["y"] / scale if scale != 1.0 else d["y"]
        return LinearMixedStatistics.from_rows(
            d["factors"], d["Xf"], y, None if d.get("unit_weights") else d["w"], columns=self._fixed_names if columns is None else columns, y_scale=scale,
        )

    def _without_aliased(self, statistics):
        """The statistics of the whole design (``partial_fit``, Dask) without the columns
        aliased in it, judged on the cross-products as :meth:`_drop_aliased_columns` judges
        the rows."""
        p = statistics.p
        kept = self._keep_columns(independent_columns_of_cross_products(statistics.xy_square[:p, :p]),
                                  statistics.columns)
        self._fixed_names = statistics.columns if kept is None else [statistics.columns[j] for j in kept]
        self._residual_quantiles = None  # the rows are not at hand: see residuals()
        return statistics if kept is None else statistics.select_columns(kept)

    def _fit_statistics(self, statistics, checked=False):
        """Fit the model to its statistics and store the estimates (``checked``: the factors'
        levels already checked, by :meth:`_prepare_fit` on all the rows)."""
        if not checked:
            check_identifiable(statistics.factors, statistics.n)
        model, opt, est = fit_lmm(statistics, self.reml, max_iter=self.max_iter, tol=self.tol, verbose=self.verbose)
        if not opt.converged:
            warnings.warn(not_converged_message(opt, self.max_iter), ConvergenceWarning, stacklevel=5)
        self._store_estimates(model, opt, est, statistics)
        self.statistics_ = statistics
        return self

    def _store_estimates(self, model, opt, est, statistics):
        """Copy the core's results into fitted attributes."""
        factors, sigma2 = model.factors, est["sigma2"]
        beta = est["beta"]
        self._set_fixed_effects(beta)
        self.coef_cov_ = est["cov_beta"]
        # for a y of order 1e160, whose variances are not floats: the fit's own units
        self._coef_cov_unscaled = (est["cov_beta_unscaled"], model.y_scale) if "cov_beta_unscaled" in est else None
        self._sigma2_unscaled = (est["sigma2_unscaled"], model.y_scale) if "sigma2_unscaled" in est else None
        covs, relative = {}, {}
        for f, th in zip(factors, split_theta(factors, opt.x)):
            T = f.cholesky_factor(th)
            relative[f.name] = T @ T.T
            covs[f.name] = sigma2 * relative[f.name]
        self._store_random_effects(factors, est["random_effects"], covs)
        self.residual_variance_ = float(sigma2)
        self.theta_ = opt.x.copy()
        self.deviance_ = float(opt.fun)
        self.log_likelihood_ = -0.5 * self.deviance_
        n_params = len(beta) + len(opt.x) + 1
        self.n_params_ = n_params
        self.aic_ = self.deviance_ + 2 * n_params
        self.bic_ = self.deviance_ + np.log(model.n) * n_params
        self.converged_ = opt.converged
        self.n_iter_ = max(1, opt.n_iter)  # a start at the optimum still took one look
        self.singular_ = bool(np.any((model.theta_lower == 0) & (opt.x < SINGULAR_TOL)))
        self._optimizer_log = opt.log
        self._optimizer_log_names = [f"theta_{k}" for k in range(len(opt.x))]
        ratio = mean_random_variance(factors, relative)  # over sigma2: finite where sigma2 is not a float
        self._var_random = sigma2 * ratio
        self.icc_ = ratio / (ratio + 1.0)
        self._fit_info = {
            "n_obs": model.n,
            "df_resid": model.n - n_params,
            "gradient": opt.gradient,
            "hessian": opt.hessian,
        }
        # -- inference state (skmlm._inference): begin --
        self._keep_for_inference(model, statistics)
        # -- inference state: end --

    @fitted_view
    def fixed_effects_(self):
        """Estimate, Std. Error and t value of every fixed effect, intercept first."""
        beta = self._beta()
        se = self._standard_errors()
        return pd.DataFrame({"Estimate": beta, "Std. Error": se, "t value": beta / se}, index=self._fixed_names)

    @fitted_view
    def _var_fixed(self):
        """Variance of the fixed part ``X beta`` over the training rows (Nakagawa's R^2),
        from the unweighted sums and cross-products of the design."""
        stats, beta = self.statistics_, self._beta()
        if not len(beta):
            return 0.0
        p, n = stats.p, stats.n
        mean = float(stats.xy_sum[:p] @ beta) / n
        return (float(beta @ stats.xy_square[:p, :p] @ beta) - n * mean * mean) / (n - 1)

    def _residuals_of(self, d, scaled, intercepts):
        """Residuals of the rows of ``d`` (what :meth:`_prepare_fit` returns) at the fit;
        ``intercepts``: per factor, whether its first covariate is 1 on every row (no product)."""
        beta = self._beta()
        # in place, a column at a time: at millions of rows each temporary is a copy of y
        r = d["y"] - fixed_part(d["Xf"], beta) if len(beta) else d["y"].copy()
        for f, ones, (_, _, _, modes, _) in zip(d["factors"], intercepts, self._random_parts):
            for j in range(f.q):
                effect = modes[:, j].take(f.codes)  # take: cheaper than fancy indexing
                if j or not ones:
                    effect *= f.z[:, j]
                r -= effect
        if not scaled:
            return r
        sigma2, scale = self.__dict__.get("_sigma2_unscaled") or (self.residual_variance_, 1.0)
        if scale != 1.0:
            r /= scale
        r /= math.sqrt(sigma2) if d.get("unit_weights") else np.sqrt(sigma2 / d["w"])  # the same bits where w is 1
        return r

    def predict(self, X, groups=None, unseen_levels=None):
        """Predict y: conditional on the random effects of known levels.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        groups : array-like, Series or DataFrame, default=None
            Grouping factors of the rows, as in ``fit`` (or none, with ``group_columns``).
            Levels not seen in ``fit`` and missing labels get random effects of 0, the
            population prediction (see ``unseen_levels``). ``groups=None`` without
            ``group_columns``: the population prediction for every row, with a
            :class:`~skmlm.GroupsMissingWarning` (see ``missing_groups``).
        unseen_levels : {"average", "zero", "error"} or None, default=None
            Overrides the estimator's ``unseen_levels`` for this call.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if is_dask_collection(X):
            from ._dask import dask_predict

            return dask_predict(self, X, groups, unseen_levels)
        return self._linear_predictor(X, groups, unseen_levels)

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of :meth:`predict` (with ``groups``, or ``group_columns``) against y."""
        pred = self.predict(X, groups=groups)
        values = np.asarray(y, dtype=float)
        scale = response_scale(values) if values.ndim == 1 and len(values) else 1.0
        if scale != 1.0:  # R^2 does not depend on the units; its squares would overflow in these
            y, pred = values / scale, pred / scale
        return r2_score(y, pred, sample_weight=sample_weight)

    def summary(self):
        """A text summary that reads like lme4's ``summary(lmer(...))``."""
        from ._summary import linear_summary

        return linear_summary(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True  # made dense: see skmlm._input.validate_X
        return tags
