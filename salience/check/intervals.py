"""Bootstrap confidence intervals over images (Efron & Tibshirani, An Introduction to the
Bootstrap, 1993): resample the checked images with replacement, take the mean of each
resample, and report the percentile interval. Every number of one check is resampled with the
same draws, so paired differences (a method minus the random control) keep their pairing."""

from __future__ import annotations

import torch

from salience.jsonsafe import finite


def resample_indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    """``[resamples, n]`` image indices drawn with replacement, seeded."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (resamples, n), generator=gen)


def interval(values: torch.Tensor, draws: torch.Tensor, level: float) -> tuple[float, float] | None:
    """Percentile interval of the mean of ``values`` ``[N]`` over the resamples ``draws``;
    None with fewer than two finite values (NaN images are left out of each resample)."""
    v = values.detach().double().cpu().flatten()
    if int(torch.isfinite(v).sum()) < 2:
        return None
    picked = v[draws]
    ok = torch.isfinite(picked)
    means = torch.where(ok, picked, 0.0).sum(1) / ok.sum(1).clamp_min(1)
    means = means[ok.any(1)]
    tail = (1 - level) / 2
    lo, hi = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(lo), float(hi)


def rounded(span: tuple[float, float] | None) -> list[float] | None:
    """``span`` rounded for ``report.json``; None when missing or not finite."""
    lo, hi = (None, None) if span is None else (finite(span[0], 6), finite(span[1], 6))
    return None if lo is None or hi is None else [lo, hi]
