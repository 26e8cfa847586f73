"""Grad-CAM++ (Chattopadhyay, Sarkar, Howlader & Balasubramanian, 2018, WACV, arXiv:1710.11063)."""

from __future__ import annotations

import torch

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class GradCamPlusPlus(CamMethod):
    """Channels weighted by their positive gradients, each scaled by the paper's alpha (Eq. 19).

    With the higher-order derivatives of Eq. 19 written in first-order gradients g (as the
    paper does for an exponential output), alpha = g^2 / (2 g^2 + sum(A) g^3) = 1 / (2 + sum(A) g)
    wherever g != 0. The reduced form needs no epsilon (pytorch-grad-cam adds 1e-6 to the
    denominator, which dominates once |g| < 1e-3); positions where it vanishes get alpha = 0.
    """

    name = "gradcam_pp"

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        assert cap.grads is not None
        g, acts = cap.grads, cap.acts
        denom = 2 + acts.sum(dim=(2, 3), keepdim=True) * g
        alpha = torch.where(denom != 0, 1 / denom, torch.zeros_like(denom))
        weights = (g.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)
        return (weights * acts).sum(1)
