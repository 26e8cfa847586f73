"""The confusion matrix, optionally with each cell's mean of a saliency statistic."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends

from salience.errors import SalienceError
from salience.jsonsafe import finite
from salience.server import schemas
from salience.server.query import table
from salience.server.routes.samples import pick_method
from salience.server.run_cache import RunEntry, get_entry
from salience.server.summaries import stat_names
from salience.store import Run

router = APIRouter(prefix="/api/runs/{run_id}", tags=["confusion"])

Entry = Annotated[RunEntry, Depends(get_entry)]


@router.get("/confusion", response_model=schemas.ConfusionMatrix)
def confusion(
    entry: Entry, stat: str | None = None, method: str | None = None
) -> schemas.ConfusionMatrix:
    """Counts and row shares; with ``stat`` (and ``method``) the cells' mean statistic too."""
    if stat:
        if stat not in stat_names(entry):
            raise SalienceError(
                f"unknown statistic {stat!r}; choose one of: {', '.join(stat_names(entry))}"
            )
        method = pick_method(entry, method)

    return matrix(entry, stat, method)


def matrix(entry: RunEntry, stat: str | None, method: str | None) -> schemas.ConfusionMatrix:
    """The (cached) matrix, with each cell's mean ``stat`` of ``method`` when both are given."""
    if stat and method:
        plain = matrix(entry, None, None)

        def colour(run: Run) -> schemas.ConfusionMatrix:
            means = _cell_means(entry, stat, method)
            cells = [
                schemas.Cell.model_construct(
                    t=c.t, p=c.p, count=c.count, share=c.share,
                    value=means.get((plain.labels[c.t], plain.preds[c.p])),
                )
                for c in plain.cells
            ]  # fmt: skip
            present = [c.value for c in cells if c.value is not None]
            return plain.model_copy(
                update={
                    "cells": cells,
                    "stat": stat,
                    "method": method,
                    "stat_range": [min(present), max(present)] if present else None,
                }
            )

        return entry.cached(f"confusion:{stat}:{method}", colour)

    def make(run: Run) -> schemas.ConfusionMatrix:
        cm = run.confusion_matrix()
        counts = cm.to_numpy().astype(np.int64)
        rows = counts.sum(axis=1)
        ti, pi = np.nonzero(counts)
        cells = [
            schemas.Cell.model_construct(
                t=t, p=p, count=int(counts[t, p]), share=round(float(counts[t, p] / rows[t]), 6),
                value=None,
            )
            for t, p in zip(ti.tolist(), pi.tolist(), strict=True)
        ]  # fmt: skip
        return schemas.ConfusionMatrix(
            labels=[str(v) for v in cm.index],
            preds=[str(v) for v in cm.columns],
            row_totals=rows.tolist(),
            cells=cells,
            max_count=int(counts.max()) if counts.size else 0,
        )

    return entry.cached("confusion", make)


def _cell_means(entry: RunEntry, stat: str, method: str) -> dict[tuple[str, str], float | None]:
    rows = table(entry, method)
    means = rows.groupby(["label", "pred"], observed=True, sort=False)[stat].mean()
    return {(str(k[0]), str(k[1])): finite(v) for k, v in means.items()}  # type: ignore[index]
