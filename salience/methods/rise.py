"""RISE: randomized input sampling (Petsiuk, Das & Saenko, 2018, BMVC, arXiv:1806.07421)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method
from salience.methods.baselines import Baseline, baseline_like, check_baseline
from salience.methods.batching import spans


def random_grids(
    count: int, cells: int, p: float, seed: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary ``[count, 1, cells, cells]`` grids (1 with probability ``p``) and ``[count, 2]``
    shifts as fractions of a cell; drawn on the CPU so a seed gives the same masks anywhere."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    grids = (torch.rand(count, 1, cells, cells, generator=gen) < p).float()
    shifts = torch.rand(count, 2, generator=gen)
    return grids, shifts


def upsample_masks(
    grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """Smooth masks ``[M, H, W]``: each grid upsampled bilinearly to ``(cells + 1)`` cells of
    ``ceil(H / cells)`` pixels, then cropped to ``size`` at its random shift (as in the paper)."""
    m, cells = grids.shape[0], grids.shape[-1]
    h, w = size
    ch, cw = -(-h // cells), -(-w // cells)
    up = F.interpolate(
        grids.to(dtype),
        size=((cells + 1) * ch, (cells + 1) * cw),
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    dev = grids.device
    dy = (shifts[:, 0] * ch).long().clamp_max(ch - 1)
    dx = (shifts[:, 1] * cw).long().clamp_max(cw - 1)
    iy = dy[:, None] + torch.arange(h, device=dev)
    ix = dx[:, None] + torch.arange(w, device=dev)
    return up[torch.arange(m, device=dev)[:, None, None], iy[:, :, None], ix[:, None, :]]


@register_method
class Rise(Attribution):
    """Score-weighted average of random smooth masks that keep part of the image.

    ``masks`` random masks (default 4000, the paper's count for ResNet-50 at 224 px; cost is
    one forward pass per mask and image) are built from ``cells x cells`` binary grids whose
    cells are kept with probability ``p``. The same masks, drawn from ``seed``, are used for
    every image, so a batch gives the same maps as its images one by one; ``seed=None`` draws
    from torch's global generator. Masked-out pixels become ``baseline`` (the paper uses 0).
    ``score="prob"`` weights masks by the softmax probability as in the paper; ``"logit"`` by
    the raw output. The map is ``sum_i score_i * M_i / (masks * p)``.
    """

    name = "rise"
    family = "perturbation"
    signed = False
    passes = "masks fwd"
    stochastic = True

    def __init__(
        self,
        *,
        masks: int = 4000,
        cells: int = 7,
        p: float = 0.5,
        seed: int | None = 0,
        score: Literal["prob", "logit"] = "prob",
        baseline: Baseline = 0.0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        baseline = check_baseline(baseline)
        self.masks = masks
        self.cells = cells
        self.p = p
        self.seed = seed
        self.score = score
        self.baseline = baseline

    def _check(self, h: int, w: int) -> None:
        if not isinstance(self.masks, int) or self.masks < 1:
            raise SalienceError(f"masks must be a positive int, got {self.masks!r}")
        if not isinstance(self.cells, int) or not 1 <= self.cells <= min(h, w):
            raise SalienceError(f"cells must be an int in 1..{min(h, w)}, got {self.cells!r}")
        if not 0 < self.p <= 1:
            raise SalienceError(f"p is the probability of keeping a cell, in (0, 1]; got {self.p}")
        if self.score not in ("prob", "logit"):
            raise SalienceError(f"score must be 'prob' or 'logit', got {self.score!r}")

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        x = job.x
        n, _, h, w = x.shape
        self._check(h, w)
        grids, shifts = random_grids(self.masks, self.cells, self.p, self.seed)
        grids, shifts = grids.to(x.device), shifts.to(x.device)
        base = baseline_like(x, self.baseline)
        probs = self.score == "prob"
        job.resolve_target()
        saliency = torch.zeros(n, h, w, device=x.device, dtype=x.dtype)
        # Rows are mask-major (row r: mask r // n, image r % n): a chunk upsamples few masks.
        for a, b in spans(self.masks * n, job.chunk("forward")):
            row = torch.arange(a, b, device=x.device)
            first = a // n
            smooth = upsample_masks(
                grids[first : (b - 1) // n + 1], shifts[first : (b - 1) // n + 1], (h, w), x.dtype
            )
            mask, img = smooth[row // n - first], row % n
            kept = torch.lerp(base[img], x[img], mask[:, None])
            scores = job.scores(kept, img, probs)
            saliency.index_add_(0, img, scores[:, None, None].to(x.dtype) * mask)
        return saliency / (self.masks * self.p)
