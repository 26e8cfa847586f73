"""XGrad-CAM (Fu, Hu, Dong, Guo, Gao & Li, 2020, BMVC, arXiv:2008.02312)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class XGradCam(CamMethod):
    """Channels weighted by their activation-weighted gradient, sum(A * g) / sum(A) (Eq. 9).

    A channel whose activations sum to zero gets weight 0.
    """

    name = "xgradcam"

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        assert cap.grads is not None
        acts = cap.acts
        total = acts.sum(dim=(2, 3), keepdim=True)
        num = (cap.grads * acts).sum(dim=(2, 3), keepdim=True)
        weights = torch.where(total != 0, num / total, torch.zeros_like(num))
        return (weights * acts).sum(1)
