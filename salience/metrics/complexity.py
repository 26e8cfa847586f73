"""How concentrated a map is: sparseness as the Gini index (Chalasani, Chen, Chowdhury, Jha &
Wu, 2020, ICML, arXiv:1810.06583) and complexity as the entropy of the map seen as a
distribution (Bhatt, Weller & Moura, 2020, IJCAI, arXiv:2005.00631).

Both work on |a| (``absolute=True``) or on the positive part of a (``absolute=False``).
"""

from __future__ import annotations

import math

import torch

from salience.metrics._common import as_map
from salience.metrics._registry import register_metric
from salience.metrics._result import MetricScores

CHALASANI = "Chalasani et al., Concise explanations of neural networks ..., ICML 2020"
BHATT = "Bhatt, Weller & Moura, Evaluating and aggregating feature-based explanations, IJCAI 2020"


def _magnitudes(saliency: torch.Tensor, absolute: bool) -> torch.Tensor:
    s = as_map(saliency).flatten(1).double()
    return s.abs() if absolute else s.clamp_min(0)


@register_metric("sparseness", category="complexity", direction="higher", paper=CHALASANI)
def sparseness(saliency: torch.Tensor, *, absolute: bool = True) -> MetricScores:
    """Gini index of the map: 0 for a uniform map, (n-1)/n for a single pixel (higher is
    sparser). A map that is all zero scores 0."""
    a = _magnitudes(saliency, absolute).sort(dim=1).values
    n = a.shape[1]
    i = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    total = a.sum(1)
    gini = ((2 * i - n - 1) * a).sum(1) / (n * total.clamp_min(1e-300))
    return MetricScores(torch.where(total > 0, gini, torch.zeros_like(gini)))


@register_metric("complexity", category="complexity", direction="lower", paper=BHATT)
def complexity(saliency: torch.Tensor, *, absolute: bool = True) -> MetricScores:
    """Entropy -sum p log p of p = a / sum(a) in nats: 0 for a single pixel, log(n) for a
    uniform map (lower is simpler). A map that is all zero has no distribution: NaN."""
    a = _magnitudes(saliency, absolute)
    total = a.sum(1, keepdim=True)
    p = a / total.clamp_min(1e-300)
    ent = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)
    out = torch.where(total.squeeze(1) > 0, ent, torch.full_like(ent, math.nan))
    return MetricScores(out, details={"max_entropy": math.log(a.shape[1])})
