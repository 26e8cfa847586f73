"""What a window is tested on: per image the predicted class, the softmax outputs, the
saliency statistics the audit computes and a small embedding of each map.

The embedding is the map's absolute value pooled to 8x8 and divided by its sum: where the
mass lies, independent of the map's scale. Features come from a stored run
(:func:`from_run`) or from a batch computed in memory (:func:`from_batch`, the same stages
the audit runs: :func:`salience.audit.attribute.attribute` and
:func:`salience.audit.stats.map_statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salience.audit.attribute import attribute
from salience.audit.stats import BASE_COLUMNS, map_statistics
from salience.methods import Attribution
from salience.store import Run

EMBED = 8  # the map embedding is EMBED x EMBED
STATS = BASE_COLUMNS
_CHUNK = 4096


@dataclass
class Features:
    """Rows are images; ``stats[m]`` is ``[n, len(STATS)]``, ``embed[m]`` ``[n, EMBED**2]``."""

    sample_ids: list[str]
    pred: np.ndarray  # int64 [n], -1 without a prediction
    label: np.ndarray  # int64 [n], -1 without a known label
    probs: np.ndarray  # float64 [n, K]
    stats: dict[str, np.ndarray]
    embed: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1) if self.probs.size else np.zeros(len(self))

    def take(self, rows: np.ndarray) -> Features:
        """The features of ``rows`` (indices or a boolean mask)."""
        idx = np.arange(len(self))[rows]
        return Features(
            [self.sample_ids[i] for i in idx],
            self.pred[idx],
            self.label[idx],
            self.probs[idx],
            {m: v[idx] for m, v in self.stats.items()},
            {m: v[idx] for m, v in self.embed.items()},
        )

    def columns(self) -> dict[str, np.ndarray | list[str]]:
        """Flat columns for a Parquet row set (one column per statistic and embedding cell)."""
        out: dict[str, np.ndarray | list[str]] = {
            "sample_id": self.sample_ids,
            "pred_index": self.pred,
            "label_index": self.label,
        }
        for k in range(self.probs.shape[1]):
            out[f"prob_{k}"] = self.probs[:, k]
        for m in self.stats:
            for j, name in enumerate(STATS):
                out[f"{m}.{name}"] = self.stats[m][:, j]
            for j in range(self.embed[m].shape[1]):
                out[f"{m}.e{j}"] = self.embed[m][:, j]
        return out

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray], methods: Sequence[str]) -> Features:
        """Inverse of :meth:`columns`."""
        k = sum(1 for c in cols if c.startswith("prob_"))
        n = len(cols["sample_id"])
        probs = np.stack([cols[f"prob_{j}"] for j in range(k)], 1) if k else np.zeros((n, 0))
        return cls(
            [str(s) for s in cols["sample_id"]],
            np.asarray(cols["pred_index"], np.int64),
            np.asarray(cols["label_index"], np.int64),
            probs.astype(np.float64),
            {m: np.stack([cols[f"{m}.{s}"] for s in STATS], 1) for m in methods},
            {m: np.stack([cols[f"{m}.e{j}"] for j in range(EMBED * EMBED)], 1) for m in methods},
        )


def concat(parts: Sequence[Features]) -> Features:
    first = parts[0]
    return Features(
        [s for p in parts for s in p.sample_ids],
        np.concatenate([p.pred for p in parts]),
        np.concatenate([p.label for p in parts]),
        np.concatenate([p.probs for p in parts]),
        {m: np.concatenate([p.stats[m] for p in parts]) for m in first.stats},
        {m: np.concatenate([p.embed[m] for p in parts]) for m in first.embed},
    )


def embed(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """Maps ``[n, h, w]`` -> ``[n, EMBED**2]``: |map| pooled and divided by its sum (NaN rows
    for maps that are missing, non-finite or all zero)."""
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32)).abs()
    bad = ~torch.isfinite(t).all(dim=(1, 2))
    t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
    pooled = F.adaptive_avg_pool2d(t[:, None], EMBED)[:, 0].reshape(len(t), -1).double()
    total = pooled.sum(1, keepdim=True)
    out = (pooled / total.clamp_min(1e-30)).numpy()
    out[(bad | (total[:, 0] <= 0)).numpy()] = np.nan
    return out


def _stats(maps: np.ndarray) -> np.ndarray:
    st = map_statistics(maps)
    return np.stack([np.asarray(st[c], dtype=np.float64) for c in STATS], 1)


def probs_from_topk(index: Sequence[object], prob: Sequence[object], k: int) -> np.ndarray:
    """Softmax outputs ``[n, k]`` from stored top-k lists; the mass outside the top-k is
    spread evenly over the other classes (exact when the run kept every class)."""
    out = np.full((len(index), k), np.nan)
    for i, (idx, p) in enumerate(zip(index, prob, strict=True)):
        if idx is None or p is None or len(idx) == 0:  # type: ignore[arg-type]
            continue
        ii, pp = np.asarray(idx, np.int64), np.asarray(p, np.float64)
        rest = k - len(ii)
        out[i] = max(0.0, 1.0 - pp.sum()) / rest if rest > 0 else 0.0
        out[i, ii] = pp
    return out


def from_run(run: Run, methods: Sequence[str]) -> Features:
    """Features of every image of ``run`` that has a prediction, in dataset order."""
    df = run.samples(["sample_id", "pred_index", "label_index", "topk_index", "topk_prob"])
    df = df[df["pred_index"].notna()].reset_index(drop=True)
    ids = df["sample_id"].astype(str).tolist()
    k = len(run.class_names)
    probs = probs_from_topk(df["topk_index"].tolist(), df["topk_prob"].tolist(), k)
    stats: dict[str, np.ndarray] = {}
    emb: dict[str, np.ndarray] = {}
    for m in methods:
        st = run.stats(m).set_index("sample_id").reindex(ids)
        stats[m] = st[list(STATS)].to_numpy(dtype=np.float64)
        parts = [embed(run.saliencies(ids[a : a + _CHUNK], m)) for a in range(0, len(ids), _CHUNK)]
        emb[m] = np.concatenate(parts) if parts else np.zeros((0, EMBED * EMBED))
    return Features(
        ids,
        df["pred_index"].to_numpy(np.int64),
        df["label_index"].fillna(-1).to_numpy(np.int64),
        probs,
        stats,
        emb,
    )


def from_batch(
    module: nn.Module,
    x: torch.Tensor,
    methods: dict[str, Attribution],
    map_size: tuple[int, int],
    sample_ids: Sequence[str],
    labels: Sequence[int] | None = None,
) -> Features:
    """Features of a preprocessed batch ``x`` computed in memory (predicted-class maps)."""
    result = attribute(module, x, methods, map_size)
    probs = torch.softmax(result.logits.double(), 1).cpu().numpy()
    n = len(x)
    stats: dict[str, np.ndarray] = {}
    emb: dict[str, np.ndarray] = {}
    for m in methods:
        found = result.maps[m]
        maps = np.full((n, *map_size), np.nan, np.float32) if found is None else found.cpu().numpy()
        stats[m], emb[m] = _stats(maps), embed(maps)
    return Features(
        list(sample_ids),
        probs.argmax(1).astype(np.int64),
        np.asarray(labels if labels is not None else [-1] * n, np.int64),
        probs,
        stats,
        emb,
    )
