"""Linear mixed models on Dask collections: statistics per partition, reduced on the
cluster, the fit on the client; predictions partition by partition.

Imported only when a Dask collection is given (Dask is the optional extra
``skmlm[dask]``). ``X``, ``y``, ``groups`` and ``sample_weight`` must be partitioned
alike (the same number of partitions, each holding the same rows of each): Dask
DataFrames and Series made from one DataFrame are, and so are Dask Arrays with the same
chunks along the rows.
"""

from sklearn.base import clone


def _require_dask():
    try:
        import dask  # noqa: F401
    except ImportError as err:  # pragma: no cover - only without the extra
        raise ImportError(
            "fitting on a Dask collection needs Dask: pip install 'skmlm[dask]'"
        ) from err
    import dask

    return dask


def _partitions(x, name):
    """The delayed partitions of a Dask DataFrame, Series or Array (one per row block), or
    None for None."""
    if x is None:
        return None
    if hasattr(x, "to_delayed") and hasattr(x, "divisions"):  # DataFrame or Series
        return list(x.to_delayed())
    if hasattr(x, "to_delayed"):  # Array: one block along the columns
        if x.ndim == 2 and len(x.chunks[1]) > 1:
            x = x.rechunk({1: -1})
        parts = x.to_delayed()
        return list(parts.ravel()) if x.ndim == 1 else list(parts[:, 0])
    raise TypeError(f"{name}: expected a Dask collection like X (or None); got {type(x).__name__}")


def _chunk_statistics(estimator, X, y, groups, sample_weight):
    """The statistics of one partition (run on a worker, by a copy of the estimator)."""
    est = clone(estimator)
    d = est._prepare_fit(X, y, groups, sample_weight, chunk=True)
    return est._statistics_of(d, columns=est._design_names)


def _tree_sum(dask, items, width=8):
    """The sum of delayed statistics, added ``width`` at a time in a tree."""
    add = dask.delayed(_sum_all)
    while len(items) > 1:
        items = [add(*items[k : k + width]) for k in range(0, len(items), width)]
    return items[0]


def _sum_all(*stats):
    """The sum of several partitions' statistics, scattered into their union at once."""
    from ._core.statistics import sum_statistics

    return sum_statistics(stats)


def dask_statistics(estimator, X, y, groups, sample_weight):
    """The statistics of all partitions, formed and tree-reduced on the active Dask
    scheduler (a ``distributed`` client if one is active); the estimator's design (feature
    names, the random slopes' columns) is set from the first partition on the client."""
    dask = _require_dask()
    parts = {name: _partitions(v, name) for name, v in
             (("X", X), ("y", y), ("groups", groups), ("sample_weight", sample_weight))}
    k = len(parts["X"])
    for name, p in parts.items():
        if p is not None and len(p) != k:
            raise ValueError(
                f"X has {k} partitions and {name} {len(p)}: give X, y, groups and sample_weight partitioned alike "
                "(columns of one Dask DataFrame, or Dask Arrays with the same chunks along the rows)"
            )
    pick = {name: (p if p is not None else [None] * k) for name, p in parts.items()}
    chunk = dask.delayed(_chunk_statistics, pure=True)
    template = clone(estimator)
    stats = [chunk(template, pick["X"][i], pick["y"][i], pick["groups"][i], pick["sample_weight"][i]) for i in range(k)]
    total = _tree_sum(dask, stats).compute()
    # the design on the client: feature names, slopes' columns, fixed-effects names
    head = dask.compute(pick["X"][0], pick["y"][0], pick["groups"][0], pick["sample_weight"][0])
    estimator._prepare_fit(*head, chunk=True)
    return total


def dask_predict(estimator, X, groups, unseen_levels):
    """Predictions of a Dask collection, partition by partition (a Dask Series for a Dask
    DataFrame, a Dask Array for a Dask Array)."""
    dask = _require_dask()

    def predict(x, g=None):
        return estimator._linear_predictor(x, g, unseen_levels)

    if hasattr(X, "map_partitions"):  # DataFrame
        import dask.dataframe as dd
        import pandas as pd

        def frame(x, g=None):
            return pd.Series(predict(x, g), index=x.index)

        meta = pd.Series([], dtype=float)
        if groups is None:
            return X.map_partitions(frame, meta=meta)
        return dd.map_partitions(frame, X, groups, meta=meta, align_dataframes=False)
    import dask.array as da

    X = X.rechunk({1: -1}) if X.ndim == 2 else X
    if groups is None:
        return X.map_blocks(lambda x: predict(x), drop_axis=1, dtype=float)
    return da.map_blocks(lambda x, g: predict(x, g), X, groups if groups.ndim == 2 else groups[:, None],
                         drop_axis=1, dtype=float)
