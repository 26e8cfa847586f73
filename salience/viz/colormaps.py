"""Colormaps as numpy lookup tables, and scaling of raw maps for display.

Raw saliency maps are never normalised by the methods; display scales them here. Unsigned
maps go to [0, 1] with a sequential colormap; signed maps go to [-1, 1], symmetrically about
0, with a diverging colormap whose centre colour (neutral) is exactly the value 0.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SEQUENTIAL = "inferno"
DIVERGING = "RdBu_r"
LUT_SIZE = 257  # odd, so the diverging centre (0) is one exact entry: index 128


@cache
def lut(name: str) -> np.ndarray:
    """The matplotlib colormap ``name`` as a read-only ``[257, 3]`` uint8 table."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        from salience.errors import SalienceError

        raise SalienceError(
            f"unknown colormap {name!r}; use a matplotlib name such as inferno"
        ) from None
    table = (cmap(np.linspace(0.0, 1.0, LUT_SIZE))[:, :3] * 255).round().astype(np.uint8)
    table.setflags(write=False)
    return table


def scale(saliency: np.ndarray, signed: bool, percentile: float = 99.0) -> np.ndarray:
    """Map to [-1, 1] (signed) or [0, 1] (unsigned: negative values count as 0), dividing by
    the ``percentile`` of |map| and clipping, so a few extreme pixels do not wash it out."""
    if not 0 < percentile <= 100:
        from salience.errors import SalienceError

        raise SalienceError(f"percentile must be in (0, 100], got {percentile}")
    m = np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mag = np.abs(m) if signed else np.clip(m, 0.0, None)
    top = float(np.percentile(mag, percentile)) if mag.size else 0.0
    if top <= 0.0:
        top = float(mag.max(initial=0.0))
    if top <= 0.0:
        return np.zeros(m.shape, np.float32)
    return np.clip(m / top, -1.0 if signed else 0.0, 1.0).astype(np.float32)


def colorize(values: np.ndarray, signed: bool, cmap: str | None = None) -> np.ndarray:
    """Scaled values (see :func:`scale`) -> ``[H, W, 3]`` uint8 colours by table lookup."""
    name = cmap or (DIVERGING if signed else SEQUENTIAL)
    v = np.asarray(values, dtype=np.float32)
    pos = (v + 1.0) / 2.0 if signed else v
    idx = np.rint(np.clip(pos, 0.0, 1.0) * (LUT_SIZE - 1)).astype(np.intp)
    return lut(name)[idx]
