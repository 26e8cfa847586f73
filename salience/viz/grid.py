"""A grid of images x methods with titles and a colour legend per method (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from salience.errors import SalienceError
from salience.viz.colormaps import DIVERGING, SEQUENTIAL
from salience.viz.overlay import as_picture, overlay
from salience.viz.png import save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Column:
    """One method's maps, one per image, and how to colour them."""

    title: str
    maps: Sequence[np.ndarray | torch.Tensor]
    signed: bool = False
    cmap: str | None = None


def grid_figure(
    images: Sequence[Image.Image | np.ndarray | torch.Tensor],
    columns: Sequence[Column],
    *,
    row_titles: Sequence[str] | None = None,
    percentile: float = 99.0,
    alpha: float | None = None,
    cell: float = 2.2,
) -> Figure:
    """A matplotlib ``Figure``: the input image, then one overlay per column, for every image."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n = len(images)
    if n == 0 or not columns:
        raise SalienceError("a grid needs at least one image and one method")
    for col in columns:
        if len(col.maps) != n:
            raise SalienceError(f"column {col.title!r} has {len(col.maps)} maps for {n} images")
    if row_titles is not None and len(row_titles) != n:
        raise SalienceError(f"{len(row_titles)} row titles for {n} images")
    pictures = [as_picture(im) for im in images]
    ncols = 1 + len(columns)
    legend_h = 0.12
    fig = Figure(figsize=(cell * ncols, cell * n + cell * legend_h + 0.55), layout="constrained")
    grid = fig.add_gridspec(n + 1, ncols, height_ratios=[1.0] * n + [legend_h])
    for r, picture in enumerate(pictures):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(picture)
        _clean(ax)
        if r == 0:
            ax.set_title("image", fontsize=10)
        if row_titles is not None:
            ax.set_ylabel(row_titles[r], fontsize=9)
        for c, col in enumerate(columns, start=1):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(
                overlay(
                    picture,
                    col.maps[r],
                    signed=col.signed,
                    cmap=col.cmap,
                    alpha=alpha,
                    percentile=percentile,
                )
            )
            _clean(ax)
            if r == 0:
                ax.set_title(col.title, fontsize=10)
    for c, col in enumerate(columns, start=1):
        cax = fig.add_subplot(grid[n, c])
        name = col.cmap or (DIVERGING if col.signed else SEQUENTIAL)
        norm = Normalize(-1.0, 1.0) if col.signed else Normalize(0.0, 1.0)
        bar = fig.colorbar(ScalarMappable(norm, colormaps[name]), cax=cax, orientation="horizontal")
        ticks, labels = (
            ([-1.0, 0.0, 1.0], ["−", "0", "+"]) if col.signed else ([0.0, 1.0], ["low", "high"])
        )
        bar.set_ticks(ticks, labels=labels, fontsize=8)
    note = fig.add_subplot(grid[n, 0])
    note.axis("off")
    note.text(
        0.0,
        0.5,
        f"each map scaled to its\n{percentile:g}th percentile of |value|",
        fontsize=7,
        va="center",
        ha="left",
        color="#555555",
        transform=note.transAxes,
    )
    return fig


def _clean(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def save_grid(
    path: str | os.PathLike[str],
    images: Sequence[Image.Image | np.ndarray | torch.Tensor],
    columns: Sequence[Column],
    *,
    row_titles: Sequence[str] | None = None,
    percentile: float = 99.0,
    alpha: float | None = None,
    dpi: int = 100,
) -> Path:
    """Render :func:`grid_figure` to a PNG at ``path``."""
    fig = grid_figure(images, columns, row_titles=row_titles, percentile=percentile, alpha=alpha)
    return save_figure(path, fig, dpi=dpi)
