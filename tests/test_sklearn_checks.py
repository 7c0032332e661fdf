"""scikit-learn's own estimator checks.

The checks call ``fit(X, y)`` without groups, so the estimator is checked with its
grouping factor taken from X (``group_columns=[-1]``, the last column). The checks' data
are random floats, so every row is its own level: a legitimate, if uninformative, model.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmlm import MixedLinearRegressor

EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample weights are lme4's prior (precision) weights, not frequency weights; and repeating "
        "a row repeats its group label, which adds an observation to that level: a different model"
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "as on dense data (a sparse X is made dense): prior weights are not frequency weights, and a "
        "repeated row adds an observation to its level"
    ),
    "check_sample_weights_shape": (
        "the check's y is constant within each level of its grouping column (X[:, -1] is 3 where y is 1 "
        "and 1 where y is 2): the residual variance is 0 and the likelihood has no maximum, so fit raises "
        "a clear ValueError (it used to 'converge' with a residual variance of 1e-15)"
    ),
    "check_sample_weights_not_overwritten": "the same data as check_sample_weights_shape: y constant within levels",
    "check_fit_score_takes_y": (
        "the check calls partial_fit(X, y) after fit(X, y): partial_fit adds the same rows again, so every "
        "level (a row each) holds two identical rows, y is constant within levels, and fit raises the clear "
        "ValueError of an exact fit"
    ),
    "check_regressors_no_decision_function": (
        "the check fits y = X[:, 0] exactly; with a residual variance of 0 the likelihood of a mixed "
        "model is unbounded, so fit raises a clear ValueError instead"
    ),
}


def _expected(estimator):
    return EXPECTED_FAILURES


@parametrize_with_checks([MixedLinearRegressor(group_columns=[-1])], expected_failed_checks=_expected)
def test_sklearn_compatible(estimator, check):
    check(estimator)
