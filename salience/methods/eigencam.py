"""Eigen-CAM (Muhammad & Yeasin, 2020, IJCNN, arXiv:2008.00299)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class EigenCam(CamMethod):
    """The activations projected on their first principal component; class-agnostic.

    Positions are the samples and channels the features; the activations are centred per
    channel before the SVD (as pytorch-grad-cam does). A singular vector's sign is arbitrary:
    it is chosen to point along the mean feature vector, so the map correlates positively with
    the activations projected on that mean (for non-negative activations, the sign the paper's
    uncentred SVD gives). The channel-mean activation would not do: after a LayerNorm it is
    nearly the same at every position.
    """

    name = "eigencam"
    passes = "1 fwd"
    needs_grad = False

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        n, _, h, w = cap.acts.shape
        acts = cap.acts.to(torch.promote_types(cap.acts.dtype, torch.float32))  # SVD: no fp16
        feats = acts.flatten(2).transpose(1, 2)  # [n, h*w, channels]
        feats = feats - feats.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(feats, full_matrices=False)
        proj = (feats @ vh[:, 0, :, None]).squeeze(2)  # [n, h*w]
        agree = (vh[:, 0] * acts.flatten(2).mean(2)).sum(1, keepdim=True)
        proj = torch.where(agree < 0, -proj, proj)
        return proj.view(n, h, w)
