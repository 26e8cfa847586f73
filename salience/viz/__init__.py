"""Visualisation: colormap tables, overlays, image x method grids, PNG export."""

from __future__ import annotations

from salience.viz.colormaps import DIVERGING, SEQUENTIAL, colorize, lut, scale
from salience.viz.grid import Column, grid_figure, save_grid
from salience.viz.overlay import as_map, as_picture, heatmap, overlay, resize_map
from salience.viz.png import save_figure, save_png

__all__ = [
    "DIVERGING",
    "SEQUENTIAL",
    "Column",
    "as_map",
    "as_picture",
    "colorize",
    "grid_figure",
    "heatmap",
    "lut",
    "overlay",
    "resize_map",
    "save_figure",
    "save_grid",
    "save_png",
    "scale",
]
