"""skmlm: multilevel (mixed-effects) models for scikit-learn, exact to lme4."""

from ._centering import BetweenWithinTransformer, between_within
from ._linear import MixedLinearRegressor
from ._logistic import MixedLogisticClassifier

__version__ = "0.1.0"

__all__ = ["BetweenWithinTransformer", "between_within", "MixedLinearRegressor", "MixedLogisticClassifier", "__version__"]
