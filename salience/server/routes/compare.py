"""Two runs over the same images: accuracy per class, flipped predictions, region shift."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Query

from salience.audit.compare import compare_runs
from salience.errors import SalienceError
from salience.server import schemas
from salience.server.run_cache import RunEntry, RunRegistry, get_registry
from salience.server.summaries import ok_rows
from salience.store import Run

router = APIRouter(prefix="/api/compare/{a}/{b}", tags=["compare"])

# compare_runs holds every matched map of both runs in memory; above this it is left to the CLI.
LIVE_MAPS = 20_000

Registry = Annotated[RunRegistry, Depends(get_registry)]
KINDS = ("fixed", "broken", "changed")
COLUMNS = ["sample_id", "path", "label", "pred", "confidence", "correct"]


def _pair(registry: RunRegistry, a: str, b: str) -> tuple[RunEntry, RunEntry]:
    return registry.entry(a), registry.entry(b)


def matched(ea: RunEntry, eb: RunEntry) -> pd.DataFrame:
    """Images predicted in both runs, joined by sample id, with a ``kind`` column."""
    left = ok_rows(ea.samples())[COLUMNS]
    right = ok_rows(eb.samples())[COLUMNS[:1] + COLUMNS[3:]]
    df = left.merge(right, on="sample_id", suffixes=("_a", "_b"))
    if df.empty:
        raise SalienceError(
            f"runs {ea.id!r} and {eb.id!r} share no images; compare runs of the same data"
        )
    ca, cb = df["correct_a"].astype(bool), df["correct_b"].astype(bool)
    kind = np.select(
        [~ca & cb, ca & ~cb, ~ca & ~cb & (df["pred_a"] != df["pred_b"])], list(KINDS), "same"
    )
    return df.assign(kind=kind)


@router.get("", response_model=schemas.CompareSummary)
def compare(registry: Registry, a: str, b: str) -> schemas.CompareSummary:
    ea, eb = _pair(registry, a, b)
    df = matched(ea, eb)
    per_class = []
    for label, g in df.groupby("label", sort=True):
        acc_a, acc_b = float(g["correct_a"].mean()), float(g["correct_b"].mean())
        per_class.append(
            schemas.ClassChange.model_validate(
                {
                    "class": str(label),
                    "support": len(g),
                    "accuracy_a": acc_a,
                    "accuracy_b": acc_b,
                    "delta": acc_b - acc_a,
                }
            )
        )
    common = [m for m in ea.run.methods if m in eb.run.methods]
    counts = df["kind"].value_counts()
    return schemas.CompareSummary(
        a=ea.id,
        b=eb.id,
        matched=len(df),
        accuracy_a=float(df["correct_a"].mean()),
        accuracy_b=float(df["correct_b"].mean()),
        fixed=int(counts.get("fixed", 0)),
        broken=int(counts.get("broken", 0)),
        changed=int(counts.get("changed", 0)),
        methods=common,
        per_class=per_class,
    )


@router.get("/flips", response_model=schemas.FlipPage)
def flips(
    registry: Registry,
    a: str,
    b: str,
    kind: Literal["all", "fixed", "broken", "changed"] = "all",
    true: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 60,
) -> schemas.FlipPage:
    """Images whose prediction differs between the runs, largest confidence change first."""
    ea, eb = _pair(registry, a, b)
    df = matched(ea, eb)
    df = df[df["kind"].isin(KINDS if kind == "all" else (kind,))]
    if true:
        df = df[df["label"] == true]
    change = (df["confidence_b"] - df["confidence_a"]).abs()
    df = df.assign(change=change).sort_values(["change", "sample_id"], ascending=[False, True])
    page = df.iloc[offset : offset + limit]
    items = [
        schemas.Flip(
            sample_id=str(r["sample_id"]),
            path=str(r["path"]),
            label=str(r["label"]),
            pred_a=str(r["pred_a"]),
            pred_b=str(r["pred_b"]),
            confidence_a=float(r["confidence_a"]),
            confidence_b=float(r["confidence_b"]),
            kind=str(r["kind"]),
        )
        for r in page.to_dict("records")
    ]
    return schemas.FlipPage(total=len(df), offset=offset, limit=limit, kind=kind, items=items)


@router.get("/maps", response_model=schemas.MapComparison)
def maps(registry: Registry, a: str, b: str, method: str | None = None) -> schemas.MapComparison:
    """Map similarity, region shift against its noise floor and silent changes (same
    prediction, different evidence), computed once per pair and method."""
    ea, eb = _pair(registry, a, b)
    matched_ids = len(matched(ea, eb))
    if matched_ids > LIVE_MAPS:
        raise SalienceError(
            f"{matched_ids:,} shared images are too many to compare maps here; run "
            "`salience compare` for them"
        )

    def make(run: Run) -> schemas.MapComparison:
        out = compare_runs(ea.run, eb.run, method)
        return schemas.MapComparison.model_validate(
            {
                **out,
                "per_class": [
                    {
                        "class": c["class"],
                        "similarity": c["similarity"],
                        "region_shift": c.get("region_shift", {}),
                    }
                    for c in out["per_class"]
                ],
            }
        )

    return ea.cached(f"maps:{eb.id}:{method}", make)
