"""glmmTMB (R) adapter, through ``Rscript`` like ``bench_lme4.py`` (whose
``run_r_script`` it uses): the fit is timed inside R with ``system.time``.

``glmmTMB(formula, data, family=..., weights=trials, REML=)`` with the
families gaussian, binomial (trials: ``y`` a proportion and ``weights`` the
trials), poisson, ``nbinom2`` (NB2: Var = mu + mu^2 / theta, theta =
``sigma(fit)``) and ``Gamma`` (``sigma(fit)^2`` = phi, Var = phi mu^2).  An
offset goes into the formula as ``+ offset(col)``.  glmmTMB maximises the
Laplace approximation (exact Hessian, through TMB) of the full
log-likelihood over all parameters, dispersion included; its ``logLik()``
carries the constants (log y!, binomial coefficients), like lme4's.  The
timed fit includes glmmTMB's default ``sdreport`` (the Hessian for the
standard errors), as lme4's includes its derivative check.  No adaptive
quadrature (nAGQ > 1: n/a).
"""

from __future__ import annotations

from bench_lme4 import r_available, result, run_r_script
from common import NotApplicable

NAME = "glmmTMB"

_BODY = r"""
  fam <- switch(args$family,
    gaussian = gaussian(),
    binomial = binomial(link = args$link),
    poisson = poisson(link = args$link),
    negative_binomial = nbinom2(link = args$link),
    gamma = Gamma(link = args$link),
    stop("family not supported: ", args$family))
  glmmTMB(form, data = df, family = fam, weights = wts, REML = args$reml)
"""

_EXTRAS = r"""list(
  dispersion = if (args$family == "negative_binomial") sigma(fit) else
               if (args$family == "gamma") sigma(fit)^2 else NULL,
  convergence = fit$fit$convergence,
  pdHess = isTRUE(fit$sdr$pdHess)
)"""


def available():
    return r_available(["glmmTMB"])


def unavailable_reason():
    return "Rscript or the R packages glmmTMB/jsonlite not installed"


def fit(problem, reps=7, budget=90.0):
    if problem.nAGQ > 1:
        raise NotApplicable("no adaptive Gauss-Hermite quadrature (Laplace only)")
    if problem.family not in ("gaussian", "binomial", "poisson", "negative_binomial", "gamma"):
        raise NotApplicable(f"family {problem.family}")
    out = run_r_script(problem, reps, budget, ["glmmTMB"], _BODY, _EXTRAS)
    note = ""
    if out.get("convergence") not in (0, None):
        note = "not converged"
    elif not out.get("pdHess", True):
        note = "non-positive-definite Hessian"
    return result(out, note)
