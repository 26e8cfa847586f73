"""Runs written straight through the store with hand-made maps, masks and predictions, so that
shortcut discovery and run comparison can be checked against known answers (no model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salience.audit.stats import map_statistics, region_columns, stat_columns
from salience.store import Run, ShardWriter
from salience.store.layout import write_json

SIZE = 32
REGIONS = ["background", "head", "uniform"]


def figure_mask(size: int = SIZE) -> np.ndarray:
    """Region indices: a head box at the top centre (1), a uniform box below it (2)."""
    m = np.zeros((size, size), dtype=np.int32)
    m[2:10, 12:20] = 1
    m[12:30, 8:24] = 2
    return m


def blob(cy: float, cx: float, sigma: float, size: int = SIZE) -> np.ndarray:
    """A Gaussian bump centred at ``(cy, cx)`` (fractions of the side)."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


def write_run(
    path: Path,
    labels: Sequence[str],
    preds: Sequence[str],
    maps: np.ndarray,
    classes: Sequence[str],
    masks: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
    shard_size: int = 64,
) -> Run:
    """A complete run of ``len(labels)`` images with ``gradcam`` maps (statistics computed by
    the audit's own :func:`map_statistics`, with ``masks`` when given)."""
    n = len(labels)
    regions = REGIONS if masks is not None else []
    root = path / "data"
    root.mkdir(parents=True, exist_ok=True)
    write_json(
        path / "run.json",
        {
            "salience": "test",
            "methods": {"gradcam": {}},
            "class_names": list(classes),
            "regions": regions,
            "region_columns": region_columns(regions),
            "meta_columns": [],
            "stat_columns": stat_columns(regions),
            "map_size": [maps.shape[1], maps.shape[2]],
            "status": "complete",
            "dataset": {"root": str(root)},
        },
    )
    ids = list(ids) if ids is not None else [f"s{i:04d}" for i in range(n)]
    correct = [labels[i] == preds[i] for i in range(n)]
    stats = map_statistics(maps, None if masks is None else list(masks), regions, correct=correct)
    writer = ShardWriter(path, [], stat_columns(regions), pattern=bool(regions))
    for shard, start in enumerate(range(0, n, shard_size)):
        rows = range(start, min(start + shard_size, n))
        samples: dict[str, list[Any]] = {
            "sample_id": [ids[i] for i in rows],
            "path": [f"{labels[i]}/{ids[i]}.png" for i in rows],
            "label": [labels[i] for i in rows],
            "label_index": [list(classes).index(labels[i]) for i in rows],
            "pred": [preds[i] for i in rows],
            "pred_index": [list(classes).index(preds[i]) for i in rows],
            "confidence": [0.9] * len(rows),
            "correct": [correct[i] for i in rows],
            "shard": [shard] * len(rows),
            "row": list(range(len(rows))),
        }
        cols = {k: [_plain(v[i]) for i in rows] for k, v in stats.items()}
        cols.update(sample_id=samples["sample_id"], shard=samples["shard"], row=samples["row"])
        writer.write_shard(shard, samples, {"gradcam": cols}, {"gradcam": maps[start : rows.stop]})
    return Run.open(path)


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, np.floating) else value
