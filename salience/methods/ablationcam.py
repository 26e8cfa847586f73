"""Ablation-CAM (Desai & Ramaswamy, 2020, WACV, doi:10.1109/WACV45572.2020.9093360)."""

from __future__ import annotations

import torch
from torch import nn

from salience._guard import Hooks
from salience.methods._base import ExplainJob
from salience.methods._cam import CamMethod, Captured
from salience.methods._registry import register_method
from salience.methods.batching import spans
from salience.models.layers import CamLayer


class _NotShareable(Exception):
    """The layers after the CAM layer cannot broadcast one image's earlier tensors."""


@register_method
class AblationCam(CamMethod):
    """Channel k weighted by the relative score drop when it is zeroed, (y - y_k) / y (Eq. 3).

    Forward passes only. A pass ablates one channel per row: a hook on the layer repeats one
    image's output once per channel in the chunk and zeroes channel k in row k, so the layers
    before it run for one image instead of once per channel. Models whose later layers cannot
    broadcast one image's earlier tensors against those rows (e.g. a skip connection
    concatenated after the layer) fall back to repeating the input. Token layers zero the
    feature in every token. Zeroing an all-zero channel changes nothing, so its weight is 0
    without a pass. Dividing by y flips the map when the target score is negative, as defined.
    """

    name = "ablationcam"
    passes = "1 fwd + channels x fwd"
    needs_grad = False

    def cam(
        self, cap: Captured, job: ExplainJob, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        job.resolve_target()
        acts = cap.acts
        n, k = acts.shape[:2]
        if layer.prefix_tokens is None:
            live = acts.flatten(2).ne(0).any(2)
        else:  # the dropped class and register tokens are zeroed too
            live = torch.ones(n, k, dtype=torch.bool, device=acts.device)
        ablated = cap.scores[:, None].repeat(1, k)
        shared = True
        for i in range(n):
            channels = live[i].nonzero().squeeze(1)
            for a, b in spans(channels.numel(), job.chunk("forward")):
                image, ids = job.x[index[i]][None], channels[a:b]
                if shared:
                    try:
                        ablated[i, ids] = _ablate(job, layer, image, ids, index[i], True)
                        continue
                    except (RuntimeError, _NotShareable):
                        shared = False
                ablated[i, ids] = _ablate(job, layer, image, ids, index[i], False)
        y = cap.scores[:, None]
        weights = (y - ablated) / y
        return (weights[:, :, None, None] * acts).sum(1)


def _ablate(
    job: ExplainJob,
    layer: CamLayer,
    image: torch.Tensor,
    channels: torch.Tensor,
    index: torch.Tensor,
    shared: bool,
) -> torch.Tensor:
    """Target scores of ``image`` with ``channels[r]`` of the layer zeroed in row r."""
    m = channels.numel()
    rows = torch.arange(m, device=channels.device)

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        out = out.expand(m, *out.shape[1:]).clone()
        if layer.channel_dim == 1:
            out[rows, channels] = 0
        else:
            out[rows, ..., channels] = 0
        return out

    inputs = image if shared else image.expand(m, -1, -1, -1)
    with Hooks() as hooks, torch.no_grad():
        hooks.add(layer.module.register_forward_hook(hook))
        logits = job.logits(inputs)
    if shared and logits.shape[0] != m:
        raise _NotShareable
    return job.resolve_target().scores(logits, index.expand(m))
