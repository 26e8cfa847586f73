"""Verify the false-alarm rate by splitting the baseline against itself.

Each split draws a pseudo-window of the monitored window size from the baseline and tests it
against the rest, exactly as a real window is tested. The share of splits that raise an
alarm estimates the false-alarm rate per window for data drawn like the baseline (the
calibration protocol of Rabanser et al., NeurIPS 2019: no-shift windows at alpha 0.05).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

from salience.monitor.features import Features
from salience.monitor.window import Baseline, window_tests

SPLITS = 100


def calibrate(
    features: Features,
    class_names: list[str],
    window: int,
    alpha: float,
    splits: int = SPLITS,
    seed: int = 0,
) -> dict[str, Any]:
    """Alarm rates of the saliency test and of BBSD over ``splits`` baseline self-splits."""
    rng = np.random.default_rng(seed)
    n = len(features)
    size = min(window, n // 2)
    if size < 2:
        return {"target": alpha, "measured": None, "bbsd": None, "splits": 0, "window": size}
    saliency = bbsd_alarms = 0
    for _ in range(splits):
        order = rng.permutation(n)
        win, rest = features.take(order[:size]), features.take(order[size:])
        result = window_tests(Baseline(rest, class_names), win, alpha, rng, classes=False)
        saliency += bool(result["alert"])
        bbsd_alarms += bool(result["bbsd"]["alert"])
    measured = saliency / splits
    # above the target beyond chance (one-sided binomial test at 1%)
    high = binomtest(saliency, splits, alpha, alternative="greater").pvalue < 0.01
    return {
        "target": alpha,
        "measured": measured,
        "bbsd": bbsd_alarms / splits,
        "splits": splits,
        "window": size,
        "method": "baseline split against itself",
        "verified": not high,
    }
