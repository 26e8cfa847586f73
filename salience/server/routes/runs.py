"""Runs: the list, one run's overview (accuracy, per-class metrics, top confusions) and facets."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends

from salience import __version__
from salience.jsonsafe import finite
from salience.server import schemas
from salience.server.run_cache import RunEntry, RunRegistry, get_entry, get_registry
from salience.server.summaries import listed, ok_rows, shortcuts, summary
from salience.store import Run

router = APIRouter(prefix="/api", tags=["runs"])

Registry = Annotated[RunRegistry, Depends(get_registry)]
Entry = Annotated[RunEntry, Depends(get_entry)]


@router.get("/health", response_model=schemas.Health)
def health(registry: Registry) -> schemas.Health:
    cache = registry.images
    return schemas.Health(
        salience=__version__,
        runs=len(registry.entries),
        preloaded=registry.preloaded,
        images_cached=cache.count,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
    )


@router.get("/runs", response_model=schemas.RunList)
def list_runs(registry: Registry) -> schemas.RunList:
    return schemas.RunList(runs=[listed(e) for e in registry.entries.values()])


@router.get("/runs/{run_id}", response_model=schemas.RunSummary)
def get_run(entry: Entry) -> schemas.RunSummary:
    return summary(entry)


@router.get("/runs/{run_id}/overview", response_model=schemas.Overview)
def overview(entry: Entry, top: int = 20) -> schemas.Overview:
    def make(run: Run) -> schemas.Overview:
        metrics = run.class_metrics()
        classes = [
            schemas.ClassMetric.model_validate(
                {
                    "class": str(r["class"]),
                    "precision": finite(r["precision"]) or 0.0,
                    "recall": finite(r["recall"]) or 0.0,
                    "f1": finite(r["f1"]) or 0.0,
                    "support": int(r["support"]),
                }
            )
            for r in metrics.to_dict("records")
        ]
        with_support = [c for c in classes if c.support > 0]
        cm = run.confusion_matrix()
        counts = cm.to_numpy()
        rows = counts.sum(axis=1, keepdims=True)
        off = counts.copy()
        for i, name in enumerate(cm.index):
            if name in cm.columns:
                off[i, list(cm.columns).index(name)] = 0
        order = np.argsort(-off, axis=None, kind="stable")[: max(0, min(top, 200))]
        confusions = [
            schemas.Confusion(
                true=str(cm.index[i]),
                pred=str(cm.columns[j]),
                count=int(off[i, j]),
                share=float(off[i, j] / rows[i, 0]) if rows[i, 0] else 0.0,
            )
            for i, j in (np.unravel_index(k, off.shape) for k in order)
            if off[i, j] > 0
        ]
        samples = entry.samples()
        ok = ok_rows(samples)
        return schemas.Overview(
            run=summary(entry),
            classes_seen=int(samples["label"].dropna().nunique()) if "label" in samples else 0,
            model_classes=len(run.class_names),
            accuracy=finite(ok["correct"].astype(float).mean()) if len(ok) else None,
            balanced_accuracy=finite(np.mean([c.recall for c in with_support]))
            if with_support
            else None,
            macro_f1=finite(np.mean([c.f1 for c in with_support])) if with_support else None,
            classes=classes,
            top_confusions=confusions,
            shortcuts=shortcuts(entry),
        )

    return entry.cached(f"overview:{top}", make)


@router.get("/runs/{run_id}/facets", response_model=schemas.Facets)
def facets(entry: Entry) -> schemas.Facets:
    """Values to offer in the filter controls (metadata values are capped at 200 per column)."""

    def make(run: Run) -> schemas.Facets:
        samples = entry.samples()
        meta = {}
        for col in samples.columns:
            if str(col).startswith("meta_"):
                values = samples[col].dropna().astype(str).unique()[:200]
                meta[str(col)[5:]] = sorted(values)
        conf = samples["confidence"].dropna()
        lo, hi = (float(conf.min()), float(conf.max())) if len(conf) else (0.0, 1.0)
        return schemas.Facets(meta=meta, splits=summary(entry).splits, confidence=[lo, hi])

    return entry.cached("facets", make)
