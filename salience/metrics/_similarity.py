"""Similarity of two batches of maps, as in the sanity checks (Adebayo et al., 2018):
Spearman rank correlation of |map| and of the signed map, SSIM, and Spearman of HOG features.

Spearman uses average ranks for ties (as scipy does), computed batched on the device. A map
without any variance (e.g. the ``constant`` control) has no ranking; by convention two such maps
score 1 (they are identical rankings: everything tied) and one such map against a varying one
scores 0. SSIM and HOG run per image on the CPU (scikit-image) on maps scaled by max |a| to
[0, 1], the notebook's ``abs_grayscale_norm``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from salience.errors import SalienceError

SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog")


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..P-1 of each row of ``v`` ``[N, P]``; tied values share their mean rank."""
    n, p = v.shape
    values, idx = v.sort(dim=1)
    start = torch.ones_like(values, dtype=torch.bool)
    start[:, 1:] = values[:, 1:] != values[:, :-1]
    group = (start.cumsum(1) - 1) + torch.arange(n, device=v.device)[:, None] * p
    pos = torch.arange(p, device=v.device, dtype=torch.float64).expand(n, p).flatten()
    flat = group.flatten()
    first = torch.full((n * p,), float(p), dtype=torch.float64, device=v.device)
    last = torch.full((n * p,), -1.0, dtype=torch.float64, device=v.device)
    first = first.scatter_reduce(0, flat, pos, "amin")
    last = last.scatter_reduce(0, flat, pos, "amax")
    sorted_ranks = ((first + last) / 2)[flat].view(n, p)
    return torch.empty_like(sorted_ranks).scatter_(1, idx, sorted_ranks)


Ranked = tuple[torch.Tensor, torch.Tensor]  # centred ranks [N, P] and their norms [N]


def _ranked(v: torch.Tensor, absolute: bool) -> Ranked:
    x = v.flatten(1).double()
    r = average_ranks(x.abs() if absolute else x)
    r = r - r.mean(1, keepdim=True)
    return r, r.norm(dim=1)


def _rho(a: Ranked, b: Ranked) -> torch.Tensor:
    (rx, sx), (ry, sy) = a, b
    rho = (rx * ry).sum(1) / (sx * sy).clamp_min(1e-300)
    flat_x, flat_y = sx == 0, sy == 0
    rho = torch.where(flat_x & flat_y, torch.ones_like(rho), rho)
    return torch.where(flat_x ^ flat_y, torch.zeros_like(rho), rho)


def spearman(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Spearman rank correlation per image of two ``[N, ...]`` batches, ``[N]`` float64."""
    return _rho(_ranked(a, absolute), _ranked(b, absolute))


def _unit(m: np.ndarray) -> np.ndarray:
    peak = np.abs(m).max()
    return np.abs(m) / peak if peak > 0 else np.zeros_like(m)


def _units(maps: torch.Tensor) -> list[np.ndarray]:
    return [_unit(m) for m in maps.detach().double().cpu().numpy()]


def _ssim(p: np.ndarray, q: np.ndarray) -> float:
    from skimage.metrics import structural_similarity  # imported on use: slow to import

    if np.array_equal(p, q):
        return 1.0
    side = min(p.shape)
    if side >= 11:  # Wang et al.'s Gaussian window (sigma 1.5), as in the sanity-check notebook
        return float(
            structural_similarity(
                p, q, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        )
    if side < 3:
        raise SalienceError("SSIM needs maps of at least 3x3 pixels")
    return float(structural_similarity(p, q, data_range=1.0, win_size=side - (1 - side % 2)))


def _hog_features(m: np.ndarray) -> torch.Tensor:
    from skimage.feature import hog

    cell = max(2, min(16, min(m.shape) // 2))
    return torch.from_numpy(
        np.asarray(hog(m, pixels_per_cell=(cell, cell), cells_per_block=(1, 1)))
    )


class SimilarityTo:
    """Similarities of any number of map batches to one reference batch ``[N, ...]``; what
    depends on the reference alone (its ranks, its HOG features, its [0, 1] scaling) is
    computed once, so a randomization cascade pays for the reference once, not per stage."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference
        self._parts: dict[str, Any] = {}

    def _part(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._parts:
            self._parts[key] = make()
        return self._parts[key]

    def __call__(self, name: str, maps: torch.Tensor) -> torch.Tensor:
        """Similarity ``name`` (one of :data:`SIMILARITIES`) per image, ``[N]`` float64 on the
        CPU."""
        if name in ("spearman_abs", "spearman"):
            absolute = name == "spearman_abs"
            ref = self._part(name, lambda: _ranked(self.reference, absolute))
            return _rho(ref, _ranked(maps, absolute)).cpu()
        if name == "ssim":
            units = self._part("units", lambda: _units(self.reference))
            pairs = zip(units, _units(maps), strict=True)
            return torch.tensor([_ssim(p, q) for p, q in pairs], dtype=torch.float64)
        if name == "hog":
            units = self._part("units", lambda: _units(self.reference))
            ref = self._part("hog", lambda: [_hog_features(p)[None] for p in units])
            pairs = zip(ref, _units(maps), strict=True)
            values = [float(spearman(f, _hog_features(q)[None], False)[0]) for f, q in pairs]
            return torch.tensor(values, dtype=torch.float64)
        known = ", ".join(SIMILARITIES)
        raise SalienceError(f"unknown similarity {name!r}; choose one of {known}")


def similarity(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Similarity ``name`` (one of :data:`SIMILARITIES`) per image, ``[N]`` float64 on the CPU."""
    return SimilarityTo(a)(name, b)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per image of two ``[N, H, W]`` batches scaled to [0, 1] by max |map|."""
    return SimilarityTo(a)("ssim", b)
