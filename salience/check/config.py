"""The settings of ``salience check`` and which methods it checks by default."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from salience.errors import SalienceError

# Integrated gradients with 16 Gauss-Legendre points instead of its default 50: a third of the
# check's time, and its check numbers stay within their intervals (docs/metrics.md).
DEFAULT_METHODS = ("gradient", "integrated_gradients:steps=16", "guided_backprop", "gradcam")
CONTROLS = ("random", "constant")
CAM_METHODS = frozenset({"gradcam"})


@dataclass(frozen=True)
class CheckConfig:
    """Every setting of a check; recorded in the report."""

    steps: int = 20  # deletion/insertion steps
    road_percentages: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    layers: int | None = 8  # randomization stages (None: every layer)
    sensitivity_samples: int = 8
    radius: float = 0.2
    max_similarity: float = 0.5
    margin: float = 0.05
    seed: int = 0
    batch_size: int | None = None
    resamples: int = 2000  # bootstrap resamples over images for the intervals
    level: float = 0.95  # confidence level of the intervals
    min_images: int = 5  # fewer images than this: never more than "not enough evidence"


def default_methods(model: nn.Module, x: torch.Tensor, cam_layer: str | None = None) -> list[str]:
    """:data:`DEFAULT_METHODS` that apply to ``model``: a CAM only when the model has a layer
    for it (given, or found automatically on one image of ``x``)."""
    from salience.models.layers import auto_layer

    if cam_layer is not None:
        return list(DEFAULT_METHODS)
    try:
        auto_layer(model, x[:1])
    except SalienceError:
        return [m for m in DEFAULT_METHODS if m.split(":")[0] not in CAM_METHODS]
    return list(DEFAULT_METHODS)
