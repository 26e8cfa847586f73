"""Shared Interest (Boggust, Hoover, Satyanarayan & Strobelt, 2022, CHI, arXiv:2107.09234).

The map's absolute value is binarised into a saliency region S (pixels at or above mean + k
std, or at or above a percentile) and compared with the ground-truth region G:

- IoU coverage |G and S| / |G or S|,
- ground-truth coverage |G and S| / |G| (how much of the human region the model uses),
- saliency coverage |G and S| / |S| (how much of the model's evidence is in the human region),
- continuous saliency coverage sum_G |a| / sum |a| (needs no binarisation).

Given whether each prediction was correct, every image falls in one of the paper's eight
recurring patterns. The paper describes the coverage bands qualitatively; here a coverage is
"high" at or above ``high`` (0.5 by default):

| bands                                  | correct            | incorrect           |
| IoU high, or both coverages high       | human_aligned      | confuser            |
| saliency coverage high, ground-truth low | sufficient_subset | insufficient_subset |
| ground-truth coverage high, saliency low | context_dependent | context_confusion   |
| both low                               | sufficient_context | distractor          |

The score is the IoU coverage (higher is better); the other coverages and the patterns are in
``details``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from salience.errors import SalienceError
from salience.metrics._common import as_map, as_masks
from salience.metrics._registry import register_metric
from salience.metrics._result import MetricScores

BOGGUST = "Boggust, Hoover, Satyanarayan & Strobelt, Shared Interest, CHI 2022 (arXiv:2107.09234)"
PATTERNS = {
    (True, "aligned"): "human_aligned",
    (True, "subset"): "sufficient_subset",
    (True, "context"): "context_dependent",
    (True, "elsewhere"): "sufficient_context",
    (False, "aligned"): "confuser",
    (False, "subset"): "insufficient_subset",
    (False, "context"): "context_confusion",
    (False, "elsewhere"): "distractor",
}


def binarize(
    saliency: torch.Tensor, how: Literal["std", "percentile"], std_k: float, percentile: float
) -> torch.Tensor:
    """The saliency region S ``[N, H, W]`` from |map|."""
    a = saliency.abs().double()
    flat = a.flatten(1)
    if how == "std":
        thr = flat.mean(1) + std_k * flat.std(1, correction=0)
    elif how == "percentile":
        if not 0 <= percentile <= 100:
            raise SalienceError("percentile must be between 0 and 100")
        thr = torch.quantile(flat, percentile / 100, dim=1)
    else:
        raise SalienceError("binarize must be 'std' or 'percentile'")
    return a >= thr[:, None, None]


def band(iou: float, gtc: float, sc: float, high: float) -> str:
    if math.isnan(iou):
        return "undefined"
    if iou >= high or (gtc >= high and sc >= high):
        return "aligned"
    if sc >= high:
        return "subset"
    if gtc >= high:
        return "context"
    return "elsewhere"


@register_metric("shared_interest", category="localization", direction="higher", paper=BOGGUST)
def shared_interest(
    saliency: torch.Tensor,
    masks: torch.Tensor,
    correct: Sequence[bool] | torch.Tensor | None = None,
    *,
    binarize_by: Literal["std", "percentile"] = "std",
    std_k: float = 1.0,
    percentile: float = 90.0,
    high: float = 0.5,
) -> MetricScores:
    """IoU coverage of the binarised map with the mask; all coverages and patterns in details."""
    s = as_map(saliency)
    n, h, w = s.shape
    g = as_masks(masks, n, h, w).to(s.device).flatten(1)
    sal = binarize(s, binarize_by, std_k, percentile).flatten(1)
    inter = (g & sal).sum(1).double()
    gsize, ssize = g.sum(1).double(), sal.sum(1).double()
    nan = torch.full_like(inter, math.nan)
    iou = torch.where(gsize > 0, inter / (g | sal).sum(1).double().clamp_min(1), nan)
    gtc = torch.where(gsize > 0, inter / gsize.clamp_min(1), nan)
    sc = torch.where((gsize > 0) & (ssize > 0), inter / ssize.clamp_min(1), nan)
    mags = s.abs().double().flatten(1)
    cont = torch.where(gsize > 0, (mags * g).sum(1) / mags.sum(1).clamp_min(1e-300), nan)
    details: dict[str, object] = {
        "iou_coverage": iou.tolist(),
        "ground_truth_coverage": gtc.tolist(),
        "saliency_coverage": sc.tolist(),
        "continuous_saliency_coverage": cont.tolist(),
    }
    if correct is not None:
        ok = torch.as_tensor(correct).bool().flatten().tolist()
        if len(ok) != n:
            raise SalienceError(f"correct has {len(ok)} entries for {n} maps")
        patterns = []
        for i in range(n):
            b = band(float(iou[i]), float(gtc[i]), float(sc[i]), high)
            patterns.append(PATTERNS.get((ok[i], b), "undefined"))
        details["patterns"] = patterns
    return MetricScores(iou, details=details)
