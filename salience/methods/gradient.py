"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman, 2014, arXiv:1312.6034)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._registry import register_method
from salience.methods._shared import Chunk, Sharing
from salience.models.layers import CamLayer


@register_method
class Gradient(Sharing):
    """Gradient of the target score with respect to the input pixels."""

    name = "gradient"
    family = "gradient"
    signed = True
    passes = "1 fwd+bwd"
    needs_input_grad = True

    def finish(self, chunk: Chunk, job: ExplainJob, layer: CamLayer | None) -> torch.Tensor:
        assert chunk.input_grad is not None
        return chunk.input_grad
