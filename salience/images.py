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

Two caps keep memory bounded, and both are checked from the header, before any pixel is
decoded: ``max_pixels`` (width x height, default Pillow's decompression-bomb limit, about
89 million) and ``max_aspect`` (longer side / shorter side, default 64). A 163-byte PNG of
1 x 20000 pixels passes the first but, resized so that its shorter side is 256, would need
gigabytes; it is refused by the second. Both raise :class:`ImageTooLargeError`.
An image with no finite pixel value (an all-NaN float TIFF) is refused rather than shown black.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from salience.errors import ImageTooLargeError, SalienceError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jfif",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".jp2",
        ".ico",
    }
)
DEFAULT_MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
DEFAULT_MAX_ASPECT: float = 64.0
_WHITE = (255, 255, 255)


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect: float | None = DEFAULT_MAX_ASPECT,
    draft_size: int | None = None,
) -> Image.Image:
    """Open ``path`` as 8-bit RGB (see the module docstring for the conversions and caps).

    ``draft_size`` lets JPEG decoding shrink the image by a power of two while both sides stay
    at least that large: much faster for big photos that are resized afterwards anyway.
    """
    p = Path(path)
    _check_file(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                check_size(img.size, max_pixels, max_aspect, where=str(p))
                if draft_size is not None and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                img.seek(0)
                img.load()
                try:
                    return to_rgb(ImageOps.exif_transpose(img) or img)
                except SalienceError as exc:  # to_rgb does not know the path
                    raise type(exc)(f"{p}: {exc}") from None
    except UnidentifiedImageError:
        raise SalienceError(
            f"{p} is not an image Pillow can read; use JPEG, PNG, BMP, GIF, TIFF or WebP"
        ) from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"{p} is too large to decode safely (over {DEFAULT_MAX_PIXELS:,} pixels); resize it"
        ) from None
    except PermissionError:
        raise SalienceError(_denied(p)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise SalienceError(
            f"{p} is truncated or corrupt ({reason}); re-export the image"
        ) from None


def _denied(p: Path) -> str:
    return f"{p} cannot be read: permission denied; make it readable (chmod a+r)"


def _check_file(p: Path) -> None:
    """A clear error for what is not a regular, non-empty file (before Pillow sees it)."""
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SalienceError(
                f"symlink loop: {p} is a symbolic link that leads back to itself; remove it"
            ) from None
        if p.is_symlink():
            raise SalienceError(
                f"image not found: {p} is a symbolic link to {os.readlink(p)!r}, which does "
                "not exist; fix or remove the link"
            ) from None
        if isinstance(exc, PermissionError):
            raise SalienceError(_denied(p)) from None
        raise SalienceError(f"image not found: {p}") from None
    if p.is_dir():
        raise SalienceError(f"{p} is a folder, not an image file")
    if st.st_size == 0:
        raise SalienceError(f"image {p} is empty (0 bytes)")


def check_size(
    size: tuple[int, int],
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect: float | None = DEFAULT_MAX_ASPECT,
    *,
    where: str = "the image",
) -> None:
    """Raise :class:`ImageTooLargeError` when ``(width, height)`` breaks a cap (see the module
    docstring); call it before decoding or resizing."""
    w, h = size
    if w <= 0 or h <= 0:
        raise SalienceError(f"{where} has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(
            f"{where} is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,}; "
            "resize it first"
        )
    if max_aspect is not None and max(w, h) > max_aspect * min(w, h):
        raise ImageTooLargeError(
            f"{where} is {w}x{h}, an aspect ratio of {max(w, h) / min(w, h):,.0f}:1, above the "
            f"limit of {max_aspect:g}:1 (too large once resized); crop or pad it first"
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
    values = arr.astype(np.float32)  # exact for 16-bit values; half the memory of float64
    if mode == "F":
        finite = np.isfinite(values)
        if not finite.any():
            raise SalienceError(
                "no finite pixels: every pixel value is NaN or infinite; re-export the image"
            )
        low = float(values.min(where=finite, initial=np.inf))
        high = float(values.max(where=finite, initial=-np.inf))
        if low >= 0.0 and high <= 1.0:
            values *= 255.0
        np.nan_to_num(values, copy=False)  # NaN -> 0; +-inf -> clipped below
    elif values.max(initial=0) > 255:
        values /= 257.0  # 0..65535 -> 0..255
    np.clip(values, 0, 255, out=values)
    return np.round(values, out=values).astype(np.uint8)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an image suffix we read (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
