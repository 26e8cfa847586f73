"""Grad-CAM (Selvaraju et al., 2017, ICCV, arXiv:1610.02391)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class GradCam(CamMethod):
    """Channels weighted by their spatially averaged gradient."""

    name = "gradcam"

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        assert cap.grads is not None
        weights = cap.grads.mean(dim=(2, 3), keepdim=True)
        return (weights * cap.acts).sum(1)
