"""Input × gradient (Shrikumar et al., 2016, arXiv:1605.01713)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._registry import register_method
from salience.methods._shared import Chunk, Sharing
from salience.models.layers import CamLayer


@register_method
class InputXGradient(Sharing):
    """The input multiplied elementwise by the gradient of the target score."""

    name = "input_x_gradient"
    family = "gradient"
    signed = True
    passes = "1 fwd+bwd"
    needs_input_grad = True

    def finish(self, chunk: Chunk, job: ExplainJob, layer: CamLayer | None) -> torch.Tensor:
        assert chunk.input_grad is not None
        return chunk.x * chunk.input_grad
