"""Samples: a filtered, sorted page of cards, and one image's details."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query

from salience.errors import SalienceError
from salience.jsonsafe import finite
from salience.server import query, schemas
from salience.server.params import sample_filter
from salience.server.run_cache import RunEntry, get_entry
from salience.server.summaries import region_colors, stat_names, stats
from salience.store import Run, SampleFilter

router = APIRouter(prefix="/api/runs/{run_id}/samples", tags=["samples"])

Entry = Annotated[RunEntry, Depends(get_entry)]
Filter = Annotated[SampleFilter, Depends(sample_filter)]
SORTS = ("confidence", "loss")


def _text(v: Any) -> str | None:
    """A scalar as text; None, NaN and pandas' NA as None."""
    return None if v is None or (np.ndim(v) == 0 and pd.isna(v)) else str(v)


def _bool(v: Any) -> bool | None:
    return None if v is None or pd.isna(v) else bool(v)


def pick_method(entry: RunEntry, method: str | None) -> str | None:
    """``method`` if the run has it, by default the run's default (:meth:`Run.method`); None
    for a run without maps when none is asked for."""
    run = entry.run
    return run.method(method) if method is not None or run.methods else None


@router.get("", response_model=schemas.SamplePage)
def list_samples(
    entry: Entry,
    filters: Filter,
    method: str | None = None,
    sort: str | None = None,
    desc: bool = True,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 60,
) -> schemas.SamplePage:
    method = pick_method(entry, method)
    stat_cols = stat_names(entry)
    if sort and sort not in SORTS and sort not in stat_cols:
        raise SalienceError(
            f"cannot sort by {sort!r}; choose one of: {', '.join([*SORTS, *stat_cols])}"
        )
    rows, total = query.page(entry, filters, method, sort or None, desc, offset, limit)
    show = sort if sort in stat_cols else None
    items = [
        schemas.SampleCard(
            sample_id=str(r["sample_id"]),
            path=str(r["path"]),
            label=_text(r.get("label")),
            pred=_text(r.get("pred")),
            confidence=finite(r.get("confidence")),
            correct=_bool(r.get("correct")),
            loss=finite(r.get("loss")),
            error=_text(r.get("error")),
            value=finite(r.get(show)) if show else None,
        )
        for r in rows.to_dict("records")
    ]
    return schemas.SamplePage(
        total=int(total),
        offset=offset,
        limit=limit,
        sort=sort,
        descending=desc,
        method=method,
        items=items,
    )


def _indexed(entry: RunEntry) -> pd.DataFrame:
    return entry.cached("samples_by_id", lambda run: entry.samples().set_index("sample_id"))


@router.get("/{sample_id:path}", response_model=schemas.SampleDetail)
def sample_detail(entry: Entry, sample_id: str) -> schemas.SampleDetail:
    table = _indexed(entry)
    if sample_id not in table.index:
        raise HTTPException(404, "no such sample in this run")
    r = table.loc[sample_id]
    if isinstance(r, pd.DataFrame):
        r = r.iloc[0]
    run: Run = entry.run
    names = list(run.class_names)
    idx = r.get("topk_index")
    probs = r.get("topk_prob")
    topk = []
    if isinstance(idx, (list, tuple, np.ndarray)) and isinstance(probs, (list, tuple, np.ndarray)):
        for i, p in zip(list(idx), list(probs), strict=False):
            label = names[int(i)] if 0 <= int(i) < len(names) else str(i)
            topk.append(
                schemas.ClassProb.model_validate(
                    {"class": label, "index": int(i), "prob": float(p)}
                )
            )
    regions = list(run.regions)
    colors = dict(region_colors(entry).values())
    names_stats = stat_names(entry)
    columns = {reg: run.region_columns.get(reg, reg) for reg in regions}
    per_method = []
    for method in run.methods:
        table_m = stats(entry, method)
        row = table_m.loc[sample_id] if sample_id in table_m.index else None
        values = {c: finite(row[c]) if row is not None else None for c in names_stats}
        per_method.append(
            schemas.MethodStats(
                method=method,
                stats={k: v for k, v in values.items() if not k.startswith(("share_", "density_"))},
                region_share={reg: values.get(f"share_{col}") for reg, col in columns.items()},
                error=_text(row.get("error")) if row is not None else "not computed",
            )
        )
    meta = {
        str(c)[5:]: str(r[c]) for c in table.columns if str(c).startswith("meta_") and _text(r[c])
    }
    return schemas.SampleDetail(
        sample_id=sample_id,
        path=str(r["path"]),
        label=_text(r.get("label")),
        pred=_text(r.get("pred")),
        confidence=finite(r.get("confidence")),
        correct=_bool(r.get("correct")),
        loss=finite(r.get("loss")),
        split=_text(r.get("split")),
        error=_text(r.get("error")),
        meta=meta,
        topk=topk,
        has_mask=_text(r.get("mask")) is not None,
        regions=regions,
        region_colors=colors,
        methods=per_method,
    )
