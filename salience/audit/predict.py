"""Stage 3: predictions from logits: class, confidence, top-k, loss and correctness."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NON_FINITE = "non-finite output: the model returned NaN or infinite logits"


def predictions(
    logits: np.ndarray, label_index: Sequence[int | None], top_k: int
) -> dict[str, list[Any]]:
    """Columns for a batch of logits ``[N, K]`` (float64 softmax; loss = cross-entropy)."""
    z = np.asarray(logits, dtype=np.float64)
    n, k = z.shape
    finite = np.asarray(np.isfinite(z).all(1))
    safe = np.where(finite[:, None], z, 0.0)
    shifted = safe - safe.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    prob = np.exp(log_p)
    order = np.argsort(-safe, axis=1, kind="stable")[:, : min(top_k, k)]
    cols: dict[str, list[Any]] = {
        c: []
        for c in ("pred_index", "confidence", "topk_index", "topk_prob", "loss", "correct", "error")
    }
    for i in range(n):
        if not finite[i]:
            for c in ("pred_index", "confidence", "topk_index", "topk_prob", "loss", "correct"):
                cols[c].append(None)
            cols["error"].append(NON_FINITE)
            continue
        top = order[i]
        label = label_index[i]
        cols["pred_index"].append(int(top[0]))
        cols["confidence"].append(float(prob[i, top[0]]))
        cols["topk_index"].append([int(t) for t in top])
        cols["topk_prob"].append([float(prob[i, t]) for t in top])
        known = label is not None and 0 <= label < k
        cols["loss"].append(float(-log_p[i, label]) if known and label is not None else None)
        cols["correct"].append(bool(top[0] == label) if known else None)
        cols["error"].append(None)
    return cols
