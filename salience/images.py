"""Reading image files robustly: every failure is one clear :class:`SalienceError`.

Whatever the file holds, :func:`load_image` returns an 8-bit RGB ``PIL.Image``:

- EXIF orientation is applied (phone photos come out upright);
- animated or multi-page files (GIF, TIFF) contribute their first frame;
- transparency (RGBA, LA, PA, palette with a transparent colour) is composited on white, the
  way a page shows the picture; the colour values hidden under alpha = 0 are meaningless;
- CMYK, YCbCr, grayscale and bilevel images are converted by Pillow; embedded ICC profiles
  are not applied;
- 16-bit and 32-bit integer grayscale is scaled to 0..255 from its full range (0..65535);
  float images in 0..1 are scaled by 255, others clipped to 0..255.

Images above ``max_pixels`` (Pillow's decompression-bomb limit by default) are refused before
they are decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from salience.errors import SalienceError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
DEFAULT_MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
_WHITE = (255, 255, 255)


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Open ``path`` as 8-bit RGB (see the module docstring for the conversions).

    ``draft_size`` lets JPEG decoding shrink the image by a power of two while both sides stay
    at least that large: much faster for big photos that are resized afterwards anyway.
    """
    p = Path(path)
    if not p.exists():
        raise SalienceError(f"image not found: {p}")
    if p.is_dir():
        raise SalienceError(f"{p} is a folder, not an image file")
    if p.stat().st_size == 0:
        raise SalienceError(f"image {p} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                _check_size(p, img.size, max_pixels)
                if draft_size is not None and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                img.seek(0)
                img.load()
                return to_rgb(ImageOps.exif_transpose(img) or img)
    except UnidentifiedImageError:
        raise SalienceError(
            f"{p} is not an image Pillow can read; use JPEG, PNG, BMP, GIF, TIFF or WebP"
        ) from None
    except Image.DecompressionBombError:
        raise SalienceError(
            f"{p} is too large to decode safely (over {DEFAULT_MAX_PIXELS:,} pixels); resize it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise SalienceError(
            f"{p} is truncated or corrupt ({reason}); re-export the image"
        ) from None


def _check_size(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise SalienceError(f"{path} has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise SalienceError(
            f"{path} is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
            "resize it first"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (alpha composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img), mode)).convert("RGB")
    if mode == "PA" or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError):
        raise SalienceError(
            f"cannot convert an image in Pillow mode {mode!r} to RGB; save it as 8-bit RGB"
        ) from None


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    values = arr.astype(np.float64)
    if mode == "F":
        finite = values[np.isfinite(values)]
        if finite.size and finite.max() <= 1.0 and finite.min() >= 0.0:
            values = values * 255.0
    elif values.max(initial=0) > 255:
        values = values / 257.0  # 0..65535 -> 0..255
    return np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an image suffix we read (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
