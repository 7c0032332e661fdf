"""scikit-learn's estimator checks on MixedEffectsRegressor and MixedEffectsClassifier.

As for the other estimators, the grouping factor is the last column of X
(``group_columns=[-1]``); the checks' data are random floats, every row its own level;
``cv=2`` so that the checks' small data sets have enough levels for the folds.
"""

from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmlm import MixedEffectsClassifier, MixedEffectsRegressor

EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample weights are the mixed model's prior (precision) weights, not frequency weights, and a "
        "repeated row adds an observation to its level: a different model"
    ),
    "check_sample_weight_equivalence_on_sparse_data": "as on dense data",
    "check_sample_weights_shape": (
        "the check's y is constant within each level of its grouping column: the residual variance is 0 and "
        "the mixed model's likelihood has no maximum, so fit raises a clear ValueError (as MixedLinearRegressor)"
    ),
    "check_sample_weights_not_overwritten": "the same data as check_sample_weights_shape: y constant within levels",
    "check_regressors_no_decision_function": (
        "the check fits y = X[:, 0] exactly; the linear part's mixed model then has a residual variance of 0 "
        "and an unbounded likelihood, so fit raises MixedLinearRegressor's clear ValueError instead"
    ),
    "check_classifiers_train": (
        "the check's blobs have 2 features; group_columns=[-1] makes the second the grouping factor, with "
        "every row its own level, so f sees one feature and the accuracy is below the check's 0.83"
    ),
    "check_classifiers_train(readonly_memmap=True)": "as check_classifiers_train",
    "check_classifiers_train(readonly_memmap=True,X_dtype=float32)": "as check_classifiers_train",
    "check_classifiers_one_label_sample_weights": (
        "the check trims a class with weights of 0, and prior weights must be positive: fit raises a clear "
        "ValueError about the weights, not about the classes"
    ),
}


def _expected(estimator):
    return EXPECTED_FAILURES


@parametrize_with_checks(
    [MixedEffectsRegressor(LinearRegression(), group_columns=[-1], cv=2),
     MixedEffectsClassifier(LogisticRegression(), group_columns=[-1], cv=2)],
    expected_failed_checks=_expected,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
