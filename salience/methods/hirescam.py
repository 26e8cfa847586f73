"""HiResCAM (Draelos & Carin, 2020, arXiv:2011.08891)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class HiResCam(CamMethod):
    """Gradient times activation at every position, summed over channels.

    Unlike Grad-CAM, gradients are not averaged over space first, so for a model whose output is
    a linear function of the layer (e.g. global average pooling and a linear head) the map sums
    exactly to the target score minus the bias.
    """

    name = "hirescam"

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        assert cap.grads is not None
        return (cap.grads * cap.acts).sum(1)
