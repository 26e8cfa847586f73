"""The cheapest setting whose maps stay close enough to the reference."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def acceptable(row: Mapping[str, Any], min_spearman: float, min_topk_iou: float) -> bool:
    """True when a measured setting reaches both fidelity thresholds."""
    values = [row.get(k) for k in ("spearman", "topk_iou", "ms_per_image")]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return False
    return bool(row["spearman"] >= min_spearman and row["topk_iou"] >= min_topk_iou)


def recommend(
    table: Mapping[str, Mapping[str, Any]], min_spearman: float, min_topk_iou: float = 0.0
) -> str | None:
    """The setting with the lowest ``ms_per_image`` among the acceptable ones (the reference
    when nothing cheaper is; None when not even it was measured). Ties keep table order."""
    ok = [
        (row["ms_per_image"], name)
        for name, row in table.items()
        if acceptable(row, min_spearman, min_topk_iou)
    ]
    if not ok:
        return None
    return min(ok, key=lambda pair: pair[0])[1]


def frontier(table: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Settings no other setting beats on both cost and Spearman (the cost/fidelity frontier),
    cheapest first."""
    rows = [
        (row["ms_per_image"], row["spearman"], name)
        for name, row in table.items()
        if acceptable(row, -math.inf, -math.inf)
    ]
    out: list[str] = []
    best = -math.inf
    for _ms, rho, name in sorted(rows, key=lambda r: (r[0], -r[1])):
        if rho > best:
            out.append(name)
            best = rho
    return out
