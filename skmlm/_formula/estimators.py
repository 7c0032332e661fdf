"""skmlm's estimators specified by an lme4 formula, and lme4's ``lmer`` and ``glmer``.

A formula estimator is the array estimator it derives from (every attribute, ``summary``,
``confint``, ``compare_models``, ``tab_models``, ``r2_nakagawa`` work on it) whose ``fit``,
``predict`` and ``score`` take one DataFrame: the formula says which columns are the
response, the fixed effects, the offset and the grouping factors. Being a scikit-learn
estimator with a ``formula`` parameter, it goes into ``cross_validate`` and
``GridSearchCV`` (``param_grid={"formula": [...]}``) as any other.
"""

import numpy as np
import pandas as pd
from sklearn.utils import metadata_routing

from .._core.design import RandomFactor
from .._glm import MixedGLMRegressor
from .._input import encode_levels
from .._linear import MixedLinearRegressor
from .._logistic import MixedLogisticClassifier
from .design import FormulaDesign

_UNUSED = metadata_routing.UNUSED
_NO_GROUPS = (
    "a formula model reads its grouping factors from the data's columns named in the formula's "
    "random-effect terms; do not pass groups="
)


class FormulaMixin:
    """What makes an estimator a formula estimator (see the module docstring)."""

    # the formula says these; they are not parameters of a formula estimator
    random_slopes = None
    random_intercept = True
    covariance = "unstructured"
    group_columns = None
    missing_groups = "error"

    # groups come from the data: nothing to route (a splitter still gets them)
    __metadata_request__fit = {"groups": _UNUSED}
    __metadata_request__predict = {"groups": _UNUSED}
    __metadata_request__score = {"groups": _UNUSED}

    def score(self, X, y=None, sample_weight=None):
        """The estimator's score of :meth:`predict` (R^2, accuracy or D^2) against y, by
        default the formula's response on ``X``."""
        y, sample_weight = self._response_of(X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    @property
    def fit_intercept(self):
        """Whether the fixed part has an intercept: the formula's (``0 +`` or ``- 1`` remove it)."""
        design = self.__dict__.get("_design")
        return True if design is None else design.has_intercept

    def fit(self, X, y=None, sample_weight=None, groups=None):
        """Fit the formula's model to the DataFrame ``X``.

        Parameters
        ----------
        X : DataFrame
            The data: every column the formula names (other columns are ignored).
        y : array-like of shape (n_samples,), default=None
            The response; None: the formula's left side, evaluated on ``X`` (scikit-learn's
            tools pass y, which is then used as the response).
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights (lme4's ``weights``); with ``cbind(successes, failures)`` they
            multiply the number of trials.

        Returns
        -------
        self
        """
        if groups is not None:
            raise ValueError(_NO_GROUPS)
        design = FormulaDesign(self.formula)
        frame = design.fit(X)
        response, trials = (frame.y, frame.trials) if y is None else (y, None)
        if response is None:
            raise ValueError(
                f"the formula {self.formula!r} has no response (nothing before '~') and no y was given"
            )
        if y is not None and not isinstance(y, pd.Series) and design.response_name:
            response = pd.Series(np.asarray(y), name=design.response_name)
        weights = sample_weight
        if trials is not None:
            if not self._takes_trials:
                raise ValueError(
                    f"cbind(successes, failures) is a binomial response; {type(self).__name__} is not a binomial "
                    "model (use glmer(..., family='binomial'))"
                )
            weights = trials if sample_weight is None else trials * np.asarray(sample_weight, dtype=float)
        kwargs = {}
        given = response
        if frame.offset is not None:
            if self._takes_offset:
                kwargs["offset"] = frame.offset
            else:  # lme4's lmer: the model of y - offset; predictions add the offset back
                response = response - frame.offset
        self._design = design
        self._frame = frame
        try:
            super().fit(frame.X, response, groups=frame.groups, sample_weight=weights, **kwargs)
        finally:
            del self._frame
        # scikit-learn's view of the input: the DataFrame given, not the design built from it
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        if getattr(self, "_refit_data", None) is not None:  # compare_models' ML refit of a REML fit
            self._refit_data = (X, given, None, sample_weight)
        return self

    def _random_factors(self, groups, X, Xn, kept, names):
        """The formula's random factors, ordered as lme4 orders them (most levels first)."""
        factors = []
        for spec in self._design.factors:
            codes, levels = encode_levels(groups[spec.name], spec.name)
            factors.append(RandomFactor(spec.name, codes, levels, self._frame.z[spec.name], list(spec.terms),
                                        spec.diagonal and len(spec.terms) > 1))
        return sorted(factors, key=lambda f: -f.n_levels)

    def _prediction_design(self, X, groups):
        if groups is not None:
            raise ValueError(_NO_GROUPS)
        frame = self._design.transform(X)
        return frame.X.to_numpy(dtype=float), frame.z, frame.groups, None

    def _random_design(self, source, f):
        return source[f]

    def _eta_and_variance(self, X, groups, offset=None, unseen_levels=None):
        if offset is None:
            offset = self._design.offset(X)
        return super()._eta_and_variance(X, groups, offset, unseen_levels)

    def _response_of(self, X, y, sample_weight):
        """``(y, sample_weight)`` for ``score``: the formula's response when y is None."""
        if y is not None:
            return y, sample_weight
        y, trials = self._design.response(X)
        if trials is not None:
            sample_weight = trials if sample_weight is None else trials * np.asarray(sample_weight, dtype=float)
        return y, sample_weight

    @property
    def formula_(self):
        """The fixed part as formulaic read it, and the random factors as fitted."""
        return self._design.formula


class FormulaLinearRegressor(FormulaMixin, MixedLinearRegressor):
    """:class:`~skmlm.MixedLinearRegressor` specified by an lme4 formula (lme4's ``lmer``).

    Parameters
    ----------
    formula : str
        An lme4 formula: ``"stflife ~ eduyrs * gnipc1000 + (1 + eduyrs | cntry)"``. The fixed
        part as R's (``*``, ``:``, ``I()``, ``C()``, treatment contrasts with the first level
        as reference, ``0 +`` or ``- 1`` for no intercept, formulaic's ``center`` and
        ``scale``, skmlm's ``within(x, g)`` and ``between(x, g)``); random effects in the bar
        syntax: ``(1 | g)``, ``(x | g)``, ``(0 + x | g)``, ``(x || g)``, several bars,
        crossed, nested ``(1 | a/b)``, interactions ``(1 | a:b)``. ``offset(...)`` as lme4's
        lmer: the model of the response minus the offset, whose values ``predict`` and
        ``fitted`` add back.
    reml : bool, default=True
        REML (lme4's default) or maximum likelihood.
    unseen_levels, max_iter, tol, verbose
        As :class:`~skmlm.MixedLinearRegressor`'s.

    Examples
    --------
    >>> from skmlm import FormulaLinearRegressor
    >>> from skmlm.datasets import load_sleepstudy
    >>> m = FormulaLinearRegressor("Reaction ~ Days + (Days | Subject)").fit(load_sleepstudy())
    >>> round(m.log_likelihood_, 3)
    -871.814
    """

    _takes_offset = False  # offset(...) is subtracted from the response instead, as lme4's lmer
    _takes_trials = False
    _parameter_constraints = {**MixedLinearRegressor._parameter_constraints, "formula": [str]}

    def __init__(self, formula, *, reml=True, unseen_levels="average", max_iter=1000, tol=1e-6, verbose=0):
        self.formula = formula
        self.reml = reml
        self.unseen_levels = unseen_levels
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    def predict(self, X, groups=None, unseen_levels=None):
        """Predict the response of the rows of the DataFrame ``X`` (see
        :meth:`MixedLinearRegressor.predict`; the grouping factors are ``X``'s columns),
        with the formula's ``offset(...)`` of ``X`` added, as lme4's ``predict``."""
        pred = super().predict(X, groups=groups, unseen_levels=unseen_levels)
        offset = self._design.offset(X)
        return pred if offset is None else pred + offset


class FormulaLogisticClassifier(FormulaMixin, MixedLogisticClassifier):
    """:class:`~skmlm.MixedLogisticClassifier` specified by an lme4 formula (lme4's
    ``glmer(..., family = binomial)`` with a binary response).

    Parameters
    ----------
    formula : str
        An lme4 formula (see :class:`FormulaLinearRegressor`); the response has two values.
    n_quadrature_points : int, default=1
        lme4's ``nAGQ``: 1 the Laplace approximation, more adaptive Gauss-Hermite quadrature.
    unseen_levels, max_iter, tol, verbose
        As :class:`~skmlm.MixedLogisticClassifier`'s.
    """

    # the offset comes from the formula: nothing to route
    __metadata_request__fit = {"groups": _UNUSED, "offset": _UNUSED}
    __metadata_request__predict = {"groups": _UNUSED, "offset": _UNUSED}
    __metadata_request__score = {"groups": _UNUSED, "offset": _UNUSED}
    _takes_offset = True
    _takes_trials = False
    _parameter_constraints = {**MixedLogisticClassifier._parameter_constraints, "formula": [str]}

    def __init__(self, formula, *, n_quadrature_points=1, unseen_levels="average", max_iter=1000, tol=1e-6,
                 verbose=0):
        self.formula = formula
        self.n_quadrature_points = n_quadrature_points
        self.unseen_levels = unseen_levels
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose


class FormulaGLMRegressor(FormulaMixin, MixedGLMRegressor):
    """:class:`~skmlm.MixedGLMRegressor` specified by an lme4 formula (lme4's ``glmer``;
    glmmTMB for the families with a dispersion).

    Parameters
    ----------
    formula : str
        An lme4 formula (see :class:`FormulaLinearRegressor`), with ``offset(...)`` terms
        and, for the binomial, a ``cbind(successes, failures)`` response.
    family : {"poisson", "binomial", "negative_binomial", "gamma"}, default="poisson"
    link : str or None, default=None
    n_quadrature_points : int, default=1
    unseen_levels, max_iter, tol, verbose
        As :class:`~skmlm.MixedGLMRegressor`'s.
    """

    # the offset comes from the formula: nothing to route
    __metadata_request__fit = {"groups": _UNUSED, "offset": _UNUSED}
    __metadata_request__predict = {"groups": _UNUSED, "offset": _UNUSED}
    __metadata_request__score = {"groups": _UNUSED, "offset": _UNUSED}
    _takes_offset = True
    _takes_trials = True
    _parameter_constraints = {**MixedGLMRegressor._parameter_constraints, "formula": [str]}

    def __init__(self, formula, *, family="poisson", link=None, n_quadrature_points=1, unseen_levels="average",
                 max_iter=1000, tol=1e-6, verbose=0):
        self.formula = formula
        self.family = family
        self.link = link
        self.n_quadrature_points = n_quadrature_points
        self.unseen_levels = unseen_levels
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose


#: glmer's family names (R's, and skmlm's) -> skmlm's.
_FAMILIES = {
    "binomial": "binomial", "poisson": "poisson", "gamma": "gamma", "Gamma": "gamma",
    "negative_binomial": "negative_binomial", "nbinom2": "negative_binomial", "negative.binomial": "negative_binomial",
}


def _weights(weights, data):
    """lme4's ``weights``: a column of data by name, or values."""
    if isinstance(weights, str):
        if weights not in data.columns:
            raise ValueError(f"weights={weights!r} is not a column of data")
        return data[weights].to_numpy(dtype=float)
    return weights


def lmer(formula, data, *, REML=True, weights=None, **params):  # noqa: N803  (lme4's name)
    """Fit a linear mixed model from an lme4 formula, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        ``"stflife ~ eduyrs * gnipc1000 + (1 + eduyrs | cntry)"``: see
        :class:`FormulaLinearRegressor` for what the formula may say.
    data : DataFrame
    REML : bool, default=True
        lme4's ``REML``; False for maximum likelihood.
    weights : str or array-like, default=None
        Prior weights: a column of ``data`` or one value per row.
    **params
        Other parameters of :class:`FormulaLinearRegressor` (``max_iter``, ``tol``, ...).

    Returns
    -------
    FormulaLinearRegressor
        Fitted.

    Examples
    --------
    >>> from skmlm import lmer
    >>> from skmlm.datasets import load_sleepstudy
    >>> m = lmer("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> list(m.fixed_effects_.index)
    ['(Intercept)', 'Days']
    """
    model = FormulaLinearRegressor(formula, reml=REML, **params)
    return model.fit(data, sample_weight=_weights(weights, data))


def glmer(formula, data, *, family="binomial", nAGQ=1, weights=None, link=None, **params):  # noqa: N803
    """Fit a generalized linear mixed model from an lme4 formula, as lme4's ``glmer``.

    Parameters
    ----------
    formula : str
        An lme4 formula (see :class:`FormulaLinearRegressor`), with ``offset(...)`` terms
        and, for the binomial, ``cbind(successes, failures)`` on the left.
    data : DataFrame
    family : {"binomial", "poisson", "negative_binomial", "gamma"}, default="binomial"
        R's names work too (``"Gamma"``, ``"nbinom2"``). A binomial with a response of two
        values is a :class:`FormulaLogisticClassifier`; with ``cbind`` or proportions and
        weights a :class:`FormulaGLMRegressor`.
    nAGQ : int, default=1
        lme4's ``nAGQ``: 1 the Laplace approximation, more adaptive Gauss-Hermite quadrature.
    weights : str or array-like, default=None
        Prior weights (for proportions: the number of trials): a column of ``data`` or values.
    link : str, default=None
        The family's default link when None.
    **params
        Other parameters of the estimator (``max_iter``, ``tol``, ...).

    Returns
    -------
    FormulaLogisticClassifier or FormulaGLMRegressor
        Fitted.
    """
    known = _FAMILIES.get(family) or _FAMILIES.get(str(family).lower())  # "Poisson" as "poisson"
    if known is None:
        raise ValueError(f"family={family!r}: glmer knows {sorted(set(_FAMILIES.values()))}")
    family = known
    w = _weights(weights, data)
    if family == "binomial" and link in (None, "logit") and _binary_response(formula, data, w):
        model = FormulaLogisticClassifier(formula, n_quadrature_points=nAGQ, **params)
    else:
        model = FormulaGLMRegressor(formula, family=family, link=link, n_quadrature_points=nAGQ, **params)
    return model.fit(data, sample_weight=w)


def _binary_response(formula, data, weights):
    """Whether the binomial response is binary (two values, no cbind): a classifier's."""
    design = FormulaDesign(formula)
    if design.parsed.cbind is not None or not design.parsed.response:
        return False
    y, _ = design.response(data)
    values = pd.unique(np.asarray(y))
    if len(values) > 2:
        return False
    numeric = pd.api.types.is_numeric_dtype(np.asarray(y))
    return not numeric or set(np.asarray(values, dtype=float)) <= {0.0, 1.0}
