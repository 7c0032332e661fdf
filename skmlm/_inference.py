"""Statistical inference for both mixed-model estimators: intervals, p-values, conditional
variances of the random effects and convergence diagnostics.

:class:`InferenceMixin` is a base class of :class:`~skmlm.MixedLinearRegressor` and
:class:`~skmlm.MixedLogisticClassifier`. At the end of ``fit`` the estimators keep what
inference needs (the grouping factors and the fixed-effects design, response and
weights of a GLMM, the statistics of a linear model; see
:meth:`InferenceMixin._keep_for_inference`); the core model is rebuilt
from them on first use and cached (the cache is not pickled).

The numerics live in :mod:`skmlm._core`: :mod:`~skmlm._core.profile`,
:mod:`~skmlm._core.satterthwaite`, :mod:`~skmlm._core.bootstrap`,
:mod:`~skmlm._core.condvar`, :mod:`~skmlm._core.varpar`.
"""

import sys
import textwrap
import time

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._core.bootstrap import glmm_parametric_bootstrap, parametric_bootstrap
from ._core.condvar import glmm_conditional_covariances, lmm_conditional_covariances
from ._core.design import split_theta
from ._core.glmm import GeneralizedMixedModel
from ._core.lmm import LinearMixedModel
from ._core.profile import GeneralizedProfiler, Profiler
from ._core.satterthwaite import Satterthwaite, hessian, jacobian
from ._core.varpar import VarianceParameters, ml_deviance, reml_deviance
from ._threads import single_blas_thread

#: lme4's ``isSingular`` tolerance (a diagonal entry of ``theta`` at or below it is 0).
SINGULAR_TOL = 1e-4

METHODS = ("wald", "profile", "bootstrap")


class _ProgressBar:
    """A one-line text progress bar on stderr.

    ``show=None`` shows it only once a run has taken more than ``delay`` seconds, so
    short runs print nothing; ``True`` always, ``False`` never.
    """

    def __init__(self, label, show=None, delay=2.0, stream=None):
        self.label, self.show, self.delay = label, show, delay
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self.last = -1.0
        self.drawn = False

    def __call__(self, done, total):
        now = time.perf_counter() - self.start
        if self.show is False or (self.show is None and now < self.delay):
            return
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        width = 30
        filled = int(width * done / total)
        eta = now / done * (total - done) if done else float("nan")
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'-' * (width - filled)}] {done}/{total}  "
            f"{now:.0f}s elapsed, ~{eta:.0f}s left "
        )
        self.drawn = True
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _level_columns(level):
    a = (1.0 - level) / 2.0
    return [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]


class InferenceMixin:
    """Confidence intervals, tests, conditional variances and diagnostics of a fitted model."""

    # -- state kept at fit time ----------------------------------------------------------
    def _keep_for_inference(self, model, d):
        """Keep what inference needs after ``fit`` (called at the end of ``_store_estimates``).

        A linear model keeps its statistics (``d``: the
        :class:`~skmlm._core.statistics.LinearMixedStatistics` of the fit), no rows; a GLMM
        the factors (level codes and random-effect covariates per row), the fixed-effects
        design, the response and the weights. The core model is rebuilt from them on
        first use, so the estimator stays picklable.
        """
        linear = not isinstance(model, GeneralizedMixedModel)  # (its PIRLS is built on first use)
        if linear:
            self._inference_data = {
                "linear": True, "statistics": d, "factors": list(d.factors), "reml": bool(model.reml),
            }
        else:
            self._inference_data = {
                "linear": False,
                "factors": list(model.factors),
                "X": d["Xf"],
                "y": d["y"],
                "w": d["w"],
                "reml": False,
                "n_agq": int(getattr(model, "n_agq", 1)),
                "family": getattr(model, "family", None),
                "offset": d.get("offset"),
            }
        self._inference_cache = {}

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_inference_cache", None)  # core models hold closures; rebuilt on demand
        return state

    def _cache(self):
        check_is_fitted(self)
        if not hasattr(self, "_inference_data"):
            raise AttributeError("this estimator was fitted without the state inference needs; refit it")
        if getattr(self, "_inference_cache", None) is None:
            self._inference_cache = {}
        return self._inference_cache

    def _core_model(self):
        """The core model of the fit, rebuilt from the kept state (cached). A linear model
        whose y is of extreme magnitude is built on ``y / scale``, as the fit was (see
        :func:`~skmlm._core.search.response_scale`): :meth:`_core_units` maps its numbers
        to the user's."""
        cache = self._cache()
        if "model" not in cache:
            d = self._inference_data
            cache["y_scale"] = 1.0
            if d["linear"]:
                cache["y_scale"] = d["statistics"].y_scale
                cache["model"] = LinearMixedModel(d["statistics"], d["reml"])
            else:
                cache["model"] = GeneralizedMixedModel(
                    d["factors"], d["X"], d["y"], d["w"], d["family"], d["offset"], n_agq=d["n_agq"]
                )
        return cache["model"]

    @property
    def _is_linear(self):
        return self._inference_data["linear"]

    def _sigma(self):
        return float(np.sqrt(self.residual_variance_)) if self._is_linear else 1.0

    def _core_sigma(self):
        """sigma in the units of the core model (those of y / scale)."""
        model = self._core_model()
        scale = self._cache()["y_scale"]
        sigma = self._sigma() / scale
        if scale != 1.0 and not 0.0 < sigma < np.inf:  # the user's sigma^2 is not a float (y near 1e160)
            sigma = float(np.sqrt(model.estimates(self.theta_)["sigma2"]))
        return sigma

    def _core_units(self, with_fixed=True):
        """What one unit of each parameter of :meth:`confint` (the variance parameters, then,
        ``with_fixed``, the fixed effects) in the core model is in the user's: y's scale for
        standard deviations, sigma and fixed effects, 1 for correlations (all 1 but for a
        linear model of an extreme y)."""
        self._core_model()
        scale = self._cache()["y_scale"]
        units = np.where(self._variance_parameters().kinds == "cor", 1.0, scale)
        units = np.concatenate([units, np.ones(self._n_dispersion)])  # theta (NB2) or phi (Gamma): no units
        return np.concatenate([units, np.full(len(self._fixed_names), scale)]) if with_fixed else units

    def _variance_parameters(self):
        return VarianceParameters(self._inference_data["factors"], has_sigma=self._is_linear)

    def _parameter_names(self, names):
        vp = self._variance_parameters()
        if names == "lme4":
            var = list(vp.names)
        elif names == "descriptive":
            var = list(vp.descriptive_names)
        else:
            raise ValueError(f"names must be 'lme4' or 'descriptive'; got {names!r}")
        if self._n_dispersion:  # after the variance parameters, where a linear model's sigma is
            var.append(".dispersion" if names == "lme4" else "dispersion")
        return var, list(self._fixed_names)

    @property
    def _n_dispersion(self):
        """1 for a family with a dispersion parameter (NB2, Gamma), else 0."""
        return 0 if self._is_linear else int(self._core_model().n_dispersion)

    # -- p-values ----------------------------------------------------------------------
    def _satterthwaite(self):
        cache = self._cache()
        if "satterthwaite" not in cache:
            with single_blas_thread():
                cache["satterthwaite"] = Satterthwaite(self._core_model(), self.theta_, self._core_sigma())
        return cache["satterthwaite"]

    def fixed_effects_table(self, level=0.95):
        """The fixed effects with their tests and confidence intervals.

        Linear model: t tests with Satterthwaite's degrees of freedom, as lmerTest's
        ``summary``; the interval is ``Estimate -+ t_{df, 1 - alpha/2} Std. Error``.
        Logistic model: Wald z tests, as lme4's ``summary(glmer(...))``, and Wald
        intervals ``Estimate -+ z_{1 - alpha/2} Std. Error``.

        Parameters
        ----------
        level : float, default=0.95
            Confidence level of the interval.

        Returns
        -------
        DataFrame
            One row per fixed effect (intercept first). Linear: ``Estimate``,
            ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)`` and the interval's ends;
            logistic: ``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)`` and the ends.
        """
        _check_level(level)
        check_is_fitted(self)
        beta = self._beta()
        se = self._standard_errors()
        cols = _level_columns(level)
        if self._is_linear:
            try:
                df = self._satterthwaite().df(np.eye(len(beta)))
            except (np.linalg.LinAlgError, ValueError, FloatingPointError):  # pragma: no cover
                df = np.full(len(beta), np.nan)
            t = beta / se
            q = stats.t.ppf(0.5 + level / 2.0, df)
            table = {
                "Estimate": beta, "Std. Error": se, "df": df, "t value": t,
                "Pr(>|t|)": 2.0 * stats.t.sf(np.abs(t), df), cols[0]: beta - q * se, cols[1]: beta + q * se,
            }
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = beta / se
            q = stats.norm.ppf(0.5 + level / 2.0)
            table = {
                "Estimate": beta, "Std. Error": se, "z value": z, "Pr(>|z|)": 2.0 * stats.norm.sf(np.abs(z)),
                cols[0]: beta - q * se, cols[1]: beta + q * se,
            }
        return pd.DataFrame(table, index=list(self._fixed_names))

    # -- confidence intervals -------------------------------------------------------------
    def confint(self, parm=None, level=0.95, method=None, *, n_boot=1000, random_state=None, progress=None,
                names="lme4"):
        """Confidence intervals for the variance parameters and the fixed effects (lme4's ``confint``).

        Rows as lme4 names them: ``.sig01``, ``.sig02``, ... (per grouping factor, the
        standard deviation of each random term and the correlation of each pair, in
        lme4's order: SD of the first term, its correlations with the later terms, SD
        of the second term, ...), ``.sigma`` (the residual SD; linear model only) or
        ``.dispersion`` (``dispersion_``: NB2's theta, Gamma's phi), then the fixed effects.

        Parameters
        ----------
        parm : None, "theta_", "beta_" or list of str, default=None
            Which parameters: all (None), the variance parameters (``"theta_"``), the
            fixed effects (``"beta_"``), or a list of row names.
        level : float, default=0.95
        method : {"profile", "wald", "bootstrap"} or None, default=None
            ``"profile"``: likelihood-profile intervals, as lme4's default (a REML fit
            is profiled on its ML refit, as lme4 does; a GLMM on its Laplace or AGQ
            deviance, the dispersion re-optimised with the rest, and profiled itself on
            its log scale, as glmmTMB). ``"wald"``: estimate -+ normal quantile x
            standard error for the fixed effects; NaN for the variance parameters and the
            dispersion, as lme4. ``"bootstrap"``: percentile intervals of a
            parametric bootstrap. None: ``"profile"``.
        n_boot : int, default=1000
            Bootstrap replicates.
        random_state : int, RandomState, Generator or None, default=None
            Seed of the bootstrap.
        progress : bool or None, default=None
            Show a progress bar on stderr during the bootstrap: None shows it only when
            the run takes more than 2 s.
        names : {"lme4", "descriptive"}, default="lme4"
            ``"descriptive"`` names the variance parameters ``sd_(Intercept)|Subject``,
            ``cor_Days.(Intercept)|Subject``, ``sigma`` (lme4's ``oldNames = FALSE``).

        Returns
        -------
        DataFrame
            One row per parameter, columns the lower and upper ends (``"2.5 %"``,
            ``"97.5 %"`` at level 0.95).
        """
        _check_level(level)
        check_is_fitted(self)
        if method is None:
            method = "profile"
        method = str(method).lower()
        if method == "boot":
            method = "bootstrap"
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}")
        var_names, fixed_names = self._parameter_names(names)
        all_names = var_names + fixed_names
        nv = len(var_names)
        if parm is None:
            wanted = list(range(len(all_names)))
        elif isinstance(parm, str) and parm in ("theta_", "beta_"):
            wanted = list(range(nv)) if parm == "theta_" else list(range(nv, len(all_names)))
        else:
            parm = [parm] if isinstance(parm, str) else list(parm)
            unknown = [p for p in parm if p not in all_names]
            if unknown:
                raise ValueError(f"unknown parameter(s) {unknown}; the parameters are {all_names}")
            wanted = [all_names.index(p) for p in parm]

        lower = np.full(len(all_names), np.nan)
        upper = np.full(len(all_names), np.nan)
        beta = self._beta()
        if method == "wald":
            se = self._standard_errors()
            q = stats.norm.ppf(0.5 + level / 2.0)
            lower[nv:], upper[nv:] = beta - q * se, beta + q * se
        elif method == "profile":
            with single_blas_thread():
                prof = self._profiler()
                n_var = nv - self._n_dispersion
                for i in wanted:
                    which, k = ("variance", i) if i < n_var else ("dispersion", 0) if i < nv else ("beta", i - nv)
                    lower[i], upper[i] = prof.interval(which, k, level)
            units = self._core_units()
            lower, upper = lower * units, upper * units
        else:
            reps = self.parametric_bootstrap(n_boot, random_state=random_state, progress=progress)
            a = (1.0 - level) / 2.0
            lower, upper = np.nanquantile(reps.to_numpy(), [a, 1.0 - a], axis=0)
        out = pd.DataFrame({c: v for c, v in zip(_level_columns(level), (lower, upper))}, index=all_names)
        return out.iloc[wanted]

    def _profiler(self):
        cache = self._cache()
        if "profiler" not in cache:
            if self._is_linear:
                cache["profiler"] = Profiler(self._core_model(), self.theta_)
            else:
                cache["profiler"] = GeneralizedProfiler(self._core_model(), self._search_x(), self.coef_cov_)
        return cache["profiler"]

    def _search_x(self):
        """A GLMM's ``[theta, beta, log(dispersion)]`` at the fit."""
        model = self._core_model()
        return np.concatenate([self.theta_, self._beta(), np.log([self.dispersion_] * model.n_dispersion)])

    def parametric_bootstrap(self, n_boot=1000, *, random_state=None, progress=None, names="lme4"):
        """Refit ``n_boot`` responses simulated from the fitted model (lme4's ``bootMer``).

        Each replicate draws random effects and residuals from the fitted distribution,
        adds them to the fitted fixed part, and refits by the same criterion (ML or
        REML); only the response's cross-products are recomputed per replicate. A GLMM's
        replicate draws the random effects, then the response from its family at the
        conditional means, and refits by the same deviance (Laplace or AGQ).

        Parameters
        ----------
        n_boot : int, default=1000
        random_state : int, RandomState, Generator or None, default=None
        progress : bool or None, default=None
            Progress bar on stderr; None shows it when the run takes more than 2 s.
        names : {"lme4", "descriptive"}, default="lme4"

        Returns
        -------
        DataFrame
            One row per replicate; the columns are the parameters of :meth:`confint`.
            ``attrs["converged"]`` flags the replicates whose refit converged.
        """
        check_is_fitted(self)
        n_boot = int(n_boot)
        if n_boot < 1:
            raise ValueError(f"n_boot must be a positive integer; got {n_boot}")
        rng = random_state if isinstance(random_state, np.random.Generator) else check_random_state(random_state)
        d = self._inference_data
        bar = _ProgressBar("bootstrap", show=progress)
        with single_blas_thread():
            if self._is_linear:
                est, converged = parametric_bootstrap(self._core_model(), self.theta_, n_boot, rng, bar)
            else:
                est, converged = glmm_parametric_bootstrap(self._core_model(), self._search_x(), n_boot, rng, bar)
        var_names, fixed_names = self._parameter_names(names)
        out = pd.DataFrame(est * self._core_units(), columns=var_names + fixed_names)
        out.attrs["converged"] = converged
        return out

    # -- conditional variances of the random effects ----------------------------------------
    def random_effects_variance(self, kind="sd"):
        """Conditional variances of the random effects (lme4's ``ranef(m, condVar = TRUE)``).

        The covariance of each level's random effects given the data, at the estimated
        parameters: ``sigma^2 Lambda (Lambda'Z'WZ Lambda + I)^-1 Lambda'`` restricted to
        the level (the fixed effects taken as known, as lme4). With several grouping
        factors these are the diagonal blocks of the joint conditional covariance.

        Parameters
        ----------
        kind : {"sd", "covariance"}, default="sd"
            ``"sd"``: the conditional standard deviations, one DataFrame per factor shaped
            as ``random_effects_``. ``"covariance"``: one array per factor of shape
            ``(n_levels, q, q)``, level by level (lme4's ``postVar`` is its transpose,
            ``q x q x n_levels``).

        Returns
        -------
        dict of str to DataFrame or ndarray
        """
        if kind not in ("sd", "covariance"):
            raise ValueError(f"kind must be 'sd' or 'covariance'; got {kind!r}")
        cache = self._cache()
        if "condvar" not in cache:
            model = self._core_model()
            with single_blas_thread():
                if self._is_linear:
                    covs = lmm_conditional_covariances(model, self.theta_, self.residual_variance_)
                else:
                    covs = glmm_conditional_covariances(model, self.theta_, self._beta(), self.dispersion_)
            cache["condvar"] = {f.name: c for f, c in zip(model.factors, covs)}
        covs = cache["condvar"]
        if kind == "covariance":
            return {k: v.copy() for k, v in covs.items()}
        return {
            k: pd.DataFrame(
                np.sqrt(np.clip(np.diagonal(v, axis1=1, axis2=2), 0, None)),
                index=self.random_effects_[k].index, columns=self.random_effects_[k].columns,
            )
            for k, v in covs.items()
        }

    # -- convergence diagnostics ----------------------------------------------------------
    @property
    def convergence_(self):
        """Gradient and Hessian of the deviance at the optimum, recomputed afresh.

        A dict with

        * ``converged`` (bool), ``n_iter``, ``singular`` (bool) and ``singular_explanation`` (str);
        * ``gradient``, ``hessian``, ``hessian_eigenvalues`` (of the block off the bounds),
          ``max_abs_gradient``: on the
          optimiser's scale (``theta``, lme4's relative Cholesky factors, for the linear
          model; ``theta`` and the fixed effects for the logistic one), by Richardson-
          extrapolated central differences of the deviance the fit minimised;
        * ``gradient_sd``, ``hessian_sd``: the same on the scale of :meth:`confint`
          (standard deviations, correlations, sigma; for the linear model the deviance
          there has sigma free, beta profiled out).

        Coordinates on a bound (a variance of 0) have a one-sided slope: a positive
        gradient there is the optimum, not a failure. The optimum is judged by the
        Newton decrement (see ``tol``), which does not depend on how the parameters are
        scaled; the maximum absolute gradient does, and is given for comparison with
        lme4's ``checkConv`` only.
        """
        cache = self._cache()
        if "convergence" not in cache:
            with single_blas_thread():
                cache["convergence"] = self._convergence()
        return dict(cache["convergence"])

    def _convergence(self):
        model = self._core_model()
        vp = self._variance_parameters()
        theta = np.asarray(self.theta_, dtype=float)
        nt = len(theta)
        theta_names = [f"theta_{k}" for k in range(nt)]
        beta = self._beta()
        if self._is_linear:
            x, names = theta, theta_names
            fun = model.objective
            dev = reml_deviance if self._inference_data["reml"] else ml_deviance

            def fun_sd(phi):
                th, s = vp.to_theta(phi)
                return dev(model, th, s)

            phi = vp.from_theta(theta, self._core_sigma())
            sd_names = list(vp.names)
            lower, lower_sd = model.theta_lower, vp.lower()
        else:
            nd = self._n_dispersion
            x = self._search_x()  # [theta, beta, log(dispersion)]
            names = theta_names + list(self._fixed_names) + ["log_dispersion"] * nd
            fun = model.objective

            def fun_sd(z):  # [sd/cor, dispersion, beta]
                th, _ = vp.to_theta(z[:nt])
                if th is None or (nd and not z[nt] > 0):
                    return np.inf
                return model.objective(np.r_[th, z[nt + nd :], np.log(z[nt : nt + nd])])

            phi = np.r_[vp.from_theta(theta), [self.dispersion_] * nd, beta]
            var_names, _ = self._parameter_names("lme4")
            sd_names = var_names + list(self._fixed_names)
            lower = np.r_[model.theta_lower, np.full(len(beta) + nd, -np.inf)]
            lower_sd = np.r_[vp.lower(), np.zeros(nd), np.full(len(beta), -np.inf)]
        g, H, eig = _derivatives(fun, x, lower)
        g_sd, H_sd, _ = _derivatives(fun_sd, phi, lower_sd)
        units = self._core_units(with_fixed=not self._is_linear)  # phi's, in the core model
        with np.errstate(over="ignore"):  # the curvature in the sd of a y near 1e-154 is not a float
            g_sd, H_sd = g_sd / units, H_sd / units[:, None] / units[None, :]
        return {
            "converged": bool(self.converged_),
            "n_iter": int(self.n_iter_),
            "singular": bool(self.singular_),
            "singular_explanation": self.singular_explanation_,
            "gradient": pd.Series(g, index=names),
            "hessian": pd.DataFrame(H, index=names, columns=names),
            "hessian_eigenvalues": eig,
            "max_abs_gradient": float(np.nanmax(np.abs(g))) if len(g) else 0.0,
            "gradient_sd": pd.Series(g_sd, index=sd_names),
            "hessian_sd": pd.DataFrame(H_sd, index=sd_names, columns=sd_names),
        }

    @property
    def singular_explanation_(self):
        """What is on the boundary in a singular fit, and what to do about it ("" if none)."""
        check_is_fitted(self)
        factors = self._inference_data["factors"] if hasattr(self, "_inference_data") else None
        if factors is None or not self.singular_:
            return ""
        theta = np.asarray(self.theta_, dtype=float)
        if not self._is_linear:  # a GLMM's boundary is judged in its search's standard units
            units = self._core_model().units
            factors, theta = units.factors, units.to_search(self._search_x())[: len(theta)]
        problems = []
        for f, th in zip(factors, split_theta(factors, theta)):
            T = f.cholesky_factor(th)
            for j in range(f.q):
                if T[j, j] > SINGULAR_TOL:
                    continue
                if f.q == 1 or f.diagonal or np.all(np.abs(T[j, :j]) <= SINGULAR_TOL):
                    problems.append(f"the variance of {f.terms[j]!r} between levels of {f.name!r} is estimated as 0")
                else:
                    earlier = ", ".join(repr(t) for t in f.terms[:j])
                    problems.append(
                        f"the random effect {f.terms[j]!r} of {f.name!r} is perfectly correlated with {earlier} "
                        "(a correlation of +-1: their covariance matrix is singular)"
                    )
        text = (
            "boundary (singular) fit: " + "; ".join(problems) + ". This is a valid maximum of the likelihood on the "
            "boundary of the parameter space, not a failure of the optimiser: the data do not support this "
            "much random-effect structure. What you can do: simplify it (drop that random slope or factor, "
            "or use covariance='diagonal' where a correlation is +-1) and compare the fits; or keep it if "
            "the design calls for it (the fixed effects and their tests remain usable) and look at "
            "confint(method='profile') for the range of variances the data allow."
        )
        return "\n".join(textwrap.wrap(text, 88))


def _check_level(level):
    if not (isinstance(level, (int, float, np.floating)) and 0 < level < 1):
        raise ValueError(f"level must be a number strictly between 0 and 1; got {level!r}")


def _derivatives(fun, x, lower):
    """Gradient and Hessian of ``fun`` at ``x``.

    Off the bounds: Richardson-extrapolated central differences. A coordinate on its
    lower bound gets the one-sided (forward) slope, and NaN in the Hessian, whose
    eigenvalues are those of the block off the bounds.
    """
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return np.zeros(0), np.zeros((0, 0)), np.zeros(0)
    at_bound = x <= np.asarray(lower, dtype=float) + 1e-8
    free = np.flatnonzero(~at_bound)
    with np.errstate(all="ignore"):
        g = np.array([float(v) for v in jacobian(fun, x, d=1e-4, floor=1.0)])
        f0 = fun(x)
        for i in np.flatnonzero(at_bound):
            h = 1e-7 * max(1.0, abs(x[i]))
            xp = x.copy()
            xp[i] += h
            g[i] = (fun(xp) - f0) / h
        H = hessian(fun, x, d=1e-3, coordinates=free, floor=1.0)
        Hf = H[np.ix_(free, free)]
        eig = np.linalg.eigvalsh(Hf) if np.all(np.isfinite(Hf)) else np.full(len(free), np.nan)
    return g, H, eig


__all__ = ["InferenceMixin"]
