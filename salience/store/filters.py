"""Which samples a query selects: a small dataclass turned into a parameterised SQL clause."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from salience.errors import SalienceError


@dataclass
class SampleFilter:
    """Conditions on samples; every field left as None (or empty) selects everything.

    ``region`` with ``region_share_min/max`` bounds the share of positive saliency in that
    region for the queried method. ``errors=True`` keeps only images with an error or warning.
    """

    true: str | None = None
    pred: str | None = None
    correct: bool | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    region_share_min: float | None = None
    region_share_max: float | None = None
    errors: bool = False

    def needs_stats(self) -> bool:
        return self.region is not None and (
            self.region_share_min is not None or self.region_share_max is not None
        )


def quote(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def where_clause(
    f: SampleFilter | None,
    sample_columns: Collection[str],
    region_columns: dict[str, str],
    stats_alias: str | None,
) -> tuple[str, list[Any]]:
    """``(sql, params)`` for ``WHERE``; samples are aliased ``s``, statistics ``stats_alias``."""
    if f is None:
        return "TRUE", []
    parts: list[str] = []
    params: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        parts.append(sql)
        params.extend(values)

    if f.true is not None:
        add("s.label = ?", f.true)
    if f.pred is not None:
        add("s.pred = ?", f.pred)
    if f.correct is not None:
        add("s.correct = ?", f.correct)
    if f.confidence_min is not None:
        add("s.confidence >= ?", f.confidence_min)
    if f.confidence_max is not None:
        add("s.confidence <= ?", f.confidence_max)
    if f.split is not None:
        add("s.split = ?", f.split)
    for key, value in f.meta.items():
        column = key if key.startswith("meta_") else f"meta_{key}"
        if column not in sample_columns:
            known = ", ".join(c[5:] for c in sample_columns if c.startswith("meta_")) or "none"
            raise SalienceError(f"unknown metadata column {key!r}; this run has: {known}")
        add(f"s.{quote(column)} = ?", value)
    if f.errors:
        add("(s.error IS NOT NULL OR s.warning IS NOT NULL)")
    if f.needs_stats():
        if f.region not in region_columns:
            known = ", ".join(region_columns) or "none (the data had no masks)"
            raise SalienceError(f"unknown region {f.region!r}; this run's regions: {known}")
        if stats_alias is None:
            raise SalienceError("a region-share filter needs a method; pass method=")
        column = f"{stats_alias}.{quote('share_' + region_columns[f.region])}"
        if f.region_share_min is not None:
            add(f"{column} >= ?", f.region_share_min)
        if f.region_share_max is not None:
            add(f"{column} <= ?", f.region_share_max)
    return (" AND ".join(parts) or "TRUE"), params
