"""Region masks: a PNG whose pixel values index named regions, or boxes drawn as such a mask.

Each item's own legend (mask value -> name) is mapped onto the run's region list, where index
0 is ``"background"`` (unannotated pixels) and region ``k`` has index ``k``, so that masks with
different legends become comparable.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from salience.data.dataset import Boxes, Item, Legend
from salience.errors import SalienceError


def read_mask(path: Path) -> np.ndarray:
    """The mask's raw values ``[H, W]`` (int32); a colour mask is accepted only if grey."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                arr = np.asarray(img)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SalienceError(f"unreadable mask {path.name}: {exc}") from None
    if arr.ndim == 3:
        if mode == "LA" or (
            np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            arr = arr[..., 0]
        else:
            raise SalienceError(
                f"mask {path.name} is a {mode} colour image; save it as a single-channel PNG "
                "whose values index the regions of its legend"
            )
    return arr.astype(np.int32)


def boxes_mask(boxes: Boxes, size: tuple[int, int], index: dict[str, int]) -> np.ndarray:
    """Boxes drawn into an int32 ``[H, W]`` map of global region indices (later boxes on top).

    ``size`` is ``(width, height)``; box corners are continuous pixel coordinates, so the box
    ``[0, 0, 2, 2]`` covers pixels 0 and 1 in each direction.
    """
    w, h = size
    out = np.zeros((h, w), dtype=np.int32)
    for name, x0, y0, x1, y1 in boxes:
        c0, c1 = int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.ceil(x1), 0, w))
        r0, r1 = int(np.clip(np.floor(y0), 0, h)), int(np.clip(np.ceil(y1), 0, h))
        out[r0:r1, c0:c1] = index[name]
    return out


def remap(
    values: np.ndarray, legend: Legend, index: dict[str, int]
) -> tuple[np.ndarray, str | None]:
    """Map raw mask values to global region indices; unknown values become background and
    are named in the returned warning."""
    top = max(int(values.max(initial=0)), max(v for v, _ in legend))
    lut = np.zeros(top + 1, dtype=np.int32)
    known = np.zeros(top + 1, dtype=bool)
    known[0] = True
    for value, name in legend:
        lut[value] = index[name]
        known[value] = True
    present = np.unique(values)
    unknown = [int(v) for v in present if v < 0 or not known[v]]
    warning = None
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        warning = f"mask values not in legend: {shown} (counted as background)"
        values = np.where(values < 0, 0, values)
    return lut[values], warning


def region_map(
    root: Path, item: Item, image_size: tuple[int, int], index: dict[str, int]
) -> tuple[np.ndarray | None, str | None]:
    """Global region indices ``[H, W]`` for ``item`` at the image's size, and a warning.

    Returns ``(None, warning)`` when the mask cannot be used (unreadable, wrong size): the
    image is still audited, without region statistics.
    """
    if item.mask is not None and item.legend is not None:
        try:
            values = read_mask(root / item.mask)
        except (SalienceError, FileNotFoundError) as exc:
            text = str(exc) if isinstance(exc, SalienceError) else f"{item.mask} not found"
            return None, f"mask ignored: {text}"
        w, h = image_size
        if values.shape != (h, w):
            return None, (
                f"mask size: {item.mask} is {values.shape[1]}x{values.shape[0]} but the image "
                f"is {w}x{h}; region statistics skipped"
            )
        return remap(values, item.legend, index)
    if item.boxes is not None:
        return boxes_mask(item.boxes, image_size, index), None
    return None, None
