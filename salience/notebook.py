"""Saliency in a notebook: ``salience.show(loaded, image)`` displays itself inline.

The photo is cropped and resized the way the model saw it, so the map lines up with it; the
result renders as a PNG (``_repr_png_``) with one colour legend per method, and keeps the maps
and the probabilities for further work.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from salience.errors import SalienceError
from salience.explaining import Explained, build_methods, explain_picture
from salience.images import load_image, to_rgb
from salience.models import LoadedModel
from salience.viz import Column, grid_figure, save_figure


@dataclass(frozen=True)
class Explanation:
    """One image explained by one or more methods; shows itself in Jupyter."""

    explained: Explained
    class_name: str

    @property
    def view(self) -> Image.Image:
        """The image as the model saw it (cropped and resized)."""
        return self.explained.view

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Each method's raw map ``[H, W]`` (float32, not normalised), by method label."""
        return {label: m.saliency for label, m in self.explained.maps.items()}

    @property
    def probability(self) -> float:
        return float(self.explained.probs[self.explained.index])

    def figure(self) -> Any:
        """The model's view and one overlay per method, with legends (a matplotlib Figure)."""
        columns = [
            Column(label, [m.saliency], signed=m.signed) for label, m in self.explained.maps.items()
        ]
        title = f"{self.class_name[:28]} {self.probability:.0%}"
        return grid_figure([self.view], columns, row_titles=[title], cell=3.0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`figure` as a PNG."""
        return save_figure(path, self.figure())

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    def __repr__(self) -> str:
        methods = ", ".join(self.explained.maps)
        w, h = self.view.size
        return (
            f"Explanation({methods} for {self.class_name!r} "
            f"({self.explained.index}, {self.probability:.1%}) on a {w}x{h} view)"
        )


def show(
    model: LoadedModel,
    image: str | os.PathLike[str] | Image.Image,
    method: str | Sequence[str] = "gradcam",
    target: str | int | None = None,
) -> Explanation:
    """Explain ``image`` (a path or a PIL image) with ``method`` (a spec such as
    ``"integrated_gradients:steps=32"``, or several) for ``target`` (None: the predicted class;
    an index or a class name). In a notebook the result displays itself."""
    if not isinstance(model, LoadedModel):
        raise SalienceError(
            "show() needs the LoadedModel from salience.load_model (it knows the model's "
            "preprocessing); for a bare module use salience.explain and salience.viz.overlay"
        )
    picture = to_rgb(image) if isinstance(image, Image.Image) else load_image(image)
    specs = [method] if isinstance(method, str) else list(method)
    index = model.class_index(target) if target is not None else None
    done = explain_picture(model, picture, build_methods(specs, model.cam_layer), index)
    return Explanation(done, model.class_name(done.index))
