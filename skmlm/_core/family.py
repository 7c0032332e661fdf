"""Exponential-family (and NB2) response distributions with their links, for the GLMM core.

A :class:`Family` is everything PIRLS, the Laplace approximation and adaptive quadrature
need to know about the response: the log-likelihood of a row as a function of its linear
predictor ``eta`` (normalising constants such as ``log y!`` and ``log C(n, k)`` included,
so fits compare across families and with R), its derivatives in ``eta`` up to the
fourth, and, for the families with a dispersion parameter, the derivatives in that
parameter. The GLMM code never sees a link or a variance function: only these numbers.

Notation, per row (prior weight ``w`` included in every quantity)::

    d1 = d loglik / d eta                (the score)
    W  = -d^2 loglik / d eta^2           (the observed information: PIRLS's weight)
    W1 = dW / d eta,  W2 = d^2 W / d eta^2

With the canonical link (binomial-logit, Poisson-log) ``loglik = w (y eta - b(eta)) + c``
and the derivatives are those of the cumulant ``b``; any other link goes through the
chain rule from the derivatives in the mean ``mu``. The weight is the observed one (the
true Laplace approximation, as glmmTMB); for a canonical link it equals the expected one
(lme4's).

The dispersion is carried on the log scale, ``s = log(dispersion)``, as the optimiser
sees it: NB2's size ``theta`` (``Var y = mu + mu^2 / theta``) and Gamma's ``phi``
(``Var y = phi mu^2``).
"""

from functools import lru_cache

import numpy as np
from scipy.special import betaln, digamma, expit, gammaln, ndtr, ndtri, polygamma, xlogy

# -- links --------------------------------------------------------------------------------


class Link:
    """``eta = g(mu)``; :meth:`derivatives` gives ``mu`` and ``d^k mu / d eta^k``, k = 1..4."""

    name = None

    def __repr__(self):
        return f"{type(self).__name__}()"


class LogitLink(Link):
    name = "logit"

    def inverse(self, eta):
        return expit(eta)

    def __call__(self, mu):
        return np.log(mu) - np.log1p(-mu)

    def derivatives(self, eta):
        mu = expit(eta)
        v = mu * (1.0 - mu)
        a = 1.0 - 2.0 * mu
        return mu, v, v * a, v * (1.0 - 6.0 * v), v * a * (1.0 - 12.0 * v)


class ProbitLink(Link):
    name = "probit"

    def inverse(self, eta):
        return ndtr(eta)

    def __call__(self, mu):
        return ndtri(mu)

    def derivatives(self, eta):
        phi = np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)
        return ndtr(eta), phi, -eta * phi, (eta * eta - 1.0) * phi, (3.0 * eta - eta**3) * phi


class CloglogLink(Link):
    name = "cloglog"

    def inverse(self, eta):
        return -np.expm1(-np.exp(eta))

    def __call__(self, mu):
        return np.log(-np.log1p(-mu))

    def derivatives(self, eta):
        t = np.exp(eta)
        e = np.exp(eta - t)  # d mu / d eta = e^eta e^-e^eta
        return -np.expm1(-t), e, e * (1.0 - t), e * (1.0 - 3.0 * t + t * t), e * (1.0 - 7.0 * t + 6.0 * t * t - t**3)


class LogLink(Link):
    name = "log"

    def inverse(self, eta):
        return np.exp(eta)

    def __call__(self, mu):
        return np.log(mu)

    def derivatives(self, eta):
        mu = np.exp(eta)
        return mu, mu, mu, mu, mu


class InverseLink(Link):
    name = "inverse"

    def inverse(self, eta):
        return 1.0 / eta

    def __call__(self, mu):
        return 1.0 / mu

    def derivatives(self, eta):
        mu = 1.0 / eta
        m1 = -mu * mu
        return mu, m1, -2.0 * m1 * mu, 6.0 * m1 * mu * mu, -24.0 * m1 * mu**3


LINKS = {cls.name: cls for cls in (LogitLink, ProbitLink, CloglogLink, LogLink, InverseLink)}


def _chain(l, m, order):
    """``(d1, W[, W1[, W2]])`` of ``loglik(mu(eta))`` from the derivatives in ``mu``
    (``l1..l4``) and those of the inverse link (``m1..m4``): Faa di Bruno's formula up to
    the ``order``-th."""
    l1, l2, l3, l4 = l
    m1, m2, m3, m4 = m
    out = [l1 * m1, -(l2 * m1 * m1 + l1 * m2)]
    if order >= 3:
        out.append(-(l3 * m1**3 + 3.0 * l2 * m1 * m2 + l1 * m3))
    if order >= 4:
        out.append(-(l4 * m1**4 + 6.0 * l3 * m1 * m1 * m2 + l2 * (3.0 * m2 * m2 + 4.0 * m1 * m3) + l1 * m4))
    return out


# -- families -----------------------------------------------------------------------------


class Family:
    """A response distribution with its link (see the module docstring)."""

    name = None
    links = ()  # the links the family accepts, its default first
    has_dispersion = False
    canonical_link = None
    #: Where the linear predictor must stay above for the mean to exist (None: anywhere).
    eta_lower = None
    #: Whether an exact fit (y a function of X and the groups) sends the dispersion to 0,
    #: where the likelihood grows without bound (Gamma's phi; NB2 tends to Poisson instead).
    unbounded_at_exact_fit = False

    def __init__(self, link=None):
        link = self.links[0] if link is None else link
        if link not in self.links:
            raise ValueError(
                f"the {self.name} family takes the link(s) {list(self.links)}; got link={link!r}"
            )
        self.link = LINKS[link]()
        self.canonical = link == self.canonical_link
        if link == "inverse":
            self.eta_lower = 0.0

    def __repr__(self):
        return f"{type(self).__name__}(link={self.link.name!r})"

    # what every family defines
    def kernel(self, y, eta, w, dispersion=1.0):
        """Per-row log-likelihood without the terms free of ``eta`` (see :meth:`constant`)."""
        raise NotImplementedError

    def constant(self, y, w, dispersion=1.0):
        """The sum over the rows of the log-likelihood's terms free of ``eta`` (``log y!``,
        ``log C(n, k)``, ...): computed once per dispersion, not per evaluation."""
        raise NotImplementedError

    def constant_function(self, y, w):
        """``dispersion -> constant(y, w, dispersion)`` for fixed data: what does not depend
        on the dispersion is summed once (a search evaluates the constant at every step)."""
        c = self.constant(y, w)
        return lambda dispersion=1.0: c

    def constant_slopes_function(self, y, w):
        """``dispersion -> (dc/ds, d2c/ds2)``, the constant's derivatives in ``s =
        log(dispersion)`` for fixed data (0 without a dispersion), summed as the constant is."""
        return lambda dispersion=1.0: (0.0, 0.0)

    def loglik(self, y, eta, w, dispersion=1.0):
        """The total log-likelihood, normalising constants included."""
        return float(np.sum(self.kernel(y, eta, w, dispersion))) + self.constant(y, w, dispersion)

    def derivatives(self, y, eta, w, dispersion=1.0, order=2):
        """``(d1, W)`` (``order=2``), ``(d1, W, W1)`` (3) or ``(d1, W, W1, W2)`` (4)."""
        if self.canonical:
            b = self._cumulant_derivatives(eta, order)
            b[0] = y - b[0]
            for k in range(order):
                b[k] *= w
            return b
        mu, *m = self.link.derivatives(eta)
        return tuple(w * d for d in _chain(self._mean_derivatives(y, mu, dispersion), m, order))

    def mean(self, eta):
        return self.link.inverse(eta)

    def variance(self, mu, dispersion=1.0):
        """``Var y`` for a row of prior weight 1."""
        raise NotImplementedError

    def unit_deviance(self, y, mu, dispersion=1.0):
        """``2 (loglik(saturated) - loglik(mu))`` per row of weight 1: GLM deviance terms."""
        raise NotImplementedError

    def simulate(self, mu, w, dispersion, rng):
        """Responses drawn at the means ``mu`` (a parametric bootstrap's replicate)."""
        raise NotImplementedError

    def start_mean(self, y, w):
        """glm's ``mustart``: a mean for each row to start the iterations from."""
        return y + 0.1 * np.mean(y) + 1e-8

    def check_response(self, y, w):
        """A clear error when ``y`` is outside the family's support."""

    # families with a dispersion parameter
    def dispersion_derivatives(self, y, eta, w, dispersion):
        """``(d kernel, d d1, d W) / d s`` per row, ``s = log(dispersion)`` (the constant's
        part: :meth:`constant_slopes_function`)."""
        raise NotImplementedError

    def dispersion_second_derivatives(self, y, eta, w, dispersion):
        """``(d2 kernel, d2 d1, d2 W) / d s2`` and ``d W1 / d s`` per row: the dispersion's
        row of a GLMM's exact Hessian."""
        raise NotImplementedError

    def start_dispersion(self, y, mu, w):
        """A moment estimate of the dispersion at the means ``mu`` (a start for the search)."""
        return 1.0


class Binomial(Family):
    """Binomial: ``y`` the proportion of successes out of ``w`` trials (0/1 with ``w = 1``)."""

    name = "binomial"
    links = ("logit", "probit", "cloglog")
    canonical_link = "logit"

    def kernel(self, y, eta, w, dispersion=1.0):
        if self.canonical:  # y eta - log(1 + e^eta), without overflow
            return w * (y * eta - np.logaddexp(0.0, eta))
        mu = np.clip(self.mean(eta), 1e-300, 1.0 - 1e-16)
        return w * (xlogy(y, mu) + xlogy(1.0 - y, 1.0 - mu))

    def constant(self, y, w, dispersion=1.0):
        """``sum log C(w, w y)``: 0 for 0/1 outcomes (whatever their weights)."""
        inner = (y > 0.0) & (y < 1.0)
        if not inner.any():
            return 0.0
        y, w = y[inner], w[inner]
        return float(np.sum(gammaln(w + 1.0) - gammaln(w * y + 1.0) - gammaln(w * (1.0 - y) + 1.0)))

    def _cumulant_derivatives(self, eta, order):
        mu = expit(eta)
        v = mu * (1.0 - mu)
        out = [mu, v]
        if order >= 3:
            out.append(v * (1.0 - 2.0 * mu))
        if order >= 4:
            out.append(v * (1.0 - 6.0 * v))
        return out

    def _mean_derivatives(self, y, mu, dispersion):
        mu = np.clip(mu, 1e-300, 1.0 - 1e-16)
        a, b = y / mu, (1.0 - y) / (1.0 - mu)
        return (a - b, -a / mu - b / (1.0 - mu), 2.0 * (a / mu**2 - b / (1.0 - mu) ** 2),
                -6.0 * (a / mu**3 + b / (1.0 - mu) ** 3))

    def variance(self, mu, dispersion=1.0):
        return mu * (1.0 - mu)

    def unit_deviance(self, y, mu, dispersion=1.0):
        mu = np.clip(mu, 1e-300, 1.0 - 1e-16)
        return 2.0 * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))

    def start_mean(self, y, w):
        return (w * y + 0.5) / (w + 1.0)

    def simulate(self, mu, w, dispersion, rng):
        """Successes out of ``w`` trials (rounded, at least 1), as proportions."""
        trials = np.maximum(np.rint(w), 1.0)
        return rng.binomial(trials.astype(np.int64), np.clip(mu, 0.0, 1.0)) / trials

    def check_response(self, y, w):
        if ((y < 0) | (y > 1)).any():
            raise ValueError(
                "the binomial family needs y in [0, 1]: a 0/1 outcome, or the proportion of successes "
                "with sample_weight the number of trials"
            )


class Poisson(Family):
    """Poisson counts."""

    name = "poisson"
    links = ("log",)
    canonical_link = "log"

    def kernel(self, y, eta, w, dispersion=1.0):
        return w * (y * eta - np.exp(eta))

    def constant(self, y, w, dispersion=1.0):
        return -float(np.sum(w * gammaln(y + 1.0)))

    def _cumulant_derivatives(self, eta, order):
        mu = np.exp(eta)
        return [mu] + [mu.copy() for _ in range(order - 1)]

    def variance(self, mu, dispersion=1.0):
        return mu

    def simulate(self, mu, w, dispersion, rng):
        return rng.poisson(mu).astype(float)

    def unit_deviance(self, y, mu, dispersion=1.0):
        return 2.0 * (xlogy(y, y / mu) - (y - mu))

    def check_response(self, y, w):
        if np.any(y < 0):
            raise ValueError("the poisson family needs counts y >= 0")


class NegativeBinomial(Family):
    """NB2 counts: ``Var y = mu + mu^2 / theta``; the dispersion is the size ``theta``."""

    name = "negative_binomial"
    links = ("log",)
    has_dispersion = True

    def kernel(self, y, eta, w, dispersion=1.0):
        k = dispersion
        log_k_mu = np.logaddexp(np.log(k), eta)  # log(k + mu)
        # k log(k / (k + mu)) as -k log1p(mu / k): its digits survive a large k
        return w * (-k * np.log1p(np.exp(eta) / k) + y * (eta - log_k_mu))

    def constant(self, y, w, dispersion=1.0):
        """``sum w (log Gamma(y + k) - log Gamma(k) - log y!)``; the first difference as
        ``log Gamma(y) - log B(k, y)`` (0 for y = 0), which keeps its digits at a large
        ``k`` (the Poisson limit), where the two log-gammas cancel."""
        k = dispersion
        pos = y > 0
        rising = np.zeros_like(y)
        rising[pos] = gammaln(y[pos]) - betaln(k, y[pos])
        return float(np.sum(w * (rising - gammaln(y + 1.0))))

    def constant_function(self, y, w):
        """The constant over the distinct counts, each with its total weight (counts repeat:
        a few dozen values for thousands of rows)."""
        values, index = np.unique(y, return_inverse=True)
        weights = np.bincount(index.ravel(), weights=w, minlength=len(values))
        return lambda dispersion=1.0: self.constant(values, weights, dispersion)

    def _mean_derivatives(self, y, mu, dispersion):
        k = dispersion
        a, b = y / mu, (y + k) / (k + mu)
        return (a - b, -a / mu + b / (k + mu), 2.0 * (a / mu**2 - b / (k + mu) ** 2),
                -6.0 * (a / mu**3 - b / (k + mu) ** 3))

    def derivatives(self, y, eta, w, dispersion=1.0, order=2):
        """In closed form (the log link is the only one): with ``q = mu / (k + mu)``,
        ``d1 = k (y - mu) / (k + mu)``, ``W = (k + y) q (1 - q)`` and its derivatives."""
        k = dispersion
        mu = np.exp(eta)
        q = mu / (k + mu)
        c = w * (k + y)
        W = c * q * (1.0 - q)
        out = [w * k * (y - mu) / (k + mu), W]
        if order >= 3:
            out.append(W * (1.0 - 2.0 * q))
        if order >= 4:
            out.append(W * (1.0 - 6.0 * q * (1.0 - q)))
        return tuple(out)

    def constant_slopes_function(self, y, w):
        """Over the distinct counts, as :meth:`constant_function`: ``sum w (psi(y + k) - psi(k))``
        and its derivative, times ``k`` (``d/ds = k d/dk``)."""
        values, index = np.unique(y, return_inverse=True)
        weights = np.bincount(index.ravel(), weights=w, minlength=len(values))
        total = float(np.sum(w))

        def slopes(dispersion=1.0):
            k = dispersion
            d1 = float(weights @ digamma(values + k)) - total * float(digamma(k))
            d2 = float(weights @ polygamma(1, values + k)) - total * float(polygamma(1, k))
            return k * d1, k * d1 + k * k * d2

        return slopes

    def _k_derivatives(self, y, eta, k):
        """``mu``, ``k + mu`` and the derivatives in ``k`` of the kernel, the score and W per
        unit weight."""
        mu = np.exp(eta)
        km = k + mu
        dl = np.log(k) + 1.0 - np.log(km) - (y + k) / km
        dd1 = (y - mu) * mu / km**2
        dW = mu * (2.0 * k * mu + y * mu - y * k) / km**3
        return mu, km, dl, dd1, dW

    def dispersion_derivatives(self, y, eta, w, dispersion):
        k = dispersion
        _, _, dl, dd1, dW = self._k_derivatives(y, eta, k)
        return w * k * dl, w * k * dd1, w * k * dW  # d/ds = k d/dk

    def dispersion_second_derivatives(self, y, eta, w, dispersion):
        k = dispersion
        mu, km, dl, dd1, dW = self._k_derivatives(y, eta, k)
        # the second derivatives in k; d2/ds2 = k d/dk + k^2 d2/dk2
        dl2 = 1.0 / k - 1.0 / km - (mu - y) / km**2
        dW2 = 2.0 * mu * (mu * mu - 2.0 * k * mu - 2.0 * y * mu + y * k) / km**4
        q = mu / km
        W = (k + y) * q * (1.0 - q)
        dW1 = k * dW * (1.0 - 2.0 * q) + 2.0 * W * k * mu / km**2  # W1 = W (1 - 2q)
        kk = k * k
        return (w * (k * dl + kk * dl2), w * (k * dd1 - 2.0 * kk * dd1 / km), w * (k * dW + kk * dW2), w * dW1)

    def variance(self, mu, dispersion=1.0):
        return mu + mu * mu / dispersion

    def simulate(self, mu, w, dispersion, rng):
        return rng.negative_binomial(dispersion, dispersion / (dispersion + mu)).astype(float)

    def unit_deviance(self, y, mu, dispersion=1.0):
        k = dispersion
        return 2.0 * (xlogy(y, y / mu) - (y + k) * np.log((y + k) / (mu + k)))

    def start_dispersion(self, y, mu, w):
        """Moments: ``sum w (y - mu)^2 = sum w (mu + mu^2 / theta)``."""
        excess = np.sum(w * ((y - mu) ** 2 - mu))
        return float(np.clip(np.sum(w * mu * mu) / excess, 1e-2, 1e4)) if excess > 0 else 1e4

    def check_response(self, y, w):
        if np.any(y < 0):
            raise ValueError("the negative_binomial family needs counts y >= 0")


class Gamma(Family):
    """Gamma: positive ``y``, ``Var y = phi mu^2`` (shape ``1 / phi``); the dispersion is ``phi``."""

    name = "gamma"
    links = ("log", "inverse")
    has_dispersion = True
    unbounded_at_exact_fit = True

    def kernel(self, y, eta, w, dispersion=1.0):
        if self.link.name == "log":
            return -(w / dispersion) * (eta + y * np.exp(-eta))
        # the inverse link: a mean exists only where eta > 0 (-inf elsewhere, so that a
        # step there is refused)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = -(w / dispersion) * (y * eta - np.log(eta))
        return np.where(eta > 0, out, -np.inf)

    def constant(self, y, w, dispersion=1.0):
        return self._constant(float(np.sum(w)), float(np.sum(w * np.log(y))), dispersion)

    def constant_function(self, y, w):
        """The constant from ``sum w`` and ``sum w log y``, summed once."""
        total, log_y = float(np.sum(w)), float(np.sum(w * np.log(y)))
        return lambda dispersion=1.0: self._constant(total, log_y, dispersion)

    @staticmethod
    def _constant(total, log_y, dispersion):
        """``sum w (nu log nu + (nu - 1) log y - log Gamma(nu))``, ``nu = 1 / phi``."""
        nu = 1.0 / dispersion
        return total * (nu * np.log(nu) - float(gammaln(nu))) + (nu - 1.0) * log_y

    def _mean_derivatives(self, y, mu, dispersion):
        nu = 1.0 / dispersion
        return (nu * (y / mu - 1.0) / mu, nu * (1.0 - 2.0 * y / mu) / mu**2,
                nu * (6.0 * y / mu - 2.0) / mu**3, nu * (6.0 - 24.0 * y / mu) / mu**4)

    def derivatives(self, y, eta, w, dispersion=1.0, order=2):
        if self.link.name != "log":
            return super().derivatives(y, eta, w, dispersion, order)
        # log link, in closed form (the chain rule's powers of mu would over- or underflow)
        nu = w / dispersion
        t = y * np.exp(-eta)
        W = nu * t
        return (nu * (t - 1.0), W, -W, W)[:order]

    def constant_slopes_function(self, y, w):
        """From ``sum w`` and ``sum w log y``, as :meth:`constant_function` (``d/ds = -nu d/dnu``)."""
        total, log_y = float(np.sum(w)), float(np.sum(w * np.log(y)))

        def slopes(dispersion=1.0):
            nu = 1.0 / dispersion
            dc_dnu = (np.log(nu) + 1.0 - float(digamma(nu))) * total + log_y
            return -nu * dc_dnu, nu * dc_dnu + nu * (1.0 - nu * float(polygamma(1, nu))) * total

        return slopes

    def _log_mean_plus_ratio(self, y, eta):
        """``log mu + y / mu``: the kernel is ``-nu w`` times it."""
        log_mu = eta if self.link.name == "log" else -np.log(eta)
        return log_mu + y * np.exp(-log_mu)

    def dispersion_derivatives(self, y, eta, w, dispersion):
        nu = 1.0 / dispersion
        d1, W = self.derivatives(y, eta, w, dispersion, order=2)
        # d/ds = -nu d/dnu, and the kernel and every derivative in eta are proportional to nu
        return nu * w * self._log_mean_plus_ratio(y, eta), -d1, -W

    def dispersion_second_derivatives(self, y, eta, w, dispersion):
        nu = 1.0 / dispersion
        d1, W, W1 = self.derivatives(y, eta, w, dispersion, order=3)
        return -nu * w * self._log_mean_plus_ratio(y, eta), d1, W, -W1

    def variance(self, mu, dispersion=1.0):
        return dispersion * mu * mu

    def simulate(self, mu, w, dispersion, rng):
        return rng.gamma(1.0 / dispersion, mu * dispersion)

    def unit_deviance(self, y, mu, dispersion=1.0):
        return 2.0 * ((y - mu) / mu - np.log(y / mu))

    def start_mean(self, y, w):
        return y.astype(float)

    def start_dispersion(self, y, mu, w):
        """Moments: the weighted mean of the squared Pearson residuals ``(y - mu)^2 / mu^2``."""
        return float(np.clip(np.sum(w * ((y - mu) / mu) ** 2) / np.sum(w), 1e-6, 1e6))

    def check_response(self, y, w):
        if np.any(y <= 0):
            raise ValueError("the gamma family needs positive y")


FAMILIES = {cls.name: cls for cls in (Binomial, Poisson, NegativeBinomial, Gamma)}

#: The dispersion is held within ``exp(-+MAX_LOG_DISPERSION)``: beyond, a Gamma's phi of 0
#: is a perfect fit (a likelihood without maximum, which the estimators report) and an
#: NB2's theta of infinity is the Poisson model.
MAX_LOG_DISPERSION = 30.0


def dispersion_from_log(s):
    """The dispersion at the search's coordinate ``s = log(dispersion)``, held in range."""
    return float(np.exp(min(max(float(s), -MAX_LOG_DISPERSION), MAX_LOG_DISPERSION)))


def get_family(family, link=None):
    """A :class:`Family` from its name (``"binomial"``, ``"poisson"``, ``"negative_binomial"``,
    ``"gamma"``) and link (None: the family's default)."""
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            raise ValueError(f"family {family!r} already has a link; got link={link!r} too")
        return family
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}; got {family!r}")
    return _family(family, link)


@lru_cache(maxsize=None)
def _family(name, link):
    """One (stateless) family object per name and link."""
    return FAMILIES[name](link)
