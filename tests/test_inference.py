"""Wald intervals, the parametric bootstrap, conditional variances of the random effects and
convergence diagnostics, against lme4 (tests/golden/inference_*.json, made by
tests/golden/make_inference.R)."""

import io
import json
import pickle

import numpy as np
import pytest
from scipy.stats import norm

from golden_cases import GOLDEN, case_names, estimator_inputs, load_case
from skmlm import MixedLinearRegressor, MixedLogisticClassifier
from skmlm._core.bootstrap import ResponseSimulator
from skmlm._core.derived import with_response
from skmlm._core.design import split_theta
from skmlm._core.statistics import LinearMixedStatistics
from skmlm._core.condvar import glmm_conditional_covariances, lmm_conditional_covariances
from skmlm._core.lmm import LinearMixedModel
from skmlm._inference import _ProgressBar

GAUSSIAN = case_names("gaussian")
BINOMIAL = case_names("binomial")


def _fit(name):
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    if ref["family"] == "binomial":
        return ref, MixedLogisticClassifier(n_quadrature_points=ref["nAGQ"], **params).fit(X, y, groups=groups)
    return ref, MixedLinearRegressor(**params).fit(X, y, groups=groups)


def _inference(name):
    return json.loads((GOLDEN / f"inference_{name}.json").read_text())


def _na(values):
    return np.array([np.nan if v is None else v for v in values], dtype=float)


@pytest.fixture(scope="module")
def sleepstudy_ml():
    return _fit("sleepstudy_rs_ml")[1]


# -- Wald ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GAUSSIAN + BINOMIAL)
def test_wald_intervals_match_lme4(name):
    """Fixed effects: estimate -+ 1.96 SE; the variance parameters NA, as lme4."""
    ref, m = _fit(name)
    exp = _inference(name)["confint_wald"]
    got = m.confint(method="wald")
    assert list(got.index) == exp["names"]
    se = np.array(list(ref["fixef_se"].values()))
    # gaussian: SEs agree to 1e-3. binomial: lme4's vcov comes from a plain finite-difference
    # Hessian that is 0.5-1.3% off (a Richardson-extrapolated Hessian confirms skmlm's SEs)
    rel = 2e-3 if ref["family"] == "gaussian" else 3e-2
    tol = np.r_[np.zeros(len(got) - len(se)), rel * se + 1e-6]
    lo, hi = _na(exp["lower"]), _na(exp["upper"])
    at = GOLDEN / f"{name}.at_theta.json"
    if at.exists():  # lme4 stopped short of the optimum: lme4's Wald interval at skmlm's theta
        at = json.loads(at.read_text())
        b, s = np.array(list(at["fixef"].values())), np.array(list(at["fixef_se"].values()))
        nv = len(got) - len(b)
        lo[nv:], hi[nv:] = b - norm.ppf(0.975) * s, b + norm.ppf(0.975) * s
    assert np.array_equal(np.isnan(lo), got.iloc[:, 0].isna().to_numpy())
    ok = ~np.isnan(lo)
    assert np.all(np.abs(got.iloc[:, 0].to_numpy()[ok] - lo[ok]) <= tol[ok])
    assert np.all(np.abs(got.iloc[:, 1].to_numpy()[ok] - hi[ok]) <= tol[ok])


def test_logistic_table_has_wald_z_tests():
    ref, m = _fit("cbpp_binary_laplace")
    t = m.fixed_effects_table()
    assert list(t.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)", "2.5 %", "97.5 %"]
    np.testing.assert_allclose(t["Pr(>|z|)"], m.fixed_effects_["Pr(>|z|)"])
    # lme4's default, for glmer too (the same up to the modes' warm starts)
    np.testing.assert_allclose(m.confint(), m.confint(method="profile"), rtol=1e-6)


# -- bootstrap -------------------------------------------------------------------------------
def _rank_band(reps, q, width=4.0):
    """A distribution-free Monte Carlo band for the q-quantile of ``reps``: the order
    statistics ``B q -+ width sqrt(B q (1 - q))``."""
    x = np.sort(reps)
    B = len(x)
    half = width * np.sqrt(B * q * (1 - q))
    lo = int(np.clip(np.floor(B * q - half), 0, B - 1))
    hi = int(np.clip(np.ceil(B * q + half), 0, B - 1))
    return x[lo], x[hi]


@pytest.fixture(scope="module")
def bootstrap(sleepstudy_ml):
    reps = sleepstudy_ml.parametric_bootstrap(200, random_state=20240501, progress=False)
    return reps


def test_bootstrap_is_reproducible_and_converges(sleepstudy_ml, bootstrap):
    assert bootstrap.shape == (200, 6)
    assert bootstrap.attrs["converged"].mean() >= 0.99
    again = sleepstudy_ml.parametric_bootstrap(5, random_state=20240501, progress=False)
    np.testing.assert_allclose(again.to_numpy(), bootstrap.to_numpy()[:5], rtol=1e-6)
    ci = sleepstudy_ml.confint(method="bootstrap", n_boot=5, random_state=20240501, progress=False)
    np.testing.assert_allclose(ci.iloc[:, 0], np.quantile(again.to_numpy(), 0.025, axis=0), rtol=1e-6)


def test_bootstrap_matches_lme4_bootstrap_within_monte_carlo_error(bootstrap):
    """200 replicates against lme4's 2000: every end inside the rank band of ours
    (B q -+ 4 sqrt(B q (1-q)) order statistics; lme4's own Monte Carlo error is a third of ours)."""
    exp = _inference("sleepstudy_rs_ml")["confint_boot"]
    for k, name in enumerate(exp["names"]):
        for q, ref in ((0.025, exp["lower"][k]), (0.975, exp["upper"][k])):
            lo, hi = _rank_band(bootstrap[name].to_numpy(), q)
            assert lo - 1e-9 <= ref <= hi + 1e-9, (name, q, lo, ref, hi)


def test_bootstrap_close_to_profile_for_fixed_effects_and_sigma(bootstrap):
    """Bootstrap and profile intervals of the fixed effects and sigma agree within the
    Monte Carlo band widened by 0.15 standard errors (the methods differ slightly). The
    SDs of the random effects are not compared: ML estimates of them are biased low, so
    the percentile bootstrap sits below the profile interval (lme4's own bootstrap
    with 2000 replicates gives .sig01 from 10.8, the profile from 14.4)."""
    exp = _inference("sleepstudy_rs_ml")["confint_profile"]
    for k, name in enumerate(exp["names"]):
        if name.startswith(".sig0"):
            continue
        sd = bootstrap[name].std()
        for q, ref in ((0.025, exp["lower"][k]), (0.975, exp["upper"][k])):
            lo, hi = _rank_band(bootstrap[name].to_numpy(), q)
            assert lo - 0.15 * sd <= ref <= hi + 0.15 * sd, (name, q, lo, ref, hi)


def _rows(name):
    """The fitted model of a golden case and its rows as the fit saw them."""
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    m = MixedLinearRegressor(**params).fit(X, y, groups=groups)
    return m, MixedLinearRegressor(**params)._prepare_fit(X, y, groups, None)


def test_bootstrap_refit_reuses_cross_products():
    """Replacing only the response's cross-products gives the model built from scratch
    (two grouping factors, so the second block's response part is checked too)."""
    m, d = _rows("penicillin_crossed_reml")
    model = m._core_model()
    rng = np.random.default_rng(0)
    theta = np.array([1.1, 2.5])
    w = d["w"]
    for _ in range(3):
        y = d["y"] + rng.normal(size=len(d["y"]))
        direct = LinearMixedModel(LinearMixedStatistics.from_rows(d["factors"], d["Xf"], y, w), reml=True)
        zy = np.concatenate([f.design_matrix().T @ (w * y) for f in d["factors"]])
        replaced = with_response(model, d["Xf"].T @ (w * y), float(y @ (w * y)), zy)
        # the two sum the cross-products in different orders: equal to rounding, ~1e-12 after pwrss's cancellation
        assert replaced.objective(theta) == pytest.approx(direct.objective(theta), rel=1e-10)


def test_simulated_statistics_have_the_distribution_of_simulated_rows():
    """The bootstrap draws the response's cross-products from the statistics; their mean and
    covariance equal those of cross-products of responses simulated row by row."""
    m, d = _rows("sleepstudy_rs_ml")
    model = m._core_model()
    theta, beta, sigma = m.theta_, m._beta(), m._sigma()
    sim = ResponseSimulator(model)
    rng = np.random.default_rng(3)
    k = 4000
    drawn = np.array([np.concatenate([xy, [yy], zy]) for xy, yy, zy in
                      (sim.draw(theta, beta, sigma, rng) for _ in range(k))])
    w, Xf = d["w"], d["Xf"]
    Z = np.hstack([f.design_matrix().toarray() for f in d["factors"]])
    rows = []
    for _ in range(k):
        y = Xf @ beta + sigma * rng.normal(size=len(w)) / np.sqrt(w)
        for f, th in zip(d["factors"], split_theta(d["factors"], theta)):
            b = sigma * rng.normal(size=(f.n_levels, f.q)) @ f.cholesky_factor(th).T
            y += np.einsum("ij,ij->i", f.z, b[f.codes])
        rows.append(np.concatenate([Xf.T @ (w * y), [y @ (w * y)], Z.T @ (w * y)]))
    rows = np.array(rows)
    sd = rows.std(axis=0)
    # means within 5 Monte Carlo standard errors (of the difference of two means)
    assert np.all(np.abs(drawn.mean(axis=0) - rows.mean(axis=0)) <= 5 * sd * np.sqrt(2 / k))
    # standard deviations within 10% (Monte Carlo error ~2-3%)
    np.testing.assert_allclose(drawn.std(axis=0), sd, rtol=0.1)


def _dense_gram(model):
    """``G = [X Z]'W[X Z]`` formed whole from the statistics (the model's order of factors)."""
    stats, p = model.statistics, model.p
    every = range(len(stats.factors))
    zx = stats.random_x_cross(every)[:, :p]
    return np.block([[stats.xy_cross[:p, :p], zx.T], [zx, stats.random_cross_dense(every)]])


def _residual_map(sim):
    """The matrix ``M`` of ``[X Z]'W e* / sigma = M [t, g]`` (one column per coordinate)."""
    m1, q1 = sim.shape1
    eye = np.eye(m1 * q1 + sim.R2.shape[1])
    return np.column_stack([sim.residual_cross(e[: m1 * q1].reshape(m1, q1), e[m1 * q1 :]) for e in eye])


@pytest.mark.parametrize("name, scale", [
    ("sleepstudy_rs_ml", 1.0),  # one factor, a random slope
    ("sleepstudy_diag_reml", 1.0),
    ("penicillin_crossed_reml", 1.0),  # crossed factors
    ("pastes_nested_reml", 1.0),  # nested: the outer factor lies in the span of the inner one
    ("ess_bw_gni_ml", 1.0),  # a between-level covariate
    ("ess_bw_gni_ml", 2.0**30),
    ("ess_bw_slope_cross_ml", 2.0**-30),
])
def test_simulated_statistics_have_the_exact_moments(name, scale):
    """The blocked simulator's cross-products ``G c + sigma M [t, g]`` have the mean
    ``G c`` and the covariance ``sigma^2 M M' = sigma^2 G`` of cross-products of simulated
    rows, exactly (to rounding), and ``eps'eps`` the right split: ``[t, g]`` spans the rank of
    ``G`` (what a between-level covariate or a nested factor adds to the largest factor's span
    counts for nothing, in any units of X)."""
    ref, data = load_case(name)
    X, y, groups, params = estimator_inputs(ref, data)
    m = MixedLinearRegressor(**params).fit(X * scale, y, groups=groups)
    model = m._core_model()
    sim = ResponseSimulator(model)
    G = _dense_gram(model)
    M = _residual_map(sim)
    d = np.sqrt(np.diag(G))
    np.testing.assert_allclose((M @ M.T) / np.outer(d, d), G / np.outer(d, d), rtol=0, atol=1e-13)
    # the rank of G: numpy's and the simulator's may differ only by singular values at
    # rounding level (a covariate in a factor's span leaves a few near numpy's cut, and
    # which side of it they fall depends on the BLAS's summation order)
    s = np.linalg.svd(G / np.outer(d, d), compute_uv=False)
    cut = s[0] * len(s) * np.finfo(float).eps
    lo, hi = sorted((sim.rank, int(np.sum(s > cut))))
    assert np.all(s[lo:hi] < 100 * cut)
    c = np.random.default_rng(1).normal(size=G.shape[0]) / d
    np.testing.assert_allclose(sim.cross(c), G @ c, rtol=1e-12, atol=1e-12 * np.abs(G @ c).max())


def test_simulated_response_square_has_its_mean():
    """``E[y*'Wy*] = beta'X'WX beta + sigma^2 (sum_f tr(Z_f'WZ_f (I x T_f T_f')) + n)``, from
    ``y*'Wy* = c'Gc + 2 c's_e + sigma^2 eps'eps`` as drawn (crossed factors)."""
    m, d = _rows("penicillin_crossed_reml")
    model = m._core_model()
    theta, beta, sigma = m.theta_, m._beta(), m._sigma()
    sim = ResponseSimulator(model)
    G = _dense_gram(model)
    p = model.p
    cov_b = [np.kron(np.eye(f.n_levels), f.cholesky_factor(th) @ f.cholesky_factor(th).T)
             for f, th in zip(model.factors, split_theta(model.factors, theta))]
    sizes = np.cumsum([p] + [c.shape[0] for c in cov_b])
    expected = beta @ G[:p, :p] @ beta + sigma**2 * (model.n + sum(
        np.trace(G[a:b, a:b] @ c) for a, b, c in zip(sizes[:-1], sizes[1:], cov_b)))
    rng = np.random.default_rng(5)
    k = 4000
    yy = np.array([sim.draw(theta, beta, sigma, rng)[1] for _ in range(k)])
    assert abs(yy.mean() - expected) <= 5 * yy.std() / np.sqrt(k)


def test_bootstrap_of_a_factor_with_many_levels():
    """7000 levels (more random effects than a dense square root of ``G`` would take):
    the bootstrap needs only the per-level blocks and the fixed effects' Schur complement."""
    rng = np.random.default_rng(0)
    m_levels = 7000
    g = np.repeat(np.arange(m_levels), 2)
    x = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x + rng.normal(size=m_levels)[g] + rng.normal(size=g.size)
    m = MixedLinearRegressor().fit(x[:, None], y, groups=g)
    model = m._core_model()
    sim = ResponseSimulator(model)
    assert sim.rank == m_levels + 1  # the intercept lies in the span of the levels; x does not
    boot = m.parametric_bootstrap(3, random_state=0, progress=False)
    assert boot.shape == (3, 4) and boot.attrs["converged"].all()
    assert np.all(np.abs(boot["x0"] - 0.5) < 0.1)


def _lme4_postvar(block):
    arr = _na(block["values"]).reshape(block["dim"], order="F")  # q x q x levels
    return arr.transpose(2, 0, 1)


@pytest.mark.parametrize("name", GAUSSIAN + BINOMIAL)
def test_condvar_at_lme4_parameters(name):
    """lme4's postVar at lme4's own estimates, for every case: one and several factors,
    correlated and diagonal terms (lme4 gives only the variances there), both families."""
    ref, m = _fit(name)
    model = m._core_model()
    inf = _inference(name)  # lme4's estimates in the run that made the reference
    theta = np.array(inf["theta"])
    if ref["family"] == "gaussian":
        covs = lmm_conditional_covariances(model, theta, inf["sigma"] ** 2)
    else:
        covs = glmm_conditional_covariances(model, theta, np.array(inf["fixef"]))
    by_name = {f.name: c for f, c in zip(model.factors, covs)}
    for block in _inference(name)["condvar"]:
        exp = _lme4_postvar(block)
        got = by_name[block["group"]][m.random_effects_[block["group"]].index.get_indexer(block["levels"])]
        ok = np.isfinite(exp)
        scale = max(np.abs(exp[ok]).max(), 1e-300)
        # binomial: lme4 takes M at the weights of its last PIRLS iteration, converged more
        # loosely than skmlm's (the modes to ~1e-10); the difference is ~1e-4 relative
        rtol, atol = (1e-5, 1e-7) if ref["family"] == "gaussian" else (2e-4, 1e-4)
        np.testing.assert_allclose(got[ok], exp[ok], rtol=rtol, atol=atol * scale)


def test_condvar_estimator_accessor(sleepstudy_ml):
    sd = sleepstudy_ml.random_effects_variance()["g_Subject"]
    cov = sleepstudy_ml.random_effects_variance("covariance")["g_Subject"]
    assert sd.shape == sleepstudy_ml.random_effects_["g_Subject"].shape
    assert list(sd.index) == list(sleepstudy_ml.random_effects_["g_Subject"].index)
    np.testing.assert_allclose(sd.to_numpy() ** 2, np.diagonal(cov, axis1=1, axis2=2))
    exp = _lme4_postvar(_inference("sleepstudy_rs_ml")["condvar"][0])
    np.testing.assert_allclose(cov, exp, rtol=2e-4)  # at skmlm's estimates
    with pytest.raises(ValueError, match="kind"):
        sleepstudy_ml.random_effects_variance("var")


# -- convergence and singular fits -------------------------------------------------------------
def test_convergence_diagnostics(sleepstudy_ml):
    c = sleepstudy_ml.convergence_
    assert c["converged"] and not c["singular"] and c["singular_explanation"] == ""
    assert c["max_abs_gradient"] < 1e-3
    assert list(c["gradient"].index) == ["theta_0", "theta_1", "theta_2"]
    assert np.all(c["hessian_eigenvalues"] > 0)
    lme4_hessian = np.array(_inference("sleepstudy_rs_ml")["derivs"]["hessian"]).reshape(3, 3)
    # lme4's Hessian: plain finite differences at lme4's optimum (a little off ours)
    np.testing.assert_allclose(c["hessian"].to_numpy(), lme4_hessian, rtol=0, atol=5e-3 * np.abs(lme4_hessian).max())
    assert list(c["gradient_sd"].index) == [".sig01", ".sig02", ".sig03", ".sigma"]
    assert np.abs(c["gradient_sd"]).max() < 1e-3
    H = c["hessian_sd"].to_numpy()
    assert np.allclose(H, H.T) and np.all(np.linalg.eigvalsh(H) > 0)


def test_singular_fit_is_explained():
    ref, m = _fit("dyestuff2_ml_singular")
    assert m.singular_
    text = m.singular_explanation_
    assert "variance of '(Intercept)' between levels of 'g_Batch' is estimated as 0" in text.replace("\n", " ")
    assert "What you can do" in text
    assert "boundary (singular) fit:" in m.summary()
    c = m.convergence_
    assert c["singular"] and c["converged"]
    assert c["gradient"].iloc[0] >= 0  # a one-sided slope up from the bound: the optimum
    assert np.isnan(c["hessian"].iloc[0, 0])  # no curvature across the bound


def test_logistic_convergence_diagnostics():
    ref, m = _fit("cbpp_binary_laplace")
    c = m.convergence_
    assert list(c["gradient"].index) == ["theta_0", "(Intercept)", "period2", "period3", "period4"]
    assert c["max_abs_gradient"] < 1e-3 and np.all(c["hessian_eigenvalues"] > 0)


# -- state and errors -------------------------------------------------------------------------
def test_pickle_after_inference(sleepstudy_ml):
    sleepstudy_ml.random_effects_variance()
    clone = pickle.loads(pickle.dumps(sleepstudy_ml))
    assert "_inference_cache" not in clone.__dict__ or not clone._inference_cache
    np.testing.assert_allclose(clone.confint(method="wald"), sleepstudy_ml.confint(method="wald"))
    pd_two = _fit("penicillin_crossed_reml")[1]
    pd_two.fixed_effects_table()  # caches a core model with a closure
    pickle.loads(pickle.dumps(pd_two)).random_effects_variance()


def test_bad_arguments(sleepstudy_ml):
    with pytest.raises(ValueError, match="method"):
        sleepstudy_ml.confint(method="exact")
    with pytest.raises(ValueError, match="level"):
        sleepstudy_ml.confint(level=95)
    with pytest.raises(ValueError, match="unknown parameter"):
        sleepstudy_ml.confint(parm=["Hours"])
    with pytest.raises(ValueError, match="n_boot"):
        sleepstudy_ml.parametric_bootstrap(0)


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MixedLinearRegressor().confint()
