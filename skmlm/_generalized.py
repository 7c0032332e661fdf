"""What the generalized linear mixed models share: the fit on a family, the fitted
attributes, prediction of the mean, and the glmer-style tables.

:class:`GeneralizedMixin` is a base of :class:`~skmlm.MixedLogisticClassifier` (the
binomial family as a classifier) and :class:`~skmlm.MixedGLMRegressor` (any family as a
regressor). The numerics live in :mod:`skmlm._core.glmm` and :mod:`skmlm._core.family`.
"""

import warnings

import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import MixedModelMixin, fitted_view, mean_random_variance, not_converged_message
from ._core.design import split_theta
from ._core.dense_gradient import solve_positive_definite
from ._core.glmm import GeneralizedMixedModel, fit_glmm, gauss_hermite_normal
from ._inference import InferenceMixin
from ._input import finite_float_array
from ._threads import single_blas_thread

#: lme4's ``isSingular`` tolerance on the variance parameters of ``theta``.
SINGULAR_TOL = 1e-4
#: Gauss-Hermite points for a population-averaged mean (one dimension).
N_AVERAGE_POINTS = 40


def validate_offset(offset, n):
    """The offset as a finite float vector of length ``n`` (zeros when None)."""
    if offset is None:
        return np.zeros(n)
    fast = finite_float_array(offset, ndim=1)
    offset = fast if fast is not None else check_array(offset, ensure_2d=False, dtype=np.float64, input_name="offset")
    if offset.shape != (n,):
        raise ValueError(f"offset has shape {offset.shape}; expected ({n},): one value per row of X")
    return offset


def population_average_mean(family, eta, var, n_points=N_AVERAGE_POINTS):
    """``E[g^-1(eta + s Z)]``, ``Z ~ N(0, 1)``, ``s^2 = var``: the mean over the random part.

    The log link has the closed form ``exp(eta + var / 2)``; any other link is
    integrated by Gauss-Hermite quadrature.
    """
    eta = np.asarray(eta, dtype=float)
    var = np.maximum(np.asarray(var, dtype=float), 0.0)
    if family.link.name == "log":
        return np.exp(eta + 0.5 * var)
    z, w = gauss_hermite_normal(n_points)
    s = np.sqrt(var)
    out = family.mean(eta[:, None] + s[:, None] * z[None, :]) @ w
    return np.where(s > 0, out, family.mean(eta))


def _check_maximum(model, opt, est):
    """A clear error where the likelihood has no maximum for the search to find."""
    family = model.family
    if not np.isfinite(est["deviance"]):
        raise ValueError(
            f"the {family.name} GLMM's likelihood is not finite at the end of the search (an overflow of the "
            "mean, or a mean outside the family's range): the data may not suit this family or link; check y "
            "and the predictors' ranges"
        )


class GeneralizedMixin(InferenceMixin, MixedModelMixin):
    """The fit of a GLMM of one family and what follows from it (see the module docstring)."""

    # scikit-learn metadata routing: groups and offset reach fit, predict and score
    __metadata_request__fit = {"groups": True, "offset": True}
    __metadata_request__predict = {"groups": True, "offset": True}
    __metadata_request__score = {"groups": True, "offset": True}

    def _fit_family(self, X, y, groups, sample_weight, offset, family, validated_X=None):
        """Validate, fit the GLMM of ``family`` and store the fitted attributes."""
        d = self._prepare_fit(X, y, groups, sample_weight, validated_X=validated_X)
        d["offset"] = validate_offset(offset, len(d["y"]))
        self._has_offset = offset is not None
        family.check_response(d["y"], d["w"])
        model = GeneralizedMixedModel(
            d["factors"], d["Xf"], d["y"], d["w"], family, d["offset"], n_agq=self.n_quadrature_points
        )
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), single_blas_thread():
            opt = fit_glmm(model, max_iter=self.max_iter, tol=self.tol, verbose=self.verbose)
            est = model.estimates(opt.x)
        _check_maximum(model, opt, est)
        self.family_ = family
        self._store_estimates(model, opt, est, d)
        self._after_fit(model, est, d)
        if not opt.converged and not getattr(self, "_separated", False):
            warnings.warn(not_converged_message(opt, self.max_iter), ConvergenceWarning, stacklevel=3)
        return self

    def _after_fit(self, model, est, d):
        """A hook for checks of the estimates after the fit (the classifier's)."""

    def _store_estimates(self, model, opt, est, d):
        """Copy the core's results into fitted attributes."""
        factors = model.factors
        theta, beta, dispersion = model.split(opt.x)
        nt, p = model.n_theta, len(beta)
        self._set_fixed_effects(beta.copy())
        self.dispersion_ = float(dispersion)
        self.coef_cov_, source = self._fixed_covariance(model, opt, nt, p)
        covs = {}
        for f, th in zip(factors, split_theta(factors, theta)):
            T = f.cholesky_factor(th)
            covs[f.name] = T @ T.T
        self._store_random_effects(factors, est["random_effects"], covs)
        self.theta_ = theta.copy()
        self.deviance_ = float(est["deviance"])
        self.log_likelihood_ = -0.5 * self.deviance_
        self.n_params_ = p + nt + model.n_dispersion
        self.aic_ = self.deviance_ + 2 * self.n_params_
        self.bic_ = self.deviance_ + np.log(model.n) * self.n_params_
        self.converged_ = opt.converged
        self.n_iter_ = max(1, opt.n_iter)
        # judged in the search's standard units: in the user's, theta scales with the columns
        theta_std = model.units.to_search(opt.x)[:nt]
        self.singular_ = bool(((model.theta_lower == 0) & (np.abs(theta_std) < SINGULAR_TOL)).any())
        self._optimizer_log = opt.log
        self._fit_info = {
            "n_obs": model.n,
            "df_resid": model.n - self.n_params_,
            "gradient": opt.gradient,
            "hessian": opt.hessian,
            "coef_cov_source": source,
        }
        # -- inference state (skmlm._inference): begin --
        self._keep_for_inference(model, d)
        # -- inference state: end --

    @fitted_view
    def _optimizer_log_names(self):
        """The names of the search's parameters, as ``optimizer_log_`` shows them."""
        nt, p = len(self.theta_), len(self._fixed_names)
        return [f"theta_{k}" for k in range(nt)] + [f"beta_{k}" for k in range(p)] + (
            ["log_dispersion"] * (self.n_params_ - nt - p))

    @fitted_view
    def _var_random(self):
        """Variance of the random part over the training rows (see :func:`mean_random_variance`)."""
        covs = {name: cov for name, _, _, _, cov in self._random_parts}
        return mean_random_variance(self._inference_data["factors"], covs)

    @staticmethod
    def _fixed_covariance(model, opt, nt, p):
        """lme4's ``vcov`` and where it comes from: ``(covariance, source)``.

        ``"hessian"``: ``2 H^-1`` restricted to beta, H the Hessian of the deviance in
        ``(theta, beta[, log dispersion])`` at the point where the search ended (variances at
        0 left out). Where H is not positive definite (a search stopped short of an
        optimum, a degenerate singular fit), ``"pirls"``: the covariance from the joint
        PIRLS system there, as lme4 falls back to ``RX``. NaN (source None) only where
        neither can be had.
        """
        if p == 0:
            return np.zeros((0, 0)), "hessian"
        H = opt.hessian
        if H is not None and H.shape[0] >= nt + p:
            free_theta = np.abs(H.diagonal()[:nt]) > 0
            first = int(np.count_nonzero(free_theta))  # beta's place among the free coordinates
            if first < nt:
                free = np.ones(H.shape[0], dtype=bool)
                free[:nt] = free_theta
                H = H[np.ix_(free, free)]
            beta = slice(first, first + p)
            try:
                inverse = solve_positive_definite(H, np.eye(H.shape[0]))[beta, beta]
                cov = inverse + inverse.T  # 2 H^-1, exactly symmetric
                if np.isfinite(cov).all():  # (a Hessian with NaN factorises into NaN)
                    return cov, "hessian"
            except np.linalg.LinAlgError:
                pass
        cov = model.pirls_covariance(opt.x)
        if cov is not None:
            return cov, "pirls"
        return np.full((p, p), np.nan), None

    @fitted_view
    def fixed_effects_(self):
        """Estimate, Std. Error, z value and Pr(>|z|) of every fixed effect, intercept first."""
        beta = self._beta()
        se = self._standard_errors()
        with np.errstate(divide="ignore", invalid="ignore"):
            zval = beta / se
        return pd.DataFrame(
            {"Estimate": beta, "Std. Error": se, "z value": zval, "Pr(>|z|)": 2 * ndtr(-np.abs(zval))},
            index=self._fixed_names,
        )

    @fitted_view
    def _scaled_residuals(self):
        """Pearson residuals on the training rows at the conditional modes (glmer's scaled
        residuals, in the summary)."""
        d = self._inference_data
        family = self.family_
        mu = family.mean(self._training_linear_predictor() + d["offset"])
        if family.name == "binomial":
            mu = np.clip(mu, 1e-15, 1 - 1e-15)
        return (d["y"] - mu) * np.sqrt(d["w"] / family.variance(mu, self.dispersion_))

    # -- prediction ----------------------------------------------------------------
    def _eta_and_variance(self, X, groups, offset=None, unseen_levels=None):
        """Linear predictor with the effects of known levels, and the variance of the random
        part of the unknown ones (``z' Sigma z`` summed over factors)."""
        check_is_fitted(self)
        mode = self._unseen_mode(unseen_levels)
        Xn, source, g_from_X, groups = self._prediction_design(X, groups)
        n = Xn.shape[0]
        eta = self.intercept_ + Xn @ self.coef_ + validate_offset(offset, n)
        var = np.zeros(n)
        positions = self._level_positions(n, groups, g_from_X, mode)
        for f, _, _, modes, S in self._random_parts:
            z = self._random_design(source, f)
            known = np.zeros(n, dtype=bool) if positions is None else positions[f] >= 0
            if known.any():
                eta[known] += np.einsum("ij,ij->i", z[known], modes[positions[f][known]])
            unk = ~known
            var[unk] += np.einsum("ij,jk,ik->i", z[unk], S, z[unk])
        return eta, var

    def _eta_and_variance_for(self, X, groups, unseen_levels, offset=None):
        """:meth:`_eta_and_variance` with the variance of unknown rows set to 0 for
        ``unseen_levels="zero"`` (the mean at random effect 0)."""
        mode = self._unseen_mode(unseen_levels)
        eta, var = self._eta_and_variance(X, groups, offset, mode)
        return eta, (np.zeros_like(var) if mode == "zero" else var)

    def _mean(self, X, groups, unseen_levels, offset=None):
        """The mean response: conditional on known levels, averaged over unknown ones."""
        eta, var = self._eta_and_variance_for(X, groups, unseen_levels, offset)
        return population_average_mean(self.family_, eta, var)

    def summary(self):
        """A text summary that reads like lme4's ``summary(glmer(...))``."""
        from ._summary import generalized_summary

        return generalized_summary(self)
