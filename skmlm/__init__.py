"""skmlm: multilevel (mixed-effects) models for scikit-learn, exact to lme4."""

from ._base import GroupsMissingWarning
from ._centering import BetweenWithinTransformer, between_within
from ._compare import compare_models
from ._core.statistics import LinearMixedStatistics
from ._formula.estimators import FormulaGLMRegressor, FormulaLinearRegressor, FormulaLogisticClassifier, glmer, lmer
from ._formula.parse import FormulaError
from ._glm import MixedGammaRegressor, MixedGLMRegressor, MixedNegativeBinomialRegressor, MixedPoissonRegressor
from ._linear import MixedLinearRegressor
from ._logistic import MixedLogisticClassifier
from ._mixed_effects import MixedEffectsClassifier, MixedEffectsRegressor
from ._r2 import r2_nakagawa, variance_components, variance_reduction
from ._report import ModelTable, tab_models
from ._scoring import make_grouped_scorer

__version__ = "0.1.0"

__all__ = ["BetweenWithinTransformer", "between_within", "MixedLinearRegressor", "MixedLogisticClassifier",
           "MixedEffectsRegressor", "MixedEffectsClassifier", "GroupsMissingWarning", "make_grouped_scorer",
           "MixedGLMRegressor", "MixedPoissonRegressor", "MixedNegativeBinomialRegressor", "MixedGammaRegressor",
           "__version__",
           "compare_models", "tab_models", "ModelTable", "r2_nakagawa", "variance_components",
           "variance_reduction", "lmer", "glmer", "FormulaLinearRegressor", "FormulaLogisticClassifier",
           "FormulaGLMRegressor", "FormulaError", "LinearMixedStatistics"]
