"""Rectangular full packed storage (:mod:`skmlm._core.packed`) and the packed route of
the blocked factorisation, against LAPACK's own conversion and the dense route."""

import numpy as np
import pytest
from scipy.linalg import lapack

from skmlm._core.packed import PackedCholesky, packed_diagonal, packed_positions, packed_rows_cols, packed_size


@pytest.mark.parametrize("n", [1, 2, 5, 6, 11, 12])
def test_packed_positions_are_lapacks_layout(n):
    """The positions of the lower triangle are where LAPACK's ``dtrttf`` puts its entries,
    every position once; :func:`packed_rows_cols` inverts them."""
    a = np.random.default_rng(n).normal(size=(n, n))
    arf, info = lapack.dtrttf(a, transr="N", uplo="L")
    assert info == 0
    rows, cols = np.tril_indices(n)
    positions = packed_positions(rows, cols, n)
    np.testing.assert_array_equal(np.sort(positions), np.arange(packed_size(n)))
    np.testing.assert_array_equal(arf[positions], a[rows, cols])
    back_rows, back_cols = packed_rows_cols(positions, n)
    np.testing.assert_array_equal(back_rows, rows)
    np.testing.assert_array_equal(back_cols, cols)
    np.testing.assert_array_equal(packed_diagonal(n), packed_positions(np.arange(n), np.arange(n), n))


def packed_factor(n):
    """``(rng, a, rows, cols, factor)``: a random positive definite ``a`` of order ``n``,
    its lower triangle's indices and its packed Cholesky factor."""
    rng = np.random.default_rng(n)
    b = rng.normal(size=(n, n))
    a = b @ b.T + n * np.eye(n)
    rows, cols = np.tril_indices(n)
    packed = np.zeros(packed_size(n))
    packed[packed_positions(rows, cols, n)] = a[rows, cols]
    return rng, a, rows, cols, PackedCholesky(packed, n)


@pytest.mark.parametrize("n", [1, 7, 8])
def test_packed_cholesky_equals_the_dense_one(n):
    rng, a, rows, cols, factor = packed_factor(n)
    L = np.linalg.cholesky(a)
    np.testing.assert_allclose(factor.dense(), L, rtol=1e-12, atol=1e-12)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(a)[1], rel=1e-12)
    rhs = rng.normal(size=(n, 3))
    np.testing.assert_allclose(factor.solve(rhs), np.linalg.solve(L, rhs), rtol=1e-10)
    np.testing.assert_allclose(factor.solve(rhs[:, 0], trans=True), np.linalg.solve(L.T, rhs[:, 0]), rtol=1e-10)


def test_packed_cholesky_of_an_indefinite_matrix_fails_clearly():
    packed = np.zeros(packed_size(3))
    packed[packed_diagonal(3)] = [1.0, -1.0, 1.0]
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        PackedCholesky(packed, 3)


@pytest.mark.parametrize("reml", [False, True])
def test_packed_route_gives_the_dense_routes_estimates(reml, monkeypatch):
    """Three crossed factors (the two after the largest scaled by their own thetas): the
    deviance, the fixed effects, the modes and the conditional covariances with the
    Schur complement packed equal those with it dense."""
    import skmlm._core.coupling as coupling
    import skmlm._core.lmm as core
    from skmlm._core.condvar import lmm_conditional_covariances
    from skmlm._core.design import RandomFactor
    from skmlm._core.statistics import LinearMixedStatistics

    monkeypatch.setattr(core, "MAX_DENSE_GRADIENT", 0)
    rng = np.random.default_rng(11)
    n = 400
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.5] + rng.normal(size=n)
    factors = []
    for k, m in enumerate((40, 25, 9)):
        codes = rng.integers(0, m, size=n)
        factors.append(RandomFactor(f"g{k}", codes, np.arange(m), np.ones((n, 1)), ["(Intercept)"], False))
        y = y + rng.normal(size=m)[codes]
    w = rng.uniform(0.5, 2.0, size=n)
    theta = np.array([0.8, 1.3, 0.4])
    results = {}
    for packed in (False, True):
        monkeypatch.setattr(coupling, "MIN_PACKED_ENTRIES", 0 if packed else 2**62)
        model = core.LinearMixedModel(LinearMixedStatistics.from_rows(factors, X, y, w), reml)
        assert model.cp.second.packed == packed
        est = model.estimates(theta)
        results[packed] = (model.objective(theta), est["beta"], est["random_effects"],
                           lmm_conditional_covariances(model, theta, est["sigma2"]))
    (dev0, beta0, modes0, cv0), (dev1, beta1, modes1, cv1) = results[False], results[True]
    assert dev1 == pytest.approx(dev0, rel=1e-12)
    np.testing.assert_allclose(beta1, beta0, rtol=1e-10)
    for name in modes0:
        np.testing.assert_allclose(modes1[name], modes0[name], rtol=1e-9, atol=1e-12)
    assert len(cv1) == len(cv0) == 3
    for a, b in zip(cv1, cv0):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("n", [1, 6, 9])
def test_packed_inverse_and_its_frobenius_norm(n):
    """``invert`` gives the lower triangle of the inverse in the same layout, and
    :func:`packed_frobenius2` the sum of squares of the whole symmetric matrix."""
    from skmlm._core.packed import packed_frobenius2

    rng, a, rows, cols, factor = packed_factor(n)
    rhs = rng.normal(size=(n, 2))
    np.testing.assert_allclose(factor.solve_matrix(rhs), np.linalg.solve(a, rhs), rtol=1e-10)
    inverse = factor.invert()
    expected = np.linalg.inv(a)
    np.testing.assert_allclose(inverse[packed_positions(rows, cols, n)], expected[rows, cols], rtol=1e-10)
    assert packed_frobenius2(inverse, n) == pytest.approx((expected**2).sum(), rel=1e-12)


def test_packed_adjoint_equals_the_dense_one():
    """The pair expansion's adjoint reads a packed array as it reads the full square."""
    import scipy.sparse as sp

    from skmlm._core.coupling import PairExpansion

    rng = np.random.default_rng(5)
    size, m1 = 13, 9
    a21 = sp.random(size, m1, density=0.4, random_state=rng, format="csr")
    c = rng.normal(size=(size, size))
    c = c + c.T
    rows, cols = np.tril_indices(size)
    packed = np.zeros(packed_size(size))
    packed[packed_positions(rows, cols, size)] = c[rows, cols]
    dense = PairExpansion(a21, 1).adjoint(c)
    np.testing.assert_allclose(PairExpansion(a21, 1, packed=True).adjoint(packed), dense, rtol=1e-12)
    expected = np.einsum("ia,ij,ja->a", a21.toarray(), c, a21.toarray())
    np.testing.assert_allclose(dense[:, 0, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("size", [1, 5, 2**20 + 3, 3 * 2**20])
def test_single_in_place_rounds_every_number(size):
    from skmlm._core.packed import single_in_place

    a = np.random.default_rng(size).normal(size=size)
    expected = a.astype(np.float32)
    out = single_in_place(a)
    assert out.dtype == np.float32 and np.shares_memory(out, a)
    np.testing.assert_array_equal(out, expected)
