"""How far two maps are apart, as Ghorbani, Abid and Zou measure fragility (AAAI 2019,
arXiv:1710.10547): top-k intersection, Spearman rank correlation and centre-of-mass shift,
all on ``|map|``."""

from __future__ import annotations

import numpy as np
import torch

from salience.audit.stats import map_statistics
from salience.metrics._similarity import spearman


def default_k(height: int, width: int, k: int = 1000) -> int:
    """``k`` for top-k intersection: 1000 at 224 px (Ghorbani et al.), at most a quarter of
    the pixels for small images."""
    return max(1, min(k, (height * width) // 4))


def top_k_mask(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``[N, H*W]``: the ``k`` largest ``|map|`` pixels of each map."""
    flat = maps.detach().flatten(1).abs()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    return mask.scatter_(1, flat.topk(k, dim=1).indices, True)


def topk_intersection(a: torch.Tensor, b: torch.Tensor, k: int) -> np.ndarray:
    """Share of the ``k`` most salient pixels of ``a`` that are among those of ``b``."""
    both = top_k_mask(a, k) & top_k_mask(b, k)
    return (both.sum(1).double() / k).cpu().numpy()


def spearman_abs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return spearman(a.detach(), b.detach(), absolute=True).cpu().numpy()


def com_shift(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Distance in pixels between the centres of mass of ``|a|`` and ``|b|``."""
    h, w = a.shape[-2:]
    sa = map_statistics(a.detach().abs().double().cpu().numpy())
    sb = map_statistics(b.detach().abs().double().cpu().numpy())
    dy = (np.asarray(sa["com_y"]) - np.asarray(sb["com_y"])) * h
    dx = (np.asarray(sa["com_x"]) - np.asarray(sb["com_x"])) * w
    return np.asarray(np.hypot(dy, dx))


def distances(clean: torch.Tensor, other: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """Every fragility measure of ``other`` against ``clean``, one value per image."""
    return {
        "topk_intersection": topk_intersection(clean, other, k),
        "spearman": spearman_abs(clean, other),
        "com_shift": com_shift(clean, other),
    }
