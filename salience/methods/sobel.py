"""Sobel edge-map control (a model-independent baseline; Adebayo et al., 2018, arXiv:1810.03292)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method


def sobel_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of ``[N, H, W]`` images; borders repeat the edge pixel, which
    equals ``scipy.ndimage.sobel``'s default ``mode="reflect"`` for the 3x3 kernel."""
    smooth = torch.tensor([1.0, 2.0, 1.0], device=gray.device, dtype=gray.dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], device=gray.device, dtype=gray.dtype)
    kernels = torch.stack([diff[:, None] * smooth[None], smooth[:, None] * diff[None]])
    padded = F.pad(gray[:, None], (1, 1, 1, 1), mode="replicate")
    grads = F.conv2d(padded, kernels[:, None])  # cross-correlation: +1 weights the later pixel
    return torch.hypot(grads[:, 0], grads[:, 1])


@register_method
class Sobel(Attribution):
    """Edge strength of the image (grayscale = channel mean of x as given), ignoring the model.

    A map that looks like this one explains the image, not the model: methods whose maps stay
    close to it under model randomization fail the sanity check.
    """

    name = "sobel"
    family = "control"
    signed = False
    passes = "none"

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        return sobel_magnitude(job.x.mean(dim=1))
