"""Stage 2: decode and preprocess one item (runs in DataLoader workers).

Readable images in any mode are converted to RGB by :func:`salience.images.load_image`; the
rest become an error of the form ``"<kind>: <detail>"``. The item's region mask is brought
into the frame the model sees (the same resize and crop, nearest-neighbour) and then to the
map size, so that region statistics line up with the stored maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from salience.data.dataset import Item
from salience.data.masks import region_map
from salience.errors import ImageTooLargeError, SalienceError
from salience.images import load_image

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG", 0, "PNG"),
    (b"GIF8", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"WEBP", 8, "WEBP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)
_SUFFIX_FORMAT = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_KINDS = (
    ("symlink loop", "symlink loop"),
    ("permission denied", "permission denied"),
    ("no finite pixels", "no finite pixels"),
    ("empty", "empty file"),
    ("truncated or corrupt", "truncated or corrupt"),
    ("not an image", "not an image"),
    ("above the limit", "too large"),
    ("too large", "too large"),
    ("not found", "missing file"),
    ("folder", "not a file"),
)


@dataclass
class Decoded:
    """One item after decoding: the model input, or why there is none."""

    position: int
    x: torch.Tensor | None = None  # [C, H, W]
    width: int | None = None
    height: int | None = None
    regions: np.ndarray | None = None  # [h, w] uint8 region indices at the map size
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def error_kind(message: str) -> str:
    """A short category for an image-loading error, used to group the end-of-run summary."""
    lower = message.lower()
    return next((kind for key, kind in _KINDS if key in lower), "unreadable")


def sniff_format(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(12)
    return next((fmt for magic, at, fmt in _MAGIC if head[at : at + len(magic)] == magic), None)


def frame_mask(
    regions: np.ndarray, preprocess: Callable[..., Any], x: torch.Tensor, map_size: tuple[int, int]
) -> np.ndarray:
    """Region indices at image size -> the model's frame (as its preprocessing crops) -> the
    map size. Without a geometric ``view`` the whole image is assumed to be the frame."""
    img = Image.fromarray(regions.astype(np.uint8), mode="L")
    if exact_frame(preprocess):
        nearest: Any = dataclasses.replace(preprocess, interpolation="nearest")  # type: ignore[type-var]
        img = nearest.view(img).convert("L")
    else:
        img = img.resize((int(x.shape[-1]), int(x.shape[-2])), Image.Resampling.NEAREST)
    h, w = map_size
    return np.asarray(img.resize((w, h), Image.Resampling.NEAREST), dtype=np.uint8)


def exact_frame(preprocess: object) -> bool:
    """Whether masks can follow the preprocessing exactly (a ``Preprocess`` with ``view``)."""
    return (
        hasattr(preprocess, "view")
        and hasattr(preprocess, "interpolation")
        and dataclasses.is_dataclass(preprocess)
    )


class DecodeStage(torch.utils.data.Dataset[Decoded]):
    """Items -> :class:`Decoded`; indexable by item position, safe to run in worker processes."""

    def __init__(
        self,
        items: Sequence[Item],
        root: Path,
        preprocess: Callable[[Image.Image], torch.Tensor],
        map_size: tuple[int, int],
        regions: Sequence[str],
    ) -> None:
        self.items = items
        self.root = root
        self.preprocess = preprocess
        self.map_size = map_size
        self.region_index = {name: i for i, name in enumerate(regions)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> Decoded:
        item = self.items[position]
        out = Decoded(position)
        if item.warning:
            out.warnings.append(item.warning)
        if item.error:
            out.error = item.error
            return out
        path = self.root / item.path
        try:
            img = load_image(path)
        except SalienceError as exc:  # the kind is read without the path, which may hold any word
            kind = error_kind(str(exc).replace(str(path), ""))
            out.error = f"{kind}: {str(exc).replace(str(path), item.path)}"
            return out
        out.width, out.height = img.size
        fmt = sniff_format(path)
        expected = _SUFFIX_FORMAT.get(path.suffix.lower())
        if fmt and expected and fmt != expected:
            out.warnings.append(f"mis-named: {item.path} holds {fmt} data")
        try:
            x = self.preprocess(img)
        except ImageTooLargeError as exc:
            out.error = f"too large: {exc}"
            return out
        except Exception as exc:  # a user-supplied preprocess may raise anything
            out.error = f"preprocess failed: {type(exc).__name__}: {exc}"
            return out
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or not x.is_floating_point():
            raise SalienceError("the model's preprocess must return a float tensor [C, H, W]")
        # a finite sum proves every value finite at a 25th of the cost; else check each one
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
            out.error = "non-finite input: preprocessing produced NaN or infinite values"
            return out
        out.x = x
        regions, warning = region_map(self.root, item, img.size, self.region_index)
        if warning:
            out.warnings.append(warning)
        if regions is not None:
            out.regions = frame_mask(regions, self.preprocess, x, self.map_size)
        return out


def collate(batch: list[Decoded]) -> list[Decoded]:
    """Keep the batch as a list: failed items have no tensor, and inputs may differ in size."""
    return batch
