"""Saliency overlays on images, computed with numpy (no figure per overlay)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from PIL import Image

from salience.errors import SalienceError
from salience.viz.colormaps import colorize, scale

Opacity = Literal["value", "constant"]
Background = Literal["auto", "color", "gray", "light"]
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def as_picture(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """An RGB picture as ``[H, W, 3]`` uint8 (grayscale is repeated; floats are taken as 0..1)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # [C, H, W] -> [H, W, C]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise SalienceError(f"expected an RGB image [H, W, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    return arr


def as_map(saliency: np.ndarray | torch.Tensor) -> np.ndarray:
    """A single saliency map as ``[H, W]`` float32 (a leading batch or channel of 1 is dropped)."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().float().cpu().numpy()
    m = np.asarray(saliency, dtype=np.float32)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise SalienceError(f"expected one saliency map [H, W], got shape {m.shape}")
    return m


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[h, w]`` to ``size = (H, W)``."""
    if saliency.shape == size:
        return saliency
    img = Image.fromarray(saliency.astype(np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def heatmap(
    saliency: np.ndarray | torch.Tensor,
    *,
    signed: bool = False,
    cmap: str | None = None,
    percentile: float = 99.0,
) -> np.ndarray:
    """The map alone in colour, ``[H, W, 3]`` uint8."""
    return colorize(scale(as_map(saliency), signed, percentile), signed, cmap)


def overlay(
    image: Image.Image | np.ndarray | torch.Tensor,
    saliency: np.ndarray | torch.Tensor,
    *,
    signed: bool = False,
    cmap: str | None = None,
    alpha: float | None = None,
    percentile: float = 99.0,
    opacity: Opacity = "value",
    background: Background = "auto",
    stretch: bool = False,
) -> np.ndarray:
    """``image`` with ``saliency`` blended on top, ``[H, W, 3]`` uint8.

    The map is resized to the image, which must have the map's aspect ratio (the image the
    model saw, not the uncropped photo) unless ``stretch`` says the map covers it anyway
    (stored maps of another aspect than the model's input). It is then scaled by its
    ``percentile`` of |map| (see :func:`salience.viz.colormaps.scale`) and coloured with a
    sequential (unsigned) or diverging (signed) colormap. ``opacity="value"`` makes a pixel's
    opacity ``alpha * sqrt(|v|)``, so
    where the map is near zero the photo shows through; ``"constant"`` blends with ``alpha``
    everywhere. Signed maps are usually pixel-fine speckle whose red and blue get lost on a
    colour photo, so by default (``"auto"``) they are drawn with ``alpha=0.9`` on a lightened
    grayscale copy (``"light"``); unsigned maps with ``alpha=0.6`` on the photo (``"color"``).
    """
    alpha = (0.9 if signed else 0.6) if alpha is None else alpha
    if not 0.0 <= alpha <= 1.0:
        raise SalienceError(f"alpha must be in [0, 1], got {alpha}")
    if opacity not in ("value", "constant"):
        raise SalienceError(f"opacity must be 'value' or 'constant', got {opacity!r}")
    picture = _background(as_picture(image), background, signed)
    saliency = as_map(saliency)
    if not stretch:
        _same_aspect(picture.shape[:2], saliency.shape)
    values = scale(resize_map(saliency, picture.shape[:2]), signed, percentile)
    colour = colorize(values, signed, cmap).astype(np.float32)
    weight = np.full(values.shape, alpha, np.float32)
    if opacity == "value":
        weight *= np.sqrt(np.abs(values))
    weight = weight[..., None]
    blended = picture * (1.0 - weight) + colour * weight
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def _same_aspect(image: tuple[int, ...], saliency: tuple[int, ...]) -> None:
    """A map drawn over a picture of another shape would be stretched: say what to pass."""
    ratio = (image[1] / image[0]) / (saliency[1] / saliency[0])
    if abs(ratio - 1.0) > 0.02:
        raise SalienceError(
            f"the map is {saliency[1]}x{saliency[0]} but the image {image[1]}x{image[0]}: it "
            "would be stretched; overlay it on the image the model saw, "
            "loaded.preprocess.view(image), or use salience.show(loaded, image)"
        )


def _background(picture: np.ndarray, background: Background, signed: bool) -> np.ndarray:
    if background == "auto":
        background = "light" if signed else "color"
    if background == "color":
        return picture.astype(np.float32)
    if background not in ("gray", "light"):
        raise SalienceError(f"background must be auto, color, gray or light, got {background!r}")
    gray = np.repeat((picture.astype(np.float32) @ _LUMA)[..., None], 3, axis=-1)
    return gray * 0.6 + 255.0 * 0.4 if background == "light" else gray
