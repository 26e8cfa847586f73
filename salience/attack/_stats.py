"""Small statistics for attack reports: bootstrap intervals, rank correlation, ROC AUC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr

from salience.jsonsafe import finite

Interval = tuple[float | None, float | None]


def bootstrap(
    stat: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile interval of ``stat(indices)`` over ``resamples`` resamples of ``range(n)``."""
    if n < 3:
        return (None, None)
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < resamples // 2:
        return (None, None)
    tail = (1 - level) / 2
    return (finite(np.quantile(values, tail)), finite(np.quantile(values, 1 - tail)))


def rank_correlation(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Spearman's rho of paired values (non-finite pairs dropped) with a bootstrap interval."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]

    def rho(idx: np.ndarray) -> float:
        a, b = x[idx], y[idx]
        if np.ptp(rankdata(a)) == 0 or np.ptp(rankdata(b)) == 0:
            return float("nan")
        return float(spearmanr(a, b).statistic)

    full = rho(np.arange(len(x))) if len(x) >= 3 else float("nan")
    return {"rho": finite(full), "interval": list(bootstrap(rho, len(x), seed=seed)), "n": len(x)}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos * n_neg)); ties count one half."""
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
