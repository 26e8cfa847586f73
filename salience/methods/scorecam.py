"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, 2020, CVPR-W, arXiv:1910.01279)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.methods.batching import spans
from salience.models.layers import CamLayer


@register_method
class ScoreCam(CamMethod):
    """Channels weighted by the target score of the input masked with each channel.

    Each activation channel is upsampled to the input size (bilinear, ``align_corners=False``
    as in the authors' code), min-max normalised to [0, 1] and multiplied with the input; the
    target scores of these masked inputs, softmaxed over channels, weight the channels (as
    pytorch-grad-cam does; the paper's baseline score is a constant per image and cancels in
    that softmax). Forward passes only, over chunks of masked inputs built on the fly.

    Channels of one image whose maps are equal up to a positive scale and offset give the same
    mask, so each distinct mask is scored once; constant channels give the all-zero mask, whose
    score is taken once for the whole batch. On ReLU layers of trained CNNs this skips most
    passes (about half of EfficientNet-Lite0's 1280 head channels are zero on ImageNet photos).
    """

    name = "scorecam"
    passes = "1 fwd + channels x fwd"
    needs_grad = False

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        target = job.resolve_target()
        acts = cap.acts
        n, k, h, w = acts.shape
        x = job.x[index]
        size = (int(x.shape[-2]), int(x.shape[-1]))
        flat = acts.flatten(2).to(torch.promote_types(acts.dtype, torch.float32))  # exact ids
        lo = flat.amin(2, keepdim=True)
        span = flat.amax(2, keepdim=True) - lo
        unit = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), 0)
        image = torch.arange(n, device=acts.device, dtype=flat.dtype)[:, None, None].expand(n, k, 1)
        keys, inverse = torch.unique(
            torch.cat([image, unit], 2).flatten(0, 1), dim=0, return_inverse=True
        )
        owner, maps = keys[:, 0].long(), keys[:, 1:].view(-1, h, w)
        live = (maps.flatten(1).amax(1) > 0).nonzero().squeeze(1)
        with torch.no_grad():
            if live.numel() < keys.shape[0]:
                blank = job.logits(torch.zeros_like(x[:1])).expand(n, -1)
                scores = target.scores(blank, index)[owner]
            else:
                scores = flat.new_empty(keys.shape[0])
            for a, b in spans(live.numel(), job.chunk("forward")):
                rows = live[a:b]
                masked = x[owner[rows]].mul_(unit_masks(maps[rows], size))
                logits = job.logits(masked)
                scores[rows] = target.scores(logits, index[owner[rows]]).to(scores.dtype)
        weights = torch.softmax(scores[inverse].view(n, k), dim=1)
        return (weights[:, :, None, None] * acts).sum(1)


def unit_masks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[m, h, w]`` maps -> ``[m, 1, H, W]``, bilinearly upsampled and min-max scaled to [0, 1]."""
    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)
    lo = up.amin(dim=(2, 3), keepdim=True)
    span = up.amax(dim=(2, 3), keepdim=True) - lo
    return (up - lo) / span.clamp_min(torch.finfo(up.dtype).tiny)
