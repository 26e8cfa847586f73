"""How close a cheaper map is to the full-cost reference map.

Spearman rank correlation of |map| (as in the sanity checks, Adebayo et al., 2018), IoU of
the top-k |map| pixels (k a fraction of the image), and the change in the deletion and
insertion scores (Petsiuk et al., 2018) of the map, both evaluated on the reference model:
the cheap map is judged as an explanation of the model the user runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from salience.metrics import deletion, insertion, top_k_iou
from salience.metrics._common import descending_order, generator, ranks
from salience.metrics._similarity import spearman

TOP_FRACTION = 0.1  # top-k IoU over the 10% most salient pixels
CURVE_STEPS = 25  # deletion/insertion steps


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion scores of maps on the reference model, per image."""

    deletion: torch.Tensor  # [N]
    insertion: torch.Tensor  # [N]


def faithfulness(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor
) -> Faithfulness:
    kw: dict[str, Any] = {"steps": CURVE_STEPS}
    return Faithfulness(
        deletion(model, x, maps, target, **kw).scores,
        insertion(model, x, maps, target, **kw).scores,
    )


def top_mask(maps: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Boolean ``[N, H, W]``: the ``fraction`` most salient |map| pixels (ties at random)."""
    flat = maps.detach().abs().flatten(1)
    k = max(1, round(fraction * flat.shape[1]))
    order = descending_order(flat, generator(seed, flat.device))
    return (ranks(order) < k).view(maps.shape)


def fidelity(
    reference: torch.Tensor,
    maps: torch.Tensor,
    ref_faith: Faithfulness,
    faith: Faithfulness,
) -> dict[str, float]:
    """Mean over images of Spearman |map|, top-k IoU and the deletion/insertion change."""
    rho = spearman(maps.detach().float(), reference.detach().float(), absolute=True)
    iou = top_k_iou(maps.detach().float(), top_mask(reference, TOP_FRACTION), absolute=True)
    return {
        "spearman": _mean(rho),
        "topk_iou": float(iou),
        "deletion_delta": _mean(faith.deletion - ref_faith.deletion),
        "insertion_delta": _mean(faith.insertion - ref_faith.insertion),
    }


def _mean(v: torch.Tensor) -> float:
    value = float(v.double().mean())
    return value if math.isfinite(value) else math.nan
