"""MixedGLMRegressor and its faces: counts, proportions and positive outcomes, as lme4's
``glmer`` (binomial, Poisson) and glmmTMB (negative binomial NB2, Gamma)."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._core.family import FAMILIES, get_family
from ._base import SHARED_PARAMETER_CONSTRAINTS, fitted_view
from ._generalized import GeneralizedMixin


class MixedGLMRegressor(GeneralizedMixin, RegressorMixin, BaseEstimator):
    """Generalized linear mixed model (lme4's ``glmer``) as a scikit-learn regressor.

    Fits ``g(E[y | b]) = offset + X beta + Z b`` with random intercepts and slopes per
    level of one or more grouping factors (crossed or nested), ``b ~ N(0, Sigma)``, by
    maximum likelihood: the Laplace approximation (lme4's ``nAGQ = 1``) or adaptive
    Gauss-Hermite quadrature (``n_quadrature_points > 1``, one grouping factor). A
    dispersion parameter (NB2's size, Gamma's phi) is estimated jointly with the rest,
    as glmmTMB does.

    Parameters
    ----------
    family : {"poisson", "binomial", "negative_binomial", "gamma"}, default="poisson"
        The response distribution. ``"binomial"``: y the proportion of successes in
        [0, 1] with ``sample_weight`` the number of trials (lme4's
        ``cbind(successes, failures)``); 0/1 outcomes with weight 1 are binary.
        ``"negative_binomial"``: NB2 counts, ``Var y = mu + mu^2 / theta``.
        ``"gamma"``: positive y, ``Var y = phi mu^2``.
    link : str or None, default=None
        None: the family's default, the canonical link for binomial (``"logit"``) and
        Poisson (``"log"``), ``"log"`` for NB2 and Gamma. Others: ``"probit"`` and
        ``"cloglog"`` (binomial), ``"inverse"`` (Gamma).
    random_slopes : None, list or dict, default=None
        Columns of X that get a random slope. A list (names for a DataFrame, positions
        otherwise) when there is one grouping factor; a dict ``{factor: [columns]}``
        for several. None: random intercepts only.
    random_intercept : bool, default=True
        Whether every grouping factor has a random intercept.
    covariance : {"unstructured", "diagonal"}, default="unstructured"
        Correlated random effects within a factor (lme4's ``(x | g)``) or uncorrelated
        ones (``(x || g)``).
    n_quadrature_points : int, default=1
        1: the Laplace approximation. ``k > 1``: adaptive Gauss-Hermite quadrature with
        ``k`` points per random effect (one grouping factor; for the families with a
        dispersion parameter, one random term, lme4's condition for ``nAGQ > 1``).
    fit_intercept : bool, default=True
        Whether the fixed effects include an intercept.
    group_columns : None, str, int or list, default=None
        Columns of X that hold grouping factors instead of features, so that groups
        travel with X through scikit-learn tools (pipelines, named scorers, searches,
        calibration): the way to give groups that works everywhere. A name also finds
        the column under a ``ColumnTransformer``'s prefix (``"store"`` is
        ``"remainder__store"``) when only one column ends in ``"__store"``.
    unseen_levels : {"average", "zero", "error"}, default="average"
        How :meth:`predict` treats rows whose level of a grouping factor was not seen in
        ``fit``, missing labels (None, NaN) included, and all rows when no groups are
        given. ``"average"``: the mean over the fitted distribution of the random effects
        (for the log link, ``exp(eta + z' Sigma z / 2)``), the mean of a new group drawn
        from the population. ``"zero"``: the mean at random effect 0. ``"error"``: raise
        for rows with unseen or missing labels, as lme4's ``allow.new.levels = FALSE``
        (predictions without any groups follow ``missing_groups``, as ``"average"``).
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
    family_ : Family
        The response distribution and its link.
    intercept_ : float
        Fixed intercept on the link scale (0.0 when ``fit_intercept=False``).
    coef_ : ndarray of shape (n_features,)
        Fixed effects of the feature columns on the link scale (0 for a column in
        ``dropped_columns_``).
    dispersion_ : float
        NB2: the size theta; Gamma: phi (``Var y = phi mu^2``; glmmTMB's ``sigma()`` is
        ``sqrt(phi)``); 1.0 for binomial and Poisson.
    fixed_effects_ : DataFrame
        Estimate, Std. Error, z value and Pr(>|z|) of every fixed effect.
    coef_cov_ : ndarray
        Covariance matrix of the fixed effects (intercept first), lme4's ``vcov``: from the
        Hessian of the deviance, or where that is not positive definite (a fit stopped
        short of an optimum) from the joint PIRLS system, lme4's fallback.
    random_effects_ : dict of str to DataFrame
        Conditional modes: one row per level, one column per term (link scale).
    random_covariance_ : dict of str to DataFrame
        Covariance matrix of each factor's random effects (lme4's ``VarCorr``).
    log_likelihood_ : float
        Maximised (Laplace or AGQ) log-likelihood with its normalising constants
        (``log y!``, ``log C(n, k)``), as lme4's and glmmTMB's ``logLik``.
    deviance_, aic_, bic_, n_params_, icc_, n_groups_, converged_, singular_, n_iter_,
    theta_, optimizer_log_, dropped_columns_, n_features_in_, feature_names_in_
        As :class:`MixedLogisticClassifier`'s.

    See Also
    --------
    MixedPoissonRegressor, MixedNegativeBinomialRegressor, MixedGammaRegressor :
        this estimator with its family fixed.
    MixedLogisticClassifier : the binomial family as a classifier.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skmlm import MixedGLMRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(30), 20)
    >>> x = rng.normal(size=600)
    >>> y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.5, 30)[g]))
    >>> m = MixedGLMRegressor(family="poisson").fit(pd.DataFrame({"x": x}), y, groups=g)
    >>> round(float(m.coef_[0]), 2)
    0.29
    """

    _residual_confounds_observation_levels = False

    _parameter_constraints = {
        **SHARED_PARAMETER_CONSTRAINTS,
        "family": [StrOptions(set(FAMILIES))],
        "link": [None, StrOptions({"logit", "probit", "cloglog", "log", "inverse"})],
        "n_quadrature_points": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, *, family="poisson", link=None, random_slopes=None, random_intercept=True, covariance="unstructured",
        n_quadrature_points=1, fit_intercept=True, group_columns=None, unseen_levels="average", missing_groups="warn",
        max_iter=1000, tol=1e-6, verbose=0,
    ):
        self.family = family
        self.link = link
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None, offset=None):
        """Fit the model by maximum likelihood (Laplace or adaptive quadrature).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Fixed-effect features; may have zero columns (the null model).
        y : array-like of shape (n_samples,)
            Counts (Poisson, NB2), proportions in [0, 1] (binomial) or positive values (Gamma).
        groups : array-like, Series or DataFrame, default=None
            One grouping factor (1-d) or several (2-d, one column each). Required
            unless ``group_columns`` names them in X.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights, as lme4's ``weights``; for the binomial family the number of
            trials behind each proportion.
        offset : array-like of shape (n_samples,), default=None
            A known term added to the linear predictor (lme4's ``offset()``), e.g. the log
            of an exposure for counts.

        Returns
        -------
        self
        """
        family = get_family(self.family, self.link)
        return self._fit_family(X, y, groups, sample_weight, offset, family)

    @fitted_view
    def icc_(self):
        """Intraclass correlation on the link scale (performance's adjusted ``icc``): the
        random-effect variance over itself plus the family's level-1 variance (see
        :func:`~skmlm.r2_nakagawa`; for counts this refits the null model once)."""
        from ._r2 import r2_nakagawa

        return r2_nakagawa(self)["icc_adjusted"]

    def predict(self, X, groups=None, offset=None, unseen_levels=None):
        """The mean response: conditional on the random effects of known levels.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        groups : array-like, Series or DataFrame, default=None
            Grouping factors of the rows, as in ``fit`` (or none, with ``group_columns``).
            For levels not seen in ``fit`` and missing labels, and for every row when
            ``groups=None``, the mean is averaged over the fitted distribution of the
            random effects (see ``unseen_levels``); ``groups=None`` without
            ``group_columns`` warns (see ``missing_groups``).
        offset : array-like of shape (n_samples,), default=None
            The rows' offsets, as in ``fit`` (for counts: the log exposure of the rows
            predicted).
        unseen_levels : {"average", "zero", "error"} or None, default=None
            Overrides the estimator's ``unseen_levels`` for this call.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._mean(X, groups, unseen_levels, offset)

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        """D^2, the fraction of deviance explained by :meth:`predict` (with ``groups``), as
        scikit-learn's ``PoissonRegressor.score``: ``1 - D(y, mu) / D(y, mean(y))`` with
        the family's unit deviance."""
        mu = self.predict(X, groups=groups, offset=offset)
        y = np.asarray(y, dtype=float)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        family = self.family_
        dev = np.sum(w * family.unit_deviance(y, mu, self.dispersion_))
        null = np.sum(w * family.unit_deviance(y, np.full_like(y, np.average(y, weights=w)), self.dispersion_))
        return 1.0 - dev / null if null > 0 else (1.0 if dev == 0 else 0.0)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True  # made dense: see skmlm._input.validate_X
        tags.target_tags.positive_only = self.family != "binomial"
        return tags


def _face(name, family, doc):
    """A MixedGLMRegressor with its family fixed (scikit-learn's naming of its GLMs)."""

    def __init__(
        self, *, link=None, random_slopes=None, random_intercept=True, covariance="unstructured",
        n_quadrature_points=1, fit_intercept=True, group_columns=None, unseen_levels="average", missing_groups="warn",
        max_iter=1000, tol=1e-6, verbose=0,
    ):
        MixedGLMRegressor.__init__(
            self, family=family, link=link, random_slopes=random_slopes, random_intercept=random_intercept,
            covariance=covariance, n_quadrature_points=n_quadrature_points, fit_intercept=fit_intercept,
            group_columns=group_columns, unseen_levels=unseen_levels, missing_groups=missing_groups, max_iter=max_iter,
            tol=tol, verbose=verbose,
        )

    constraints = dict(MixedGLMRegressor._parameter_constraints)
    del constraints["family"]

    def get_params(self, deep=True):
        params = MixedGLMRegressor.get_params(self, deep)
        params.pop("family", None)
        return params

    return type(name, (MixedGLMRegressor,), {
        "__init__": __init__, "__doc__": doc, "_parameter_constraints": constraints, "__module__": __name__,
        "get_params": get_params,
    })


MixedPoissonRegressor = _face("MixedPoissonRegressor", "poisson", """Poisson mixed model for counts (lme4's
    ``glmer(..., family = poisson)``): :class:`MixedGLMRegressor` with ``family="poisson"``; pass
    the log exposure as ``offset``.""")
MixedNegativeBinomialRegressor = _face("MixedNegativeBinomialRegressor", "negative_binomial", """Negative
    binomial (NB2) mixed model for overdispersed counts (glmmTMB's ``nbinom2``):
    :class:`MixedGLMRegressor` with ``family="negative_binomial"``; ``dispersion_`` is the size
    theta, ``Var y = mu + mu^2 / theta``.""")
MixedGammaRegressor = _face("MixedGammaRegressor", "gamma", """Gamma mixed model for positive outcomes
    (glmmTMB's ``Gamma(link = "log")``): :class:`MixedGLMRegressor` with ``family="gamma"``;
    ``dispersion_`` is phi, ``Var y = phi mu^2``.""")

__all__ = ["MixedGLMRegressor", "MixedPoissonRegressor", "MixedNegativeBinomialRegressor", "MixedGammaRegressor"]
