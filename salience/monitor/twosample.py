"""Two-sample tests of a window against the baseline.

- Per statistic: the Kolmogorov-Smirnov test (asymptotic p-value, conservative with ties), a
  family corrected with Holm's step-down procedure (Holm, Scand. J. Stat. 1979).
- Map embeddings: the maximum mean discrepancy with a Gaussian kernel whose width is the
  median pairwise distance, and a permutation p-value (Gretton et al., JMLR 2012).
- BBSD, black-box shift detection: KS on each softmax output with a Bonferroni correction
  (Rabanser, Guennemann & Lipton, "Failing Loudly", NeurIPS 2019), and a chi-squared test of
  the predicted-class mix.

Every p-value is valid for exchangeable samples, so a window drawn like the baseline raises
an alarm at most ``alpha`` of the time (see :func:`salience.monitor.calibrate.calibrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2, kstwo

MMD_BASELINE = 500  # baseline images drawn for the MMD (the window is used whole)
PERMUTATIONS = 200


@dataclass(frozen=True)
class Test:
    """One test: its statistic, its (corrected) p-value and whether it fired at ``alpha``."""

    statistic: float
    p_value: float
    alert: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {"statistic": self.statistic, "p_value": self.p_value, "alert": self.alert}


class SortedBaseline:
    """Baseline columns sorted once (NaN dropped), so a window is tested in ``O(m log n)``."""

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        self.columns = [np.sort(c[np.isfinite(c)]) for c in values.T]

    def ks(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per column: the KS statistic D and its two-sided asymptotic p-value."""
        window = np.asarray(window, dtype=np.float64).reshape(len(window), -1)
        d = np.zeros(len(self.columns))
        p = np.ones(len(self.columns))
        for j, base in enumerate(self.columns):
            win = np.sort(window[:, j][np.isfinite(window[:, j])])
            n, m = len(base), len(win)
            if n == 0 or m == 0:
                continue
            grid = np.concatenate([base, win])
            cdf_b = np.searchsorted(base, grid, side="right") / n
            cdf_w = np.searchsorted(win, grid, side="right") / m
            d[j] = float(np.abs(cdf_b - cdf_w).max())
            p[j] = float(kstwo.sf(d[j], max(1, round(n * m / (n + m)))))
        return d, np.clip(p, 0.0, 1.0)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error rate), in the input order."""
    p = np.asarray(p, dtype=np.float64)
    k = len(p)
    if k == 0:
        return p
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((k - np.arange(k)) * p[order])
    out = np.empty(k)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bonferroni_min(p: Sequence[float] | np.ndarray) -> float:
    """The family's p-value: ``min(1, k * min p)`` (valid under any dependence)."""
    arr = np.asarray(p, dtype=np.float64)
    return float(min(1.0, len(arr) * arr.min())) if len(arr) else 1.0


def ks_family(
    base: SortedBaseline, window: np.ndarray, names: Sequence[str], alpha: float
) -> dict[str, Test]:
    """One KS test per column, Holm-corrected within the family."""
    d, p = base.ks(window)
    adjusted = holm(p)
    return {
        n: Test(float(d[j]), float(adjusted[j]), bool(adjusted[j] < alpha))
        for j, n in enumerate(names)
    }


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa, bb = (a * a).sum(1), (b * b).sum(1)
    return np.maximum(aa[:, None] + bb[None, :] - 2.0 * a @ b.T, 0.0)


def mmd_test(
    base: np.ndarray,
    window: np.ndarray,
    rng: np.random.Generator,
    permutations: int = PERMUTATIONS,
    max_base: int = MMD_BASELINE,
) -> tuple[float, float]:
    """Squared MMD (biased V-statistic) between the rows of ``base`` and ``window`` and its
    permutation p-value ``(1 + #{permuted >= observed}) / (1 + permutations)``."""
    base = base[np.isfinite(base).all(1)]
    window = window[np.isfinite(window).all(1)]
    if len(base) < 2 or len(window) < 2:
        return 0.0, 1.0
    if len(base) > max_base:
        base = base[rng.choice(len(base), max_base, replace=False)]
    pooled = np.concatenate([base, window]).astype(np.float64)
    d2 = _sq_dists(pooled, pooled)
    off = d2[np.triu_indices(len(pooled), 1)]
    width = float(np.median(off[off > 0])) if (off > 0).any() else 1.0
    kernel = np.exp(-d2 / width)
    n, m = len(base), len(window)
    signs = np.empty((n + m, permutations + 1))
    signs[:, 0] = np.r_[np.full(n, -1.0 / n), np.full(m, 1.0 / m)]
    for k in range(1, permutations + 1):
        signs[:, k] = signs[rng.permutation(n + m), 0]
    values = (signs * (kernel @ signs)).sum(0)
    observed = float(values[0])
    p = (1.0 + float((values[1:] >= observed - 1e-12).sum())) / (1.0 + permutations)
    return observed, p


def bbsd(
    base: SortedBaseline,
    base_classes: np.ndarray,
    probs: np.ndarray,
    classes: np.ndarray,
    alpha: float,
) -> dict[str, float | bool]:
    """BBSD: KS on every softmax output, Bonferroni over outputs; plus the class-mix test."""
    d, p = base.ks(probs)
    p_value = bonferroni_min(p)
    return {
        "statistic": float(d.max()) if len(d) else 0.0,
        "p_value": p_value,
        "alert": bool(p_value < alpha),
        "class_mix_p_value": class_mix(base_classes, classes),
    }


def class_mix(base: np.ndarray, window: np.ndarray) -> float:
    """Chi-squared test of homogeneity of the predicted classes (classes seen in either)."""
    base, window = base[base >= 0], window[window >= 0]
    if len(base) == 0 or len(window) == 0:
        return 1.0
    k = int(max(base.max(), window.max())) + 1
    table = np.stack([np.bincount(base, minlength=k), np.bincount(window, minlength=k)])
    table = table[:, table.sum(0) > 0].astype(np.float64)
    if table.shape[1] < 2:
        return 1.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return float(chi2.sf(stat, table.shape[1] - 1))
