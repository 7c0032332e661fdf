"""Scorers that pass ``groups`` to prediction, for scikit-learn's metadata routing.

scikit-learn's scorers (``scoring="r2"``, ``"neg_root_mean_squared_error"``, ``"roc_auc"``,
...) call ``predict``, ``predict_proba`` or ``decision_function`` with ``X`` alone, also
when metadata routing is on and ``groups`` are routed everywhere else: a mixed model then
scores its population predictions. :func:`make_grouped_scorer` wraps such a scorer so
that it requests ``groups`` and hands them to the estimator's prediction.
"""

from functools import partial

from sklearn.metrics import get_scorer
from sklearn.utils.metadata_routing import MetadataRequest

#: The methods a scorer calls for predictions; each gets ``groups=``.
PREDICTION_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def make_grouped_scorer(scoring):
    """A scorer that passes the routed ``groups`` on to prediction.

    For scikit-learn's metadata routing (``sklearn.set_config(enable_metadata_routing=True)``):
    the scorer requests ``groups`` and calls the estimator's ``predict``,
    ``predict_proba`` or ``decision_function`` with them, as the scorer it wraps would
    without them. Use it as ``scoring=`` of ``cross_validate``, ``GridSearchCV`` and the
    like, with ``groups`` passed once (``params={"groups": g}``, ``fit(X, y, groups=g)``).

    With routing off, tools pass no groups to scorers: give the groups in X instead
    (``group_columns``), where any scorer works.

    Parameters
    ----------
    scoring : str or callable
        A scorer name (``"r2"``, ``"neg_root_mean_squared_error"``, ``"roc_auc"``, ...) or
        a scorer ``scorer(estimator, X, y, **kwargs)``, e.g. from ``make_scorer``. The
        metadata it requests itself (e.g. ``sample_weight`` after
        ``set_score_request(sample_weight=True)``) is requested and passed on too.

    Returns
    -------
    GroupedScorer
        A callable ``scorer(estimator, X, y, groups=None, **kwargs)``.

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.model_selection import KFold, cross_validate
    >>> from skmlm import MixedLinearRegressor, make_grouped_scorer
    >>> from skmlm.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     res = cross_validate(MixedLinearRegressor(random_slopes=["Days"]), df[["Days"]], df["Reaction"],
    ...                          cv=KFold(3, shuffle=True, random_state=0), params={"groups": df["Subject"]},
    ...                          scoring=make_grouped_scorer("neg_root_mean_squared_error"))
    >>> (-res["test_score"]).round(1)  # RMSE (ms); the population line's is 47, 50 and 45
    array([33.4, 28.4, 23.7])
    """
    return GroupedScorer(scoring)


class GroupedScorer:
    """A scorer that passes ``groups`` to prediction: see :func:`make_grouped_scorer`."""

    def __init__(self, scoring):
        self.scoring = scoring
        self._scorer = get_scorer(scoring)

    def __call__(self, estimator, X, y_true, groups=None, **kwargs):
        if groups is not None:
            estimator = _WithGroups(estimator, groups)
        return self._scorer(estimator, X, y_true, **kwargs)

    def get_metadata_routing(self):
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="groups", alias=True)
        inner = getattr(self._scorer, "get_metadata_routing", None)
        if inner is not None:
            for param, alias in inner().score.requests.items():
                if param != "groups" and alias is not None:
                    request.score.add_request(param=param, alias=alias)
        return request

    def __repr__(self):
        return f"make_grouped_scorer({self.scoring!r})"


class _WithGroups:
    """The estimator, its prediction methods given ``groups``; everything else its own."""

    def __init__(self, estimator, groups):
        self._estimator = estimator
        self._groups = groups

    def __getattr__(self, name):
        attr = getattr(self._estimator, name)
        if name in PREDICTION_METHODS:
            return partial(attr, groups=self._groups)
        return attr

    def __sklearn_tags__(self):
        return self._estimator.__sklearn_tags__()
