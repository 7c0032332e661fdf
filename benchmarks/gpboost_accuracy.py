"""What accuracy gpboost's iterative fit of a crossed design reaches, and at what CPU cost.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/gpboost_accuracy.py \
        [--problem crossed_200k_5000x5000] [SETTING ...]

gpboost's default for several grouping factors is iterative: conjugate gradients and
stochastic Lanczos quadrature for the log-determinants, with ``num_rand_vec_trace``
random vectors; its logLik is then a stochastic estimate, and so is the optimum it finds.
Each SETTING (``name=k:v,k:v``, the keys of ``GPModel.set_optim_params``; default: the
grid below) is fitted once, single-threaded, timed by ``time.process_time``, and the
exact log-likelihood at its estimates (beta, sigma^2 and the two variances) is computed
by skmlm's exact factorisation (untimed), next to skmlm's own optimum (the best logLik).

The exact logLik at given (beta, sigma^2, theta): with ``D`` skmlm's decomposition at
theta, ``-(logdet_z + n log(2 pi sigma^2) + r(beta) / sigma^2) / 2`` with
``r(beta) = pwrss + |Lx' (beta - beta_hat)|^2`` (beta_hat the profiled one).
"""

import argparse
import sys
import time

import numpy as np

from problems import get_problems

GRID = [
    "default=",
    "vec200=num_rand_vec_trace:200",
    "vec1000=num_rand_vec_trace:1000",
    "conv1e-8=delta_rel_conv:1e-8",
    "vec200_cg1e-4_conv1e-8=num_rand_vec_trace:200,cg_delta_conv:1e-4,delta_rel_conv:1e-8",
    "vec1000_cg1e-4_conv1e-8=num_rand_vec_trace:1000,cg_delta_conv:1e-4,delta_rel_conv:1e-8",
    "seed2=seed_rand_vec_trace:2",
    "seed3=seed_rand_vec_trace:3",
]


def parse(setting):
    name, _, spec = setting.partition("=")
    params = {}
    for item in filter(None, spec.split(",")):
        k, v = item.split(":")
        params[k] = int(v) if v.lstrip("-").isdigit() else float(v)
    return name, params


def exact_loglik(model, factor_order, beta, sigma2, variances):
    """The exact log-likelihood at (beta, sigma^2, the factors' variances)."""
    theta = np.sqrt(np.asarray([variances[name] for name in factor_order]) / sigma2)
    dec = model.decompose(theta)
    beta_hat = model._beta(dec)
    r = dec.pwrss + float(np.sum((dec.Lx.T @ (beta - beta_hat)) ** 2))
    n = model.n
    return -0.5 * (dec.logdet_z + n * np.log(2 * np.pi * sigma2) + r / sigma2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--problem", default="crossed_200k_5000x5000")
    parser.add_argument("settings", nargs="*")
    args = parser.parse_args()
    import gpboost as gpb
    from skmlm import MixedLinearRegressor
    from skmlm._core.lmm import LinearMixedModel

    problem = get_problems([args.problem])[0]
    df = problem.data
    gcols = problem.group_columns
    y = df[problem.y].to_numpy(dtype=float)
    X = np.column_stack([np.ones(len(df))] + [df[c].to_numpy(dtype=float) for c in problem.fixed])
    sk = MixedLinearRegressor(reml=False).fit(df[problem.fixed], y, groups=df[gcols])
    model = LinearMixedModel(sk.statistics_, reml=False)
    order = [f.name for f in model.factors]
    best = sk.log_likelihood_
    print(f"{args.problem}: skmlm logLik {best:.6f} (factors {order})", flush=True)
    for setting in args.settings or GRID:
        name, params = parse(setting)
        m = gpb.GPModel(group_data=df[gcols].to_numpy(), likelihood="gaussian", num_parallel_threads=1)
        if params:
            m.set_optim_params(params=params)
        cpu, wall = time.process_time(), time.perf_counter()
        m.fit(y=y, X=X)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        cov = np.asarray(m.get_cov_pars(format_pandas=False), dtype=float).ravel()
        beta = np.asarray(m.get_coef(format_pandas=False), dtype=float).ravel()
        variances = dict(zip(gcols, cov[1:]))
        exact = exact_loglik(model, order, beta, cov[0], variances)
        reported = -float(m.get_current_neg_log_likelihood())
        print(f"{name:28s} CPU {cpu:7.2f} s  wall {wall:7.2f} s  reported {reported:.6f}  "
              f"exact {exact:.6f}  exact - best {exact - best:+.2e}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
