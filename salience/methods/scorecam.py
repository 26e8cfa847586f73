"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, 2020, CVPR-W, arXiv:1910.01279)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salience.methods._base import Problem
from salience.methods._batching import spans
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.models.layers import CamLayer


@register_method
class ScoreCam(CamMethod):
    """Channels weighted by the target score of the input masked with each channel.

    Each activation channel is upsampled to the input size (bilinear, ``align_corners=False``
    as in the authors' code), min-max normalised to [0, 1] and multiplied with the input; the
    target scores of these masked inputs, softmaxed over channels, weight the channels (as
    pytorch-grad-cam does; the paper's baseline score is a constant per image and cancels in
    that softmax). Forward passes only, over chunks of masked inputs built on the fly. A
    constant channel masks the input to zero, so all such channels share the score of one
    all-zero input instead of one pass each.
    """

    name = "scorecam"
    passes = "1 fwd + channels x fwd"
    needs_grad = False

    def cam(
        self, cap: Captured, problem: Problem, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        target = problem.resolve_target()
        acts = cap.acts
        n, k = acts.shape[:2]
        x = problem.x[index]
        size = (int(x.shape[-2]), int(x.shape[-1]))
        flat = acts.flatten(0, 1)  # [n * k, h, w], row r is channel r % k of image r // k
        live = (flat.flatten(1).amax(1) > flat.flatten(1).amin(1)).nonzero().squeeze(1)
        with torch.no_grad():
            if live.numel() < n * k:
                blank = problem.logits(torch.zeros_like(x[:1])).expand(n, -1)
                scores = target.scores(blank, index).repeat_interleave(k)
            else:
                scores = flat.new_empty(n * k)
            for a, b in spans(live.numel(), problem.chunk("forward")):
                rows = live[a:b]
                image = rows // k
                masked = x[image].mul_(unit_masks(flat[rows], size))
                scores[rows] = target.scores(problem.logits(masked), index[image]).to(scores.dtype)
        weights = torch.softmax(scores.view(n, k), dim=1)
        return (weights[:, :, None, None] * acts).sum(1)


def unit_masks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[m, h, w]`` maps -> ``[m, 1, H, W]``, bilinearly upsampled and min-max scaled to [0, 1]."""
    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)
    lo = up.amin(dim=(2, 3), keepdim=True)
    span = up.amax(dim=(2, 3), keepdim=True) - lo
    return (up - lo) / span.clamp_min(torch.finfo(up.dtype).tiny)
