"""Localization against ground truth: masks ``[N, H, W]`` or boxes ``[N, 4]`` given as
``(x_min, y_min, x_max, y_max)`` in pixels, maxima exclusive. Higher is better for all.
An image with an empty mask scores NaN (left out of the mean).

- Pointing game (Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, 2018, IJCV, arXiv:1608.00507):
  a hit when the map's maximum lies within ``tolerance`` pixels (Euclidean) of the mask, 15 px
  as in the original; ties go to the first maximum in row-major order.
- Energy pointing game (Wang et al., Score-CAM, 2020, CVPRW, arXiv:1910.01279): the share of
  the positive map inside the mask.
- Relevance mass accuracy (Arras, Osman & Samek, 2022, Information Fusion,
  arXiv:2003.07258): the same share of positive relevance (the two coincide by definition).
- Relevance rank accuracy (Arras et al., 2022): with K = |mask|, the share of the K highest
  pixels that fall in the mask (ties broken at random, seeded).
- Top-k IoU: IoU of the k highest pixels with the mask (k = |mask| by default, or a fraction).
"""

from __future__ import annotations

import math

import torch

from salience.errors import SalienceError
from salience.metrics._common import as_map, as_masks, descending_order, generator
from salience.metrics._registry import register_metric
from salience.metrics._result import MetricScores

ZHANG = "Zhang et al., Top-down neural attention by excitation backprop, IJCV 2018"
WANG = "Wang et al., Score-CAM, CVPR workshops 2020 (arXiv:1910.01279)"
ARRAS = "Arras, Osman & Samek, CLEVR-XAI, Information Fusion 2022 (arXiv:2003.07258)"
THEINER = "Theiner, Müller-Budack & Ewerth, Interpretable semantic photo geolocation, WACV 2022"


def _inputs(saliency: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = as_map(saliency)
    n, h, w = s.shape
    return s, as_masks(masks, n, h, w).to(s.device)


def _nan_if_empty(score: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    empty = masks.flatten(1).sum(1) == 0
    return torch.where(empty, torch.full_like(score, math.nan), score)


@register_metric("pointing_game", category="localization", direction="higher", paper=ZHANG)
def pointing_game(
    saliency: torch.Tensor, masks: torch.Tensor, *, tolerance: float = 15.0
) -> MetricScores:
    """1 when the maximum of the map is within ``tolerance`` px of the mask, else 0."""
    if tolerance < 0:
        raise SalienceError("tolerance must be >= 0")
    s, m = _inputs(saliency, masks)
    h, w = s.shape[-2:]
    top = s.flatten(1).argmax(1)
    py, px = (top // w).double(), (top % w).double()
    yy = torch.arange(h, device=s.device, dtype=torch.float64)[None, :, None]
    xx = torch.arange(w, device=s.device, dtype=torch.float64)[None, None, :]
    near = (yy - py[:, None, None]) ** 2 + (xx - px[:, None, None]) ** 2 <= tolerance**2
    hit = (near & m).flatten(1).any(1).double()
    points = torch.stack([py, px], 1).long().tolist()
    return MetricScores(_nan_if_empty(hit, m), details={"points": points})


def _positive_share(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    s, m = _inputs(saliency, masks)
    pos = s.double().clamp_min(0).flatten(1)
    total = pos.sum(1)
    inside = (pos * m.flatten(1)).sum(1)
    nan = torch.full_like(total, math.nan)
    share = torch.where(total > 0, inside / total.clamp_min(1e-300), nan)
    return _nan_if_empty(share, m)


@register_metric("energy_pointing_game", category="localization", direction="higher", paper=WANG)
def energy_pointing_game(saliency: torch.Tensor, masks: torch.Tensor) -> MetricScores:
    """Share of the positive map's energy inside the mask (a map with no positive part: NaN)."""
    return MetricScores(_positive_share(saliency, masks))


@register_metric("relevance_mass", category="localization", direction="higher", paper=ARRAS)
def relevance_mass(saliency: torch.Tensor, masks: torch.Tensor) -> MetricScores:
    """Share of the positive relevance inside the mask (a map with no positive part: NaN)."""
    return MetricScores(_positive_share(saliency, masks))


def _top(s: torch.Tensor, k: torch.Tensor, seed: int) -> torch.Tensor:
    """Boolean ``[N, H*W]``: the ``k[i]`` highest pixels of each map, ties broken at random."""
    order = descending_order(s.flatten(1), generator(seed, s.device))
    positions = torch.arange(order.shape[1], device=s.device).expand_as(order)
    chosen = positions < k[:, None]
    return torch.zeros_like(chosen).scatter_(1, order, chosen)


@register_metric("relevance_rank", category="localization", direction="higher", paper=ARRAS)
def relevance_rank(saliency: torch.Tensor, masks: torch.Tensor, *, seed: int = 0) -> MetricScores:
    """Share of the |mask| highest-ranked pixels that lie in the mask."""
    s, m = _inputs(saliency, masks)
    flat = m.flatten(1)
    size = flat.sum(1)
    top = _top(s, size, seed)
    hits = (top & flat).sum(1).double()
    return MetricScores(_nan_if_empty(hits / size.clamp_min(1).double(), m))


@register_metric("top_k_iou", category="localization", direction="higher", paper=THEINER)
def top_k_iou(
    saliency: torch.Tensor,
    masks: torch.Tensor,
    *,
    fraction: float | None = None,
    absolute: bool = False,
    seed: int = 0,
) -> MetricScores:
    """IoU of the top-k pixels with the mask; k = |mask| (``fraction=None``) or a fraction of
    the image. ``absolute`` ranks pixels by |a|."""
    s, m = _inputs(saliency, masks)
    if absolute:
        s = s.abs()
    flat = m.flatten(1)
    if fraction is None:
        k = flat.sum(1)
    else:
        if not 0 < fraction <= 1:
            raise SalienceError("fraction must be in (0, 1]")
        k = torch.full((s.shape[0],), round(fraction * flat.shape[1]), device=s.device)
    top = _top(s, k, seed)
    inter = (top & flat).sum(1).double()
    union = (top | flat).sum(1).double()
    return MetricScores(_nan_if_empty(inter / union.clamp_min(1), m))
