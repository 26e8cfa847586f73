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


def spearman(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Spearman rank correlation per image of two ``[N, ...]`` batches, ``[N]`` float64."""
    x, y = a.flatten(1).double(), b.flatten(1).double()
    if absolute:
        x, y = x.abs(), y.abs()
    rx, ry = average_ranks(x), average_ranks(y)
    rx = rx - rx.mean(1, keepdim=True)
    ry = ry - ry.mean(1, keepdim=True)
    sx, sy = rx.norm(dim=1), ry.norm(dim=1)
    rho = (rx * ry).sum(1) / (sx * sy).clamp_min(1e-300)
    flat_x, flat_y = sx == 0, sy == 0
    rho = torch.where(flat_x & flat_y, torch.ones_like(rho), rho)
    return torch.where(flat_x ^ flat_y, torch.zeros_like(rho), rho)


def _unit(m: np.ndarray) -> np.ndarray:
    peak = np.abs(m).max()
    return np.abs(m) / peak if peak > 0 else np.zeros_like(m)


def _per_image(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[..., torch.Tensor]:
    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        xa = a.detach().double().cpu().numpy()
        xb = b.detach().double().cpu().numpy()
        values = [fn(_unit(p), _unit(q)) for p, q in zip(xa, xb, strict=True)]
        return torch.tensor(values, dtype=torch.float64)

    return run


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


def _hog_features(m: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    cell = max(2, min(16, min(m.shape) // 2))
    return np.asarray(hog(m, pixels_per_cell=(cell, cell), cells_per_block=(1, 1)))


def _hog(p: np.ndarray, q: np.ndarray) -> float:
    fp, fq = _hog_features(p), _hog_features(q)
    return float(spearman(torch.from_numpy(fp)[None], torch.from_numpy(fq)[None], False)[0])


ssim = _per_image(_ssim)
hog_similarity = _per_image(_hog)


def similarity(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Similarity ``name`` (one of :data:`SIMILARITIES`) per image, ``[N]`` float64 on the CPU."""
    if name == "spearman_abs":
        return spearman(a, b, True).cpu()
    if name == "spearman":
        return spearman(a, b, False).cpu()
    if name == "ssim":
        return ssim(a, b)
    if name == "hog":
        return hog_similarity(a, b)
    raise SalienceError(f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}")
