"""Guided Grad-CAM (Selvaraju et al., 2017, ICCV, arXiv:1610.02391)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method
from salience.methods.gradcam import GradCam
from salience.methods.guided_backprop import GuidedBackprop


@register_method
class GuidedGradCam(Attribution):
    """Guided backpropagation times the Grad-CAM map upsampled bilinearly to the input.

    ``layer`` is the Grad-CAM layer (a module or its dotted name; default: automatic).
    """

    name = "guided_gradcam"
    family = "gradient"
    signed = True
    passes = "2 fwd+bwd"

    def __init__(
        self, *, layer: nn.Module | str | None = None, batch_size: int | None = None
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.layer = layer

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        job.resolve_target()
        guided = GuidedBackprop().attribute(job)
        cam = GradCam(layer=self.layer).attribute(job).unsqueeze(1)
        cam = F.interpolate(cam, size=guided.shape[-2:], mode="bilinear", align_corners=False)
        return guided * cam
