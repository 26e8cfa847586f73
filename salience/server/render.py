"""Server-side rendering of thumbnails, saliency overlays, mean maps and mask outlines.

Overlays are transparent RGBA PNGs at the map's resolution (the browser stretches them over
the thumbnail), so the opacity slider is a CSS property and needs no new request. Unsigned
maps use a sequential colormap whose alpha rises with the value; maps with a real negative
part use a diverging colormap (blue negative, red positive) whose alpha follows |value|.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from matplotlib import colormaps
from PIL import Image

SEQUENTIAL = "inferno"
DIVERGING = "RdBu_r"
STAT = "viridis"
COUNT = "Blues"
LEGEND_MAPS = {SEQUENTIAL: False, DIVERGING: True, STAT: False, COUNT: False}

# Distinct, colour-blind friendly region outline colours (Okabe-Ito without black).
REGION_COLORS = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"]


@cache
def lut(name: str) -> np.ndarray:
    """The colormap ``name`` as a ``[256, 4]`` uint8 lookup table."""
    return (colormaps[name](np.linspace(0.0, 1.0, 256)) * 255).round().astype(np.uint8)


def stops(name: str, n: int = 9) -> list[str]:
    """``n`` CSS hex colours along the colormap, for legends drawn in the browser."""
    table = lut(name)[np.linspace(0, 255, n).round().astype(int)]
    return ["#{:02x}{:02x}{:02x}".format(*row[:3]) for row in table]


def normalize(saliency: np.ndarray) -> tuple[np.ndarray, bool]:
    """Scale a map to [-1, 1] (signed) or [0, 1] by its 99.5th percentile of |value|.

    A map counts as signed when its negative part reaches 1% of its largest magnitude.
    """
    m = np.nan_to_num(np.asarray(saliency, dtype=np.float32))
    mag = np.abs(m)
    scale = float(np.percentile(mag, 99.5)) if mag.size else 0.0
    if scale <= 0:
        scale = float(mag.max()) if mag.size else 0.0
    if scale <= 0:
        return np.zeros_like(m), False
    signed = bool(m.min() < -0.01 * float(mag.max()))
    v = np.clip(m / scale, -1.0 if signed else 0.0, 1.0)
    return v, signed


def colorize(values: np.ndarray, signed: bool, transparent: bool) -> Image.Image:
    """Map normalized values to an RGBA image (alpha from the magnitude when transparent)."""
    if signed:
        idx = ((values + 1.0) * 127.5).round().astype(np.uint8)
        rgba = lut(DIVERGING)[idx].copy()
        strength = np.abs(values)
    else:
        idx = (values * 255.0).round().astype(np.uint8)
        rgba = lut(SEQUENTIAL)[idx].copy()
        strength = values
    if transparent:
        rgba[..., 3] = (np.sqrt(strength) * 235.0).round().astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def overlay(saliency: np.ndarray, max_side: int) -> Image.Image:
    """A transparent overlay of one map, downscaled so its longer side is at most ``max_side``."""
    values, signed = normalize(saliency)
    img = colorize(values, signed, transparent=True)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return img


def heatmap(saliency: np.ndarray, max_side: int) -> Image.Image:
    """An opaque heatmap (for the mean map of a selection, which has no single image)."""
    values, signed = normalize(saliency)
    img = colorize(values, signed, transparent=False).convert("RGB")
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


def blend(base: Image.Image, over: Image.Image, opacity: float) -> Image.Image:
    """``over`` (RGBA, any size) stretched onto ``base`` at ``opacity``, as RGB."""
    layer = over.resize(base.size, Image.Resampling.BILINEAR)
    alpha = np.asarray(layer)[..., 3].astype(np.float32) * opacity
    layer.putalpha(Image.fromarray(alpha.round().astype(np.uint8), "L"))
    out = base.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


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
