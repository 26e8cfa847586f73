"""One window against the baseline: every test side by side, and which classes' maps moved.

The window's ``p_value`` is the combined saliency test: the Bonferroni combination of the
statistic family (KS, Holm-corrected) and one MMD test per method. ``bbsd`` is the
output-only detector of Rabanser et al. (NeurIPS 2019), reported next to it so that shifts
only saliency catches (the object moved, predictions did not) are told apart from shifts only
the outputs catch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from salience.monitor.features import STATS, Features
from salience.monitor.twosample import (
    SortedBaseline,
    Test,
    bbsd,
    bonferroni_min,
    holm,
    mmd_test,
)

CLASS_STATS = ("com_y", "com_x", "spread")  # "region of mass, centre, spread" per class
MIN_CLASS = 5  # images of a class needed on both sides to test it
EXAMPLES = 3


class Baseline:
    """The baseline's features with everything a window test needs precomputed."""

    def __init__(self, features: Features, class_names: list[str]) -> None:
        self.features = features
        self.class_names = class_names
        self.methods = list(features.stats)
        self.sorted_stats = {m: SortedBaseline(features.stats[m]) for m in self.methods}
        self.sorted_probs = SortedBaseline(features.probs)
        self.by_class: dict[int, Features] = {
            int(c): features.take(features.pred == c) for c in np.unique(features.pred)
        }


def _class_name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def window_tests(
    base: Baseline, win: Features, alpha: float, rng: np.random.Generator, classes: bool = True
) -> dict[str, Any]:
    """The window's tests, combined p-value, BBSD and (with ``classes``) per-class movement."""
    tests: dict[str, Test] = {}
    names = [f"ks_{m}_{s}" for m in base.methods for s in STATS]
    d_all, p_all = [], []
    for m in base.methods:
        d, p = base.sorted_stats[m].ks(win.stats[m])
        d_all.append(d)
        p_all.append(p)
    adjusted = holm(np.concatenate(p_all)) if p_all else np.ones(0)
    d_flat = np.concatenate(d_all) if d_all else np.zeros(0)
    for j, name in enumerate(names):
        tests[name] = Test(float(d_flat[j]), float(adjusted[j]), bool(adjusted[j] < alpha))
    families = [float(adjusted.min()) if len(adjusted) else 1.0]
    for m in base.methods:
        stat, p_mmd = mmd_test(base.features.embed[m], win.embed[m], rng)
        families.append(p_mmd)
        tests[f"mmd_{m}"] = Test(stat, p_mmd, bool(p_mmd < alpha))
    p_value = bonferroni_min(families)
    out: dict[str, Any] = {
        "n": len(win),
        "alert": bool(p_value < alpha),
        "p_value": p_value,
        "tests": {k: v.as_dict() for k, v in tests.items()},
        "bbsd": bbsd(base.sorted_probs, base.features.pred, win.probs, win.pred, alpha),
    }
    out["confidence"] = float(np.nanmean(win.confidence)) if len(win) else None
    known = win.label >= 0
    out["accuracy"] = float((win.pred[known] == win.label[known]).mean()) if known.any() else None
    if classes and base.methods:
        out["classes"] = moved_classes(base, win, alpha)
    return out


def moved_classes(base: Baseline, win: Features, alpha: float) -> list[dict[str, Any]]:
    """Per predicted class: did the maps move (centre of mass, spread; KS, Holm over every
    class and statistic), by how much, and the images whose maps moved most (L1 distance of
    the embedding from the baseline's mean embedding of that class)."""
    m = base.methods[0]
    cols = [STATS.index(s) for s in CLASS_STATS]
    rows: list[dict[str, Any]] = []
    p_values: list[float] = []
    for c in sorted(int(v) for v in np.unique(win.pred) if v >= 0):
        ref = base.by_class.get(c)
        here = win.take(win.pred == c)
        if ref is None or len(ref) < MIN_CLASS or len(here) < MIN_CLASS:
            continue
        _, p = SortedBaseline(ref.stats[m][:, cols]).ks(here.stats[m][:, cols])
        mean_embed = np.nanmean(ref.embed[m], 0)
        dist = np.abs(here.embed[m] - mean_embed).sum(1)
        order = np.argsort(np.where(np.isfinite(dist), -dist, np.inf))[:EXAMPLES]
        shift = np.nanmean(here.stats[m][:, cols], 0) - np.nanmean(ref.stats[m][:, cols], 0)
        rows.append(
            {
                "class": _class_name(base.class_names, c),
                "n": len(here),
                "method": m,
                "shift": {s: float(v) for s, v in zip(CLASS_STATS, shift, strict=True)},
                "embedding_distance": float(np.nanmean(dist)),
                "examples": [here.sample_ids[i] for i in order],
                "baseline_mean_map": [round(float(v), 6) for v in mean_embed],
            }
        )
        p_values.extend(p.tolist())
    adjusted = holm(np.asarray(p_values))
    for k, row in enumerate(rows):
        p = adjusted[k * len(CLASS_STATS) : (k + 1) * len(CLASS_STATS)]
        row["p_value"] = float(p.min())
        row["moved"] = bool(p.min() < alpha)
    return rows
