"""Search in centred random-slope coordinates, report in the user's.

A random slope on a predictor far from 0 (years of education, 0 to 25) makes the
intercept's variance and its covariance with the slope strongly entangled: theta's
deviance surface is a long curved valley and the search needs many steps. Centring the
slope covariates within the random-effect design is only a change of coordinates of
the same model: with ``z_c = z A'`` (``A`` lower triangular, first column ``[1, -c]``)
the random part ``z_c' b_c`` equals ``z' b`` for ``b = A' b_c``. So the search runs on
centred covariates, and the covariance, theta and conditional modes are mapped back:
``Sigma = A' Sigma_c A``, ``T T' = (A' T_c)(A' T_c)'``.

Only factors with a random intercept and correlated terms are centred: without an
intercept, or with uncorrelated terms, centring would change the model.
"""

import numpy as np


def centring_map(factor, sum_weights):
    """``A`` for one factor (its weighted slope means below the first entry), or None."""
    if factor.q < 2 or factor.diagonal or not factor.intercept:
        return None
    means = factor.z_weighted_sum[1:] / sum_weights
    if not np.any(means):
        return None
    A = np.eye(factor.q)
    A[1:, 0] = -means
    return A


def centre_factors(statistics):
    """The statistics of the centred slope covariates, and one map ``A`` (or None) per factor."""
    maps = [centring_map(f, statistics.sum_weights) for f in statistics.factors]
    return statistics.transformed(maps), maps


def raw_theta(factors, maps, theta_pieces):
    """theta of the user's coordinates from the centred search's, factor by factor."""
    out = []
    for f, A, th in zip(factors, maps, theta_pieces):
        if A is None:
            out.append(np.asarray(th, dtype=float))
            continue
        B = A.T @ f.cholesky_factor(th)
        T = np.linalg.qr(B.T, mode="r").T  # lower triangular, T T' = B B'
        T = T * np.where(np.diag(T) < 0, -1.0, 1.0)[None, :]
        out.append(f.theta_from_cholesky(T))
    return np.concatenate(out)


def raw_modes(factors, maps, modes):
    """Conditional modes in the user's coordinates: each level's row ``b_c`` becomes ``b_c A``."""
    return {f.name: modes[f.name] if A is None else modes[f.name] @ A for f, A in zip(factors, maps)}
