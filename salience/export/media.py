"""The files of an export: each image as the model saw it, and its maps as 8-bit PNGs.

A stored map covers the model's input (the resized, centre-cropped view), so the sample image
written here is that view (:meth:`Run.view_image`) and each map is resized (bilinear) to the
view's size: map pixel ``(y, x)`` lies on image pixel ``(y, x)``. The PNGs hold display
values scaled like the explorer's (:func:`salience.viz.colormaps.scale`: 99th percentile of
``|map|``), because image viewers read 8-bit pixels: unsigned maps as 0..255 (0: no
saliency), signed maps as 1..255 with 0 exactly at 128. The exact values stay in the run
(:meth:`Run.saliency`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salience.errors import SalienceError
from salience.jsonsafe import json_safe
from salience.store import Run
from salience.viz.colormaps import scale
from salience.viz.overlay import resize_map
from salience.viz.png import save_png

IMAGES = "images"
MAPS = "maps"
UNSIGNED_RANGE = (0, 255)
SIGNED_RANGE = (1, 255)  # 0 is left out: FiftyOne draws 0 as transparent
FAST = 1  # PNG compression level: fast; maps are smooth and compress well even so


@dataclass(frozen=True)
class MapFile:
    """One map written as a PNG; ``range`` is the pixel values' ``[min, max]``."""

    path: Path
    range: tuple[int, int]
    signed: bool


@dataclass(frozen=True)
class Exported:
    """One sample's files: its row of :meth:`Run.samples`, the view image, maps and stats."""

    row: dict[str, Any]
    image: Path
    width: int
    height: int
    maps: dict[str, MapFile] = field(default_factory=dict)  # method -> map (absent: none)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> statistics


@dataclass(frozen=True)
class Skipped:
    """A sample without a readable image, and why."""

    sample_id: str
    reason: str


def safe_name(text: str, limit: int = 60) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (never empty, never a path or a dot file)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:limit]
    return name or "x"


def stem(index: int, sample_id: str) -> str:
    """A unique, safe file stem for the ``index``-th sample."""
    return f"{index:06d}-{safe_name(sample_id)}"


def is_signed_method(method: str) -> bool:
    """Whether the registry says ``method`` gives signed maps (unknown methods: no)."""
    from salience.methods import method_info

    try:
        return bool(method_info(method).signed)
    except SalienceError:
        return False


def encode(saliency: np.ndarray, size: tuple[int, int], signed: bool) -> np.ndarray:
    """``saliency`` resized to ``size = (H, W)`` and coded as uint8 (see the module doc)."""
    s = resize_map(scale(saliency, signed), size)  # scaled at map size: fewer pixels
    if signed:
        return (1 + np.rint((s + 1.0) * 127.0)).astype(np.uint8)
    return np.rint(s * 255.0).astype(np.uint8)


def _by_id(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    rows = frame.to_dict("records")
    return {str(r.pop("sample_id")): {str(k): json_safe(v) for k, v in r.items()} for r in rows}


def export_media(
    run: Run,
    out: Path,
    methods: Sequence[str],
    folders: dict[str, str],
    progress: Callable[[], None] | None = None,
) -> Iterator[Exported | Skipped]:
    """Write each sample's view image and its maps under ``out`` (maps of a method in
    ``out/maps/folders[method]``), yielding what was written, sample by sample."""
    stats = {m: _by_id(run.stats(m)) for m in methods}
    signed = {m: is_signed_method(m) for m in methods}
    samples = run.samples()
    for index, raw in enumerate(samples.to_dict("records")):
        row = {str(k): json_safe(v) for k, v in raw.items()}
        sid = str(row["sample_id"])
        try:
            view = run.view_image(sid)
        except (SalienceError, OSError) as exc:
            reason = str(row["error"] or exc).split(":", 1)[0].strip() or "unreadable image"
            yield Skipped(sid, reason)
            if progress:
                progress()
            continue
        name = stem(index, sid)
        image = save_png(out / IMAGES / f"{name}.png", view, compress_level=FAST)
        size = (view.height, view.width)
        maps: dict[str, MapFile] = {}
        for m in methods:
            saliency = run.saliencies([sid], m)[0]
            if np.isnan(saliency).all():
                continue
            path = save_png(
                out / MAPS / folders[m] / f"{name}.png", encode(saliency, size, signed[m])
            )
            maps[m] = MapFile(path, SIGNED_RANGE if signed[m] else UNSIGNED_RANGE, signed[m])
        per_method = {m: stats[m].get(sid, {}) for m in methods}
        yield Exported(row, image, view.width, view.height, maps, per_method)
        if progress:
            progress()
