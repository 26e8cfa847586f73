"""Class-wide shortcuts: evidence that sits in the same small place in most images of a class.

SpRAy (Lapuschkin et al., 2019, Nat. Commun. 10:1096) finds a *minority* strategy inside a
class. When every image of a class carries the cue (a logo of one data source, a scanner
border, a ruler in every melanoma photo: Winkler et al., 2019, JAMA Dermatol. 155:1135; the
"Clever Hans" tags of Lapuschkin et al.), the class has one strategy and clustering sees
nothing odd. Objects move between photos, artefacts do not, so this module compares each
class with the others on normalised ``G x G`` maps (:func:`salience.audit.spray.downsample`):

- the class's mean map and its *box*: the bounding box of the connected cells around the
  mean map's peak holding at least ``level`` of its maximum;
- fixedness: the share of the class's images whose own peak lies in the box (grown by one
  cell), the spread of the per-image peaks and centres of mass, and the mean pairwise overlap
  of the images' hottest cells;
- concentration: the mean map's mass in the box against the box's area;
- distinctness: the same image share for the other classes (median over classes) and the
  total-variation distance between the class's mean map and the other classes' mean.

A class is flagged when its box is small, most of its images peak in it and the other
classes' images rarely do. A map alone can mislead (Adebayo et al., NeurIPS 2018), so the
finding stays "not confirmed" until :mod:`salience.audit.intervention` has masked the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage

from salience.audit.spray import mass_centre

Box = tuple[float, float, float, float]  # y0, x0, y1, x1 as fractions of height and width


@dataclass(frozen=True)
class ClassWideParams:
    """Knobs of the class-wide test; recorded in ``shortcuts.json`` under ``params``."""

    level: float = 0.5  # the box holds the mean map's cells at or above this share of its peak
    max_area: float = 0.15  # "small": at most this share of the image (CAMs blur small marks)
    min_share: float = 0.6  # share of the class's images that must peak in the box
    min_contrast: float = 3.0  # ... at least this many times the other classes' share
    min_images: int = 5
    top: float = 0.1  # the hottest share of cells compared across images (overlap)
    intervention_images: int = 64  # per side (the class, the other classes)
    min_effect: float = 0.5  # confirmed: filling the box changes this share beyond control


def class_box(mean_map: np.ndarray, level: float) -> Box:
    """The box (fractions, cell edges) of the connected cells around ``mean_map``'s peak that
    hold at least ``level`` times its maximum (4-connectivity)."""
    g_h, g_w = mean_map.shape
    hot = mean_map >= level * float(mean_map.max())
    labels, _ = scipy.ndimage.label(hot)
    r, c = np.unravel_index(int(np.argmax(mean_map)), mean_map.shape)
    rows, cols = np.nonzero(labels == labels[r, c])
    return (
        rows.min() / g_h,
        cols.min() / g_w,
        (rows.max() + 1) / g_h,
        (cols.max() + 1) / g_w,
    )


def _cells(box: Box, shape: tuple[int, int], grow: int = 0) -> tuple[slice, slice]:
    g_h, g_w = shape
    y0, x0, y1, x1 = box
    return (
        slice(max(0, round(y0 * g_h) - grow), min(g_h, round(y1 * g_h) + grow)),
        slice(max(0, round(x0 * g_w) - grow), min(g_w, round(x1 * g_w) + grow)),
    )


def peaks_in(grids: np.ndarray, box: Box, grow: int = 1) -> np.ndarray:
    """Whether each map's hottest cell lies in ``box`` grown by ``grow`` cells (bool ``[n]``)."""
    return _inside(grids.reshape(len(grids), -1).argmax(1), grids.shape[1:], box, grow)


def _inside(flat: np.ndarray, shape: tuple[int, ...], box: Box, grow: int = 1) -> np.ndarray:
    """Whether flat cell indices into a ``shape`` grid lie in ``box`` grown by ``grow``."""
    g_h, g_w = shape
    rows, cols = _cells(box, (g_h, g_w), grow)
    r, c = flat // g_w, flat % g_w
    return np.asarray(
        (r >= rows.start) & (r < rows.stop) & (c >= cols.start) & (c < cols.stop), dtype=bool
    )


def overlap(grids: np.ndarray, top: float) -> float:
    """Mean over pairs of images of the share of their hottest ``top`` cells (cells with mass
    only) they have in common: ``sum_cells(c^2 - c) / (n (n - 1) k)`` with ``c`` the images
    per cell and ``k`` the mean number of cells per image (exact for equal counts, O(n))."""
    n = len(grids)
    flat = grids.reshape(n, -1)
    k = max(1, round(top * flat.shape[1]))
    if n < 2:
        return float("nan")
    hottest = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    hot = np.take_along_axis(flat, hottest, 1) > 0
    counts = np.bincount(hottest[hot], minlength=flat.shape[1]).astype(np.float64)
    mean_k = max(float(hot.sum(1).mean()), 1e-12)
    return float((counts**2 - counts).sum() / (n * (n - 1) * mean_k))


def spread(points: np.ndarray) -> float:
    """Root mean squared distance of ``[n, 2]`` points from their median (image fractions)."""
    if not len(points):
        return float("nan")
    d = points - np.median(points, axis=0)
    return float(np.sqrt((d**2).sum(1).mean()))


def _peaks(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    g_h, g_w = shape
    return np.stack([(flat // g_w + 0.5) / g_h, (flat % g_w + 0.5) / g_w], axis=1)


def _centres(grids: np.ndarray) -> np.ndarray:
    _, g_h, g_w = grids.shape
    total = np.maximum(grids.sum(axis=(1, 2)), 1e-30)
    y = (grids.sum(2) * ((np.arange(g_h) + 0.5) / g_h)).sum(1) / total
    x = (grids.sum(1) * ((np.arange(g_w) + 0.5) / g_w)).sum(1) / total
    return np.stack([y, x], axis=1)


def hottest_cells(grids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per class, the flat index of every map's hottest cell."""
    return {c: g.reshape(len(g), -1).argmax(1) for c, g in grids.items() if len(g)}


def share_in_box(
    hottest: dict[str, np.ndarray], name: str, box: Box, shape: tuple[int, ...]
) -> tuple[float, float | None]:
    """The share of class ``name``'s images that peak in ``box`` (grown by a cell) and the
    median of that share over the other classes (robust to a few that share the place)."""
    own = float(_inside(hottest[name], shape, box).mean())
    others = [float(_inside(f, shape, box).mean()) for c, f in hottest.items() if c != name]
    return own, float(np.median(others)) if others else None


def class_wide(grids: dict[str, np.ndarray], params: ClassWideParams) -> dict[str, dict[str, Any]]:
    """The class-wide statistics and map-based verdict of every class (see the module
    docstring); ``grids[name]`` holds the class's normalised maps ``[n, G, G]``."""
    names = [c for c, g in grids.items() if len(g)]
    means = {c: grids[c].mean(0, dtype=np.float64) for c in names}
    hottest = hottest_cells(grids)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        g, mean = grids[name], means[name]
        others = [c for c in names if c != name]
        box = class_box(mean, params.level)
        rows, cols = _cells(box, mean.shape)
        area = (box[2] - box[0]) * (box[3] - box[1])
        shape = mean.shape
        share, other_share = share_in_box(hottest, name, box, shape)
        other_mean = np.mean([means[c] for c in others], axis=0) if others else None
        mass = float(mean[rows, cols].sum())
        entry: dict[str, Any] = {
            "box": [round(float(v), 4) for v in box],
            "area": round(area, 4),
            "share": round(share, 4),
            "other_share": None if other_share is None else round(other_share, 4),
            "mass": round(mass, 4),
            "other_mass": None
            if other_mean is None
            else round(float(other_mean[rows, cols].sum()), 4),
            "density": round(mass / max(area, 1e-9), 4),
            "difference": None
            if other_mean is None
            else round(0.5 * float(np.abs(mean - other_mean).sum()), 4),
            "peak_spread": round(spread(_peaks(hottest[name], shape)), 4),
            "com_spread": round(spread(_centres(g)), 4),
            "overlap": round(overlap(g, params.top), 4),
            "centroid": [round(float(v), 4) for v in mass_centre(mean)],
            "mean_map": _rounded(mean),
            "others_map": None if other_mean is None else _rounded(other_mean),
        }
        entry["flagged"], entry["evidence"] = _verdict(name, len(g), entry, params)
        entry["confirmed"] = None
        entry["intervention"] = None
        out[name] = entry
    return out


def _rounded(grid_map: np.ndarray) -> list[list[float]]:
    out: list[list[float]] = np.round(grid_map / max(float(grid_map.max()), 1e-30), 3).tolist()
    return out


def _verdict(name: str, n: int, e: dict[str, Any], params: ClassWideParams) -> tuple[bool, str]:
    """Whether the map alone flags the class, and the sentence that says where and how often."""
    y0, x0, y1, x1 = e["box"]
    where = f"box y {y0:.2f}-{y1:.2f}, x {x0:.2f}-{x1:.2f} ({e['area']:.1%} of the image)"
    if e["other_share"] is None:
        return False, f"no other class to compare {name} with"
    sentence = (
        f"the saliency peak of {e['share']:.0%} of {name} images lies in one {where}, "
        f"against {e['other_share']:.0%} of other classes' images"
    )
    flagged = (
        n >= params.min_images
        and e["area"] <= params.max_area
        and e["share"] >= params.min_share
        and e["share"] >= params.min_contrast * e["other_share"]
    )
    return bool(flagged), sentence
