"""Server-side rendering of thumbnails, saliency overlays, mean maps and mask outlines.

Colours and scaling come from :mod:`salience.viz`, so the explorer, the report and saved
figures agree. Overlays are transparent RGBA PNGs at the map's resolution (the browser
stretches them over the thumbnail), so the opacity slider is a CSS property and needs no new
request; a pixel's alpha is ``sqrt(|v|)`` of its scaled value, as in ``viz.overlay``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from salience.viz import DIVERGING, SEQUENTIAL, colorize, lut, scale

STAT = "viridis"
COUNT = "Blues"
LEGEND_MAPS = {SEQUENTIAL: False, DIVERGING: True, STAT: False, COUNT: False}
PERCENTILE = 99.5

# Distinct, colour-blind friendly region outline colours (Okabe-Ito without black).
REGION_COLORS = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"]


def stops(name: str, n: int = 9) -> list[str]:
    """``n`` CSS hex colours along the colormap, for legends drawn in the browser."""
    table = lut(name)
    picks = table[np.linspace(0, len(table) - 1, n).round().astype(int)]
    return ["#{:02x}{:02x}{:02x}".format(*row[:3]) for row in picks]


def is_signed(saliency: np.ndarray) -> bool:
    """Whether a map has a real negative part (at least 1% of its largest magnitude)."""
    m = np.nan_to_num(np.asarray(saliency, dtype=np.float32))
    return bool(m.size) and bool(m.min() < -0.01 * float(np.abs(m).max()))


def _rgba(saliency: np.ndarray, transparent: bool) -> Image.Image:
    signed = is_signed(saliency)
    values = scale(saliency, signed, PERCENTILE)
    rgb = colorize(values, signed)
    alpha = np.sqrt(np.abs(values)) * 235.0 if transparent else np.full(values.shape, 255.0)
    rgba = np.dstack([rgb, alpha.round().astype(np.uint8)])
    return Image.fromarray(np.ascontiguousarray(rgba), "RGBA")


def overlay(saliency: np.ndarray, max_side: int, smooth: bool = False) -> Image.Image:
    """A transparent overlay of one map, downscaled so its longer side is at most ``max_side``;
    with ``smooth``, a smaller map is first upsampled to ``max_side`` by bilinear interpolation
    of its values (a coarse map then reads as a smooth field, not as blocks)."""
    if smooth:
        saliency = upsample(saliency, max_side)
    img = _rgba(saliency, transparent=True)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return img


def upsample(saliency: np.ndarray, max_side: int) -> np.ndarray:
    """``saliency`` resized bilinearly so its longer side is ``max_side`` (never smaller)."""
    m = np.nan_to_num(np.asarray(saliency, dtype=np.float32))
    h, w = m.shape[:2]
    if max(h, w) >= max_side:
        return m
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(m, "F").resize(size, Image.Resampling.BILINEAR))


def heatmap(saliency: np.ndarray, max_side: int) -> Image.Image:
    """An opaque heatmap (for the mean map of a selection, which has no single image)."""
    img = _rgba(saliency, transparent=False).convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return img


def fit(img: Image.Image, max_side: int) -> Image.Image:
    """An RGB copy of ``img`` with its longer side at most ``max_side``."""
    out = img.convert("RGB")
    out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def mask_outline(mask: np.ndarray, colors: dict[int, str], size: tuple[int, int]) -> Image.Image:
    """Region boundaries of an integer mask as a transparent RGBA image of ``size`` (w, h)."""
    small = Image.fromarray(mask.astype(np.int32)).resize(size, Image.Resampling.NEAREST)
    m = np.asarray(small)
    edge = np.zeros(m.shape, dtype=bool)
    edge[:-1, :] |= m[:-1, :] != m[1:, :]
    edge[1:, :] |= m[:-1, :] != m[1:, :]
    edge[:, :-1] |= m[:, :-1] != m[:, 1:]
    edge[:, 1:] |= m[:, :-1] != m[:, 1:]
    rgba = np.zeros((*m.shape, 4), dtype=np.uint8)
    for index, color in colors.items():
        sel = edge & (m == index)
        rgba[sel] = [*_hex(color), 255]
    return Image.fromarray(rgba, "RGBA")


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=85)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _hex(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
