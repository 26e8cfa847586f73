"""PNG export, written atomically (temporary name, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_png(
    path: str | os.PathLike[str], picture: np.ndarray | Image.Image, compress_level: int = 6
) -> Path:
    """Write an ``[H, W, 3]`` (or ``[H, W, 4]``) uint8 array or PIL image as a PNG
    (``compress_level`` 0-9: zlib's speed/size trade-off)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture))
    tmp = _tmp(out)
    img.save(tmp, format="PNG", optimize=False, compress_level=compress_level)
    tmp.replace(out)
    return out


def save_figure(path: str | os.PathLike[str], fig: Figure, dpi: int = 100) -> Path:
    """Write a matplotlib figure (Agg, no pyplot state) as a PNG."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(out)
    fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    tmp.replace(out)
    return out
