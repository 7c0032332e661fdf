"""Starting values for theta from one-factor fits.

With several grouping factors an evaluation of the deviance factorises a dense block,
and the search has no analytic gradient. Each factor fitted alone is cheap (its own
batched blocks and analytic gradient, no dense block) and lands near the joint optimum
when factors are crossed: the other factors' effects mostly average out into the
residual. Starting there instead of at lme4's identity saves most of the evaluations.
"""

import numpy as np

from .lmm import LinearMixedModel
from .optimize import minimize_bounded


def one_factor_start(factors, X, y, weights, reml):
    """theta from fitting each factor alone, stacked in the factors' order."""
    pieces = []
    for f in factors:
        alone = LinearMixedModel([f], X, y, weights, reml)
        opt = minimize_bounded(
            alone.objective, alone.theta_start * alone.theta_scale, alone.theta_lower, gradient=alone.gradient,
            scale=alone.theta_scale,
        )
        pieces.append(opt.x)
    return np.concatenate(pieces)
