"""Stage 5: one computed batch -> table rows and float16 maps (runs in the writer thread).

Every item of the batch gets a samples row and, per method, a statistics row and a map row,
failed images included (null prediction, NaN map, the reason in ``error``), so that
``(shard, row)`` always addresses the same image in every file of the shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from salience.audit.decode import Decoded
from salience.audit.plan import Batch, Plan
from salience.audit.predict import predictions
from salience.audit.stats import map_statistics

FLOAT16_MAX = float(np.finfo(np.float16).max)
Columns = dict[str, list[Any]]
# A batch ready to write: samples columns, statistics columns per method, maps per method.
BatchTables = tuple[Columns, dict[str, Columns], dict[str, np.ndarray]]


@dataclass
class BatchResult:
    """What the model stage hands to the writer: the batch, its decoded items (tensors
    dropped), and for the items that had an input, logits and maps in item order."""

    batch: Batch
    decoded: list[Decoded]
    ok: list[int]  # positions in ``decoded`` of the items that went through the model
    logits: np.ndarray  # [len(ok), K]
    maps: dict[str, np.ndarray]  # method -> [len(ok), h, w] float32 (NaN where it failed)
    method_errors: dict[str, dict[int, str]]  # method -> position in ``decoded`` -> reason


def _list(values: np.ndarray) -> list[Any]:
    return [None if v != v else float(v) for v in values.tolist()]  # NaN -> None


def assemble(plan: Plan, c: BatchResult) -> BatchTables:
    """Samples columns, statistics columns per method, and maps ``[n, h, w]`` float16."""
    n = len(c.decoded)
    items = plan.dataset.items
    positions = [d.position for d in c.decoded]
    pred = predictions(
        c.logits, [plan.label_index[positions[i]] for i in c.ok], plan.manifest.top_k
    )
    names = plan.class_names
    samples: Columns = {
        k: [None] * n
        for k in ("pred_index", "pred", "confidence", "topk_index", "topk_prob", "loss", "correct")
    }
    errors: list[str | None] = [d.error for d in c.decoded]
    for j, i in enumerate(c.ok):
        for key in ("pred_index", "confidence", "topk_index", "topk_prob", "loss", "correct"):
            samples[key][i] = pred[key][j]
        if pred["pred_index"][j] is not None:
            samples["pred"][i] = names[pred["pred_index"][j]]
        errors[i] = pred["error"][j]
    shard_base = c.batch.shard * plan.shard_size
    samples.update(
        sample_id=[plan.sample_ids[p] for p in positions],
        path=[items[p].path for p in positions],
        label=[plan.label_names[p] for p in positions],
        label_index=[plan.label_index[p] for p in positions],
        split=[items[p].split for p in positions],
        mask=[items[p].mask for p in positions],
        legend=[_legend(items[p].legend) for p in positions],
        boxes=[json.dumps(items[p].boxes) if items[p].boxes else None for p in positions],
        width=[d.width for d in c.decoded],
        height=[d.height for d in c.decoded],
        error=errors,
        warning=[
            "; ".join(filter(None, [*d.warnings, plan.label_warnings[d.position]])) or None
            for d in c.decoded
        ],
        shard=[c.batch.shard] * n,
        row=[p - shard_base for p in positions],
    )
    for col in plan.meta_columns:
        samples[col] = [dict(items[p].meta).get(col) for p in positions]

    h, w = (int(v) for v in plan.manifest.map_size)
    correct = [samples["correct"][i] for i in c.ok]
    masks = [c.decoded[i].regions for i in c.ok]
    stats: dict[str, Columns] = {}
    maps: dict[str, np.ndarray] = {}
    for method in plan.manifest.methods:
        full = np.full((n, h, w), np.nan, dtype=np.float16)
        cols: Columns = {c: [None] * n for c in plan.manifest.stat_columns}
        if plan.regions:
            cols["si_pattern"] = [None] * n
        cols["error"] = [f"no map: {e}" if e else "no map" for e in errors]
        found = c.maps.get(method)
        if found is not None and c.ok:
            st = map_statistics(found, masks, plan.regions, correct, plan.manifest.ground_truth)
            for key, values in st.items():
                column = cols.setdefault(key, [None] * n)
                as_list = _list(values) if isinstance(values, np.ndarray) else list(values)
                for j, i in enumerate(c.ok):
                    column[i] = as_list[j]
            stored = found.copy()
            finite = np.isfinite(stored).all(axis=(1, 2))
            stored[~finite] = np.nan
            big = np.abs(np.nan_to_num(stored)).max(axis=(1, 2)) > FLOAT16_MAX
            for j, i in enumerate(c.ok):
                if big[j]:
                    cols["error"][i] = "float16 overflow: map values beyond 65504 stored clipped"
            full[c.ok] = np.clip(stored, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
        for i, reason in c.method_errors.get(method, {}).items():
            for column in cols.values():
                column[i] = None  # no statistics of a map that was not made
            cols["error"][i] = reason
        cols["sample_id"] = samples["sample_id"]
        cols["shard"] = samples["shard"]
        cols["row"] = samples["row"]
        stats[method] = cols
        maps[method] = full
    return samples, stats, maps


def _legend(legend: tuple[tuple[int, str], ...] | None) -> str | None:
    return None if legend is None else json.dumps({str(k): v for k, v in legend})
