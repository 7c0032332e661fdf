"""skmlm: multilevel (mixed-effects) models for scikit-learn, exact to lme4."""

from ._linear import MixedLinearRegressor

__version__ = "0.1.0"

__all__ = ["MixedLinearRegressor", "__version__"]
