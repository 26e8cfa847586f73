"""Layer-CAM (Jiang, Zhang, Hou, Cheng & Wei, 2021, IEEE TIP 30:5875-5888)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class LayerCam(CamMethod):
    """Activations weighted position by position by their positive gradient (Eq. 5)."""

    name = "layercam"

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        assert cap.grads is not None
        return (cap.grads.clamp_min(0) * cap.acts).sum(1)
