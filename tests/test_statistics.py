"""Mergeable statistics of a linear mixed model: adding them, fitting from chunks
(partial_fit) and from Dask partitions, and a fitted model that keeps no rows."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from skmlm import LinearMixedStatistics, MixedLinearRegressor, compare_models

CASES = {
    "random slope": dict(groups=["g"], random_slopes=["x1"]),
    "crossed": dict(groups=["a", "b"], random_slopes=None),
    "nested": dict(groups=["school", "district"], random_slopes={"school": ["x1"], "district": []}),
}


def make_frame(seed=0, n=1500):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x1": rng.normal(2.0, 1.0, n), "x2": rng.uniform(0, 10, n),
        "g": rng.integers(0, 40, n), "a": rng.integers(0, 25, n), "b": [f"b{k}" for k in rng.integers(0, 12, n)],
        "school": rng.integers(0, 60, n),
    })
    df["district"] = df["school"] // 6
    y = 1.0 + 0.5 * df["x1"] - 0.2 * df["x2"]
    y += rng.normal(0, 1.0, 40)[df["g"]] + rng.normal(0, 0.3, 40)[df["g"]] * df["x1"]
    y += rng.normal(0, 0.8, 25)[df["a"]] + rng.normal(0, 0.5, 12)[df["b"].str[1:].astype(int)]
    y += rng.normal(0, 0.7, 60)[df["school"]] + rng.normal(0, 0.6, 10)[df["district"]]
    df["y"] = y + rng.normal(0, 1.0, n)
    df["w"] = rng.uniform(0.5, 2.0, n)
    return df


@pytest.fixture(scope="module")
def frame():
    return make_frame()


def estimates(m):
    return np.concatenate([[m.intercept_], m.coef_, m.theta_, [m.residual_variance_]]
                          + [v.to_numpy().ravel() for v in m.random_effects_.values()])


def chunks(df, k, seed):
    """The rows of ``df`` shuffled and cut into ``k`` chunks."""
    shuffled = df.sample(frac=1.0, random_state=seed)
    return [shuffled.iloc[idx] for idx in np.array_split(np.arange(len(df)), k)]


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_fit_partial_fit_and_dask_agree(frame, case, reml):
    """In memory, over 10 chunks in shuffled order and on a Dask DataFrame of 8 partitions:
    the same log-likelihood (1e-8) and estimates (1e-8 relative), with weights."""
    dd = pytest.importorskip("dask.dataframe")
    import dask

    spec = CASES[case]
    cols, g = ["x1", "x2"], spec["groups"]
    params = dict(random_slopes=spec["random_slopes"], reml=reml)
    full = MixedLinearRegressor(**params).fit(frame[cols], frame["y"], groups=frame[g], sample_weight=frame["w"])
    part = MixedLinearRegressor(**params)
    for c in chunks(frame, 10, seed=1):
        part.partial_fit(c[cols], c["y"], groups=c[g], sample_weight=c["w"])
    ddf = dd.from_pandas(frame.sample(frac=1.0, random_state=2), npartitions=8)
    with dask.config.set(scheduler="synchronous"):
        dsk = MixedLinearRegressor(**params).fit(ddf[cols], ddf["y"], groups=ddf[g], sample_weight=ddf["w"])
    for other in (part, dsk):
        assert other.log_likelihood_ == pytest.approx(full.log_likelihood_, abs=1e-8)
        np.testing.assert_allclose(estimates(other), estimates(full), rtol=1e-8, atol=1e-10)
        for name in full.random_effects_:
            assert list(other.random_effects_[name].index) == list(full.random_effects_[name].index)
        assert other._fit_info["n_obs"] == len(frame)


def test_statistics_add_whatever_the_order_of_levels(frame):
    """``a + b`` are the statistics of the rows of both: in either order, with levels that
    arrive in any order (some in one chunk only), they equal those of all rows."""
    m = MixedLinearRegressor(random_slopes={"a": ["x1"], "b": []})
    cols, g = ["x1", "x2"], ["a", "b"]
    whole = m.fit(frame[cols], frame["y"], groups=frame[g], sample_weight=frame["w"]).statistics_
    first = frame[frame["a"] < 10].sample(frac=1.0, random_state=0)
    second = frame[frame["a"] >= 5 * 0 + 10][::-1]
    parts = []
    for c in (first, second):
        e = MixedLinearRegressor(random_slopes={"a": ["x1"], "b": []})
        parts.append(e.fit(c[cols], c["y"], groups=c[g], sample_weight=c["w"]).statistics_)
    for total in (parts[0] + parts[1], parts[1] + parts[0], sum(parts)):
        assert total.n == whole.n
        np.testing.assert_allclose(total.xy_cross, whole.xy_cross, rtol=1e-12)
        for f, h in zip(total.factors, whole.factors):
            assert list(f.levels) == list(h.levels)
            np.testing.assert_array_equal(f.counts, h.counts)
            np.testing.assert_allclose(f.a_zz, h.a_zz, rtol=1e-12)
            np.testing.assert_allclose(f.a_zx, h.a_zx, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(total.cross[(0, 1)].toarray(), whole.cross[(0, 1)].toarray(), rtol=1e-12)


def test_many_statistics_add_at_once_as_in_pairs(frame):
    """``sum_statistics`` (what a Dask reduction task does with several partitions) gives
    the statistics of all rows, with chunks that hold every level (added as they are) and
    chunks missing some (moved into the union of the levels)."""
    from skmlm._core.statistics import sum_statistics

    cols, g = ["x1", "x2"], ["a", "b"]

    def stats(c):
        e = MixedLinearRegressor(random_slopes={"a": ["x1"], "b": []})
        return e.fit(c[cols], c["y"], groups=c[g], sample_weight=c["w"]).statistics_

    whole = stats(frame)
    parts = [stats(c) for c in chunks(frame, 3, seed=1)]  # every level in each chunk
    parts += [stats(frame[frame["a"] < 8]), stats(frame[frame["a"] >= 8])]  # levels split
    assert len(parts[0].factors[0].levels) == len(whole.factors[0].levels)
    total = sum_statistics([parts[3]] + parts[:3] + [parts[4]])  # twice the rows: the 3 chunks and the split
    assert total.n == 2 * whole.n
    np.testing.assert_allclose(total.xy_cross, 2 * whole.xy_cross, rtol=1e-12)
    for f, h in zip(total.factors, whole.factors):
        assert list(f.levels) == list(h.levels)
        np.testing.assert_array_equal(f.counts, 2 * h.counts)
        np.testing.assert_allclose(f.a_zz, 2 * h.a_zz, rtol=1e-12)
        np.testing.assert_allclose(f.a_zx, 2 * h.a_zx, rtol=1e-12, atol=1e-12)
    block, ref = total.cross[(0, 1)], whole.cross[(0, 1)]
    assert block.has_canonical_format and block.nnz == ref.nnz
    np.testing.assert_allclose(block.toarray(), 2 * ref.toarray(), rtol=1e-12)


def test_statistics_of_different_models_do_not_add(frame):
    a = MixedLinearRegressor().fit(frame[["x1"]], frame["y"], groups=frame["g"]).statistics_
    b = MixedLinearRegressor(random_slopes=["x1"]).fit(frame[["x1"]], frame["y"], groups=frame["g"]).statistics_
    with pytest.raises(ValueError, match="different models"):
        a + b
    with pytest.raises(TypeError):
        a + np.ones(3)


def test_partial_fit_leaves_a_fitted_model_after_every_chunk(frame):
    cols = ["x1", "x2"]
    m = MixedLinearRegressor(random_slopes=["x1"])
    seen = []
    for c in chunks(frame, 3, seed=4):
        seen.append(c)
        m.partial_fit(c[cols], c["y"], groups=c["g"])
        rows = pd.concat(seen)
        ref = MixedLinearRegressor(random_slopes=["x1"]).fit(rows[cols], rows["y"], groups=rows["g"])
        assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-8)
        np.testing.assert_allclose(m.predict(frame[cols], groups=frame["g"]),
                                   ref.predict(frame[cols], groups=frame["g"]), rtol=1e-8)
    with pytest.raises(ValueError, match="feature names"):
        m.partial_fit(frame[["x1"]], frame["y"], groups=frame["g"])


def test_partial_fit_adds_to_fit_and_fit_starts_afresh(frame):
    cols = ["x1", "x2"]
    half = len(frame) // 2
    m = MixedLinearRegressor().fit(frame[cols][:half], frame["y"][:half], groups=frame["g"][:half])
    m.partial_fit(frame[cols][half:], frame["y"][half:], groups=frame["g"][half:])
    ref = MixedLinearRegressor().fit(frame[cols], frame["y"], groups=frame["g"])
    assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-8)
    m.fit(frame[cols][:half], frame["y"][:half], groups=frame["g"][:half])
    assert m.statistics_.n == half


def test_partial_fit_drops_aliased_columns_as_fit(frame):
    """A column aliased in the design is dropped as fit drops it, judged on the cross-products."""
    X = frame[["x1", "x2"]].assign(x3=lambda d: d["x1"] + 2 * d["x2"])
    with pytest.warns(UserWarning, match="x3"):
        ref = MixedLinearRegressor().fit(X, frame["y"], groups=frame["g"])
    m = MixedLinearRegressor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in np.array_split(np.arange(len(frame)), 4):
            m.partial_fit(X.iloc[c], frame["y"].iloc[c], groups=frame["g"].iloc[c])
    assert m.dropped_columns_ == ref.dropped_columns_ == ["x3"]
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8, atol=1e-12)


def test_pickle_holds_statistics_not_rows():
    """A fitted model keeps statistics and estimates: its pickle does not grow with the
    rows (10 times the rows, the same levels: the same size within a few hundred bytes),
    and holds no array as long as the data."""
    rng = np.random.default_rng(0)
    sizes = []
    for n in (20_000, 200_000):
        g = rng.integers(0, 1000, n)
        x = rng.normal(size=(n, 2))
        y = x @ [1.0, -1.0] + rng.normal(size=1000)[g] + rng.normal(size=n)
        m = MixedLinearRegressor(reml=False).fit(x, y, groups=g)
        m.confint(method="wald")
        blob = pickle.dumps(m)
        sizes.append(len(blob))
        arrays = []

        def walk(obj, depth=0):
            if isinstance(obj, np.ndarray):
                arrays.append(obj)
            elif depth < 6 and isinstance(obj, dict):
                for v in obj.values():
                    walk(v, depth + 1)
            elif depth < 6 and isinstance(obj, (list, tuple)):
                for v in obj:
                    walk(v, depth + 1)
            elif depth < 6 and hasattr(obj, "__dict__"):
                walk(vars(obj), depth + 1)

        walk(vars(pickle.loads(blob)))
        assert max(a.shape[0] if a.ndim else 0 for a in arrays) < n
    assert abs(sizes[1] - sizes[0]) < 1000
    assert sizes[1] < 300_000  # 1,000 levels: the levels' statistics and modes, no rows


def test_inference_after_unpickling(frame):
    cols = ["x1", "x2"]
    m = MixedLinearRegressor(random_slopes=["x1"]).fit(frame[cols], frame["y"], groups=frame["g"])
    ci = m.confint(parm="beta_")
    back = pickle.loads(pickle.dumps(m))
    assert "Scaled residuals" in back.summary()
    np.testing.assert_allclose(back.confint(parm="beta_").to_numpy(), ci.to_numpy(), rtol=1e-8)
    small = MixedLinearRegressor().fit(frame[["x1"]], frame["y"], groups=frame["g"])
    table = compare_models(small, back)
    assert table["method"].tolist() == ["ML (refit)", "ML (refit)"]
    assert back.random_effects_variance()["g"].shape == (40, 2)
    boot = back.parametric_bootstrap(3, random_state=0, progress=False)
    assert boot.shape == (3, 7) and boot.attrs["converged"].all()


def test_summary_of_a_model_from_chunks_says_where_the_residuals_are(frame):
    m = MixedLinearRegressor()
    for c in chunks(frame, 2, seed=0):
        m.partial_fit(c[["x1"]], c["y"], groups=c["g"])
    assert "model.residuals(X, y" in m.summary()
    ref = MixedLinearRegressor().fit(frame[["x1"]], frame["y"], groups=frame["g"])
    again = np.quantile(m.residuals(frame[["x1"]], frame["y"], groups=frame["g"], scaled=True), [0, .25, .5, .75, 1])
    np.testing.assert_allclose(again, ref._residual_quantiles, rtol=1e-7)


def test_statistics_are_public_and_printable(frame):
    m = MixedLinearRegressor().fit(frame[["x1"]], frame["y"], groups=frame["g"])
    assert isinstance(m.statistics_, LinearMixedStatistics)
    assert "1500 rows" in repr(m.statistics_)


def test_dask_arrays_and_predict_return_dask(frame):
    da = pytest.importorskip("dask.array")
    dd = pytest.importorskip("dask.dataframe")
    import dask

    cols = ["x1", "x2"]
    ref = MixedLinearRegressor(reml=False).fit(frame[cols], frame["y"], groups=frame["g"])
    X = da.from_array(frame[cols].to_numpy(), chunks=(300, 2))
    y = da.from_array(frame["y"].to_numpy(), chunks=300)
    g = da.from_array(frame["g"].to_numpy(), chunks=300)
    with dask.config.set(scheduler="synchronous"):
        m = MixedLinearRegressor(reml=False).fit(X, y, groups=g)
        assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-8)
        pred = m.predict(X, groups=g)
        assert hasattr(pred, "__dask_graph__")
        expected = ref.predict(frame[cols], groups=frame["g"])
        # relative to the predictions' scale: a prediction near 0 keeps only absolute digits
        np.testing.assert_allclose(pred.compute(), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
        ddf = dd.from_pandas(frame, npartitions=4)
        series = m.predict(ddf[cols], groups=ddf["g"])
        assert isinstance(series, dd.Series)
        np.testing.assert_allclose(series.compute().to_numpy(), expected, rtol=1e-10,
                                   atol=1e-12 * np.abs(expected).max())
    with pytest.raises(ValueError, match="partitioned alike"):
        MixedLinearRegressor().fit(X, y.rechunk(500), groups=g)


@pytest.mark.parametrize("q", [(1, 1), (2, 1), (2, 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_block_is_scipys_sum_of_the_rows_entries(q, weighted):
    """The cross block formed from the codes (sorted keys, each pair of levels once) is
    scipy's COO to CSR conversion of one entry per row and pair of terms: the same
    pattern, the same sums (to rounding: the pairs' terms are added in the rows' order),
    with the intercepts left out of the products; a block read back as entries from CSR
    is the same; the dense square reads the entries as the sparse block holds them."""
    import scipy.sparse as sp

    from skmlm._core.design import RandomFactor
    from skmlm._core.statistics import CrossEntries, _cross_of_rows

    rng = np.random.default_rng(5)
    n, (qi, qj), (mi, mj) = 400, q, (7, 11)

    def factor(name, m, q):
        z = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(q - 1)])
        return RandomFactor(name, rng.integers(0, m, n), np.arange(m), z, [f"t{k}" for k in range(q)])

    fi, fj = factor("i", mi, qi), factor("j", mj, qj)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    got = _cross_of_rows(fi, fj, w, True, True)
    rows = (fi.codes[:, None, None] * qi + np.arange(qi)[None, :, None] + 0 * np.arange(qj)[None, None, :]).ravel()
    cols = (fj.codes[:, None, None] * qj + 0 * np.arange(qi)[None, :, None] + np.arange(qj)[None, None, :]).ravel()
    data = ((np.ones(n) if w is None else w)[:, None, None] * fi.z[:, :, None] * fj.z[:, None, :]).ravel()
    ref = sp.coo_matrix((data, (rows, cols)), shape=(mi * qi, mj * qj)).tocsr()
    block = got.csr()
    np.testing.assert_array_equal(block.indptr, ref.indptr)
    np.testing.assert_array_equal(block.indices, ref.indices)
    if qi == qj == 1 and not weighted:  # sums of ones: exact in any order
        np.testing.assert_array_equal(block.data, ref.data)
    np.testing.assert_allclose(block.data, ref.data, rtol=1e-13, atol=1e-14 * np.abs(ref.data).max())
    back = CrossEntries.of_csr(block)
    for a, b in [(back.rows, got.rows), (back.cols, got.cols), (back.data, got.data)]:
        np.testing.assert_array_equal(a, b)
    stats = LinearMixedStatistics.from_rows([fi, fj], np.ones((n, 1)), rng.normal(size=n), w)
    dense = stats.random_cross_dense([1, 0])
    np.testing.assert_array_equal(dense[mj * qj:, : mj * qj], stats.cross[(0, 1)].toarray())
    np.testing.assert_array_equal(dense[: mj * qj, mj * qj:], stats.cross[(0, 1)].toarray().T)
