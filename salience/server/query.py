"""Paging through a run's images from an in-memory copy of its tables.

``Run.query`` reads the Parquet shards on every call, so that a run can be read while it is
written; at 100,000 images that is about half a second per page. The explorer pages, sorts
and filters many times over the same tables, so it keeps ``Run.samples()`` joined with each
method's ``Run.stats()`` in memory (refreshed every few seconds while the run is still being
written) and applies a :class:`~salience.store.SampleFilter` with the same meaning as the
store: equal class names, inclusive bounds, ``meta`` by name (with or without ``meta_``),
``errors`` keeping images with an error or a warning, region shares of the queried method,
and a stable order with missing values last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salience.errors import SalienceError
from salience.server.run_cache import RunEntry
from salience.server.summaries import stats
from salience.store import Run, SampleFilter


def table(entry: RunEntry, method: str | None) -> pd.DataFrame:
    """The samples joined with ``method``'s statistics (its error column as ``map_error``)."""

    def make(run: Run) -> pd.DataFrame:
        samples = entry.samples()
        if method is None:
            return samples
        extra = stats(entry, method).rename(columns={"error": "map_error"})
        extra = extra.drop(columns=[c for c in extra.columns if c in samples.columns])
        return samples.join(extra, on="sample_id")

    return entry.cached(f"table:{method}", make)


def select(entry: RunEntry, f: SampleFilter, method: str | None) -> np.ndarray:
    """Positions of the rows of :func:`table` that ``f`` keeps, in dataset order."""
    t = table(entry, method)
    keep = np.ones(len(t), dtype=bool)

    def equal(column: str, value: object) -> None:
        nonlocal keep
        keep &= (t[column] == value).fillna(False).to_numpy(dtype=bool)

    def bound(column: str, lo: float | None, hi: float | None) -> None:
        nonlocal keep
        values = pd.to_numeric(t[column], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            if lo is not None:
                keep &= values >= lo
            if hi is not None:
                keep &= values <= hi

    if f.true is not None:
        equal("label", f.true)
    if f.pred is not None:
        equal("pred", f.pred)
    if f.correct is not None:
        equal("correct", bool(f.correct))
    bound("confidence", f.confidence_min, f.confidence_max)
    if f.split is not None:
        equal("split", f.split)
    for key, value in f.meta.items():
        column = key if key.startswith("meta_") else f"meta_{key}"
        if column not in t.columns:
            known = ", ".join(str(c)[5:] for c in t.columns if str(c).startswith("meta_"))
            raise SalienceError(f"unknown metadata column {key!r}; this run has: {known or 'none'}")
        equal(column, value)
    if f.errors:
        flagged = t["error"].notna()
        if "warning" in t.columns:
            flagged |= t["warning"].notna()
        keep &= flagged.to_numpy(dtype=bool)
    if f.needs_stats():
        columns = entry.run.region_columns
        if f.region not in columns:
            known = ", ".join(columns) or "none (the data had no masks)"
            raise SalienceError(f"unknown region {f.region!r}; this run's regions: {known}")
        if method is None:
            raise SalienceError("a region-share filter needs a method; pass method=")
        bound(f"share_{columns[str(f.region)]}", f.region_share_min, f.region_share_max)
    return np.flatnonzero(keep)


def order(entry: RunEntry, method: str | None, sort: str, descending: bool) -> np.ndarray:
    """Row positions of :func:`table` sorted by ``sort`` (missing last, ties in dataset order),
    computed once per key so that a filtered page costs a mask, not a sort."""

    def make(run: Run) -> np.ndarray:
        t = table(entry, method)
        if sort not in t.columns:
            raise SalienceError(f"cannot sort by {sort!r}: not a column")
        column = t[sort]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            key = column.to_numpy(dtype=float, na_value=np.nan)
            return np.argsort(-key if descending else key, kind="stable")
        ranks = column.rank(method="first", ascending=not descending)
        return np.argsort(ranks.fillna(np.inf).to_numpy(), kind="stable")

    return entry.cached(f"order:{method}:{sort}:{descending}", make)


def page(
    entry: RunEntry,
    f: SampleFilter,
    method: str | None,
    sort: str | None,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[pd.DataFrame, int]:
    """One page of :func:`select` sorted by ``sort`` (missing last, ties in dataset order)."""
    t = table(entry, method)
    rows = select(entry, f, method)
    if sort is not None:
        ranked = order(entry, method, sort, descending)
        if len(rows) < len(t):
            keep = np.zeros(len(t), dtype=bool)
            keep[rows] = True
            ranked = ranked[keep[ranked]]
        rows = ranked
    return t.iloc[rows[offset : offset + limit]], len(rows)
