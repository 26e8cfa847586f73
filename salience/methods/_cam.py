"""Shared machinery of the class-activation-map family.

A CAM reads one layer's activations (and gradients) from the clean pass of
:mod:`salience.methods._shared`: the backward pass stops at the layer unless another method
sharing the pass needs the input gradient.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from salience.methods._base import ExplainJob
from salience.methods._shared import Captured, Chunk, Sharing
from salience.models.layers import CamLayer, resolve_layer

__all__ = ["CamMethod", "Captured"]


class CamMethod(Sharing):
    """A CAM: a map ``[N, h, w]`` from one layer's activations and (maybe) gradients.

    ``relu=True`` keeps the positive part as the papers do; ``relu=False`` returns the signed map.
    """

    family = "cam"
    signed = False
    passes = "1 fwd+partial bwd"
    needs_grad = True

    def __init__(
        self,
        *,
        layer: nn.Module | str | None = None,
        relu: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.layer = layer
        self.relu = relu

    def capture_layer(self, job: ExplainJob) -> CamLayer | None:
        return resolve_layer(job.model, self.layer, job.x)

    def finish(self, chunk: Chunk, job: ExplainJob, layer: CamLayer | None) -> torch.Tensor:
        assert layer is not None
        return self.cam(chunk.layers[layer], job, layer, chunk.index)

    def combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        cam = torch.cat(parts)
        return cam.clamp_min(0) if self.relu else cam

    @abstractmethod
    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        """The map ``[n, h, w]`` for one chunk of images."""
