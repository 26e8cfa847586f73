"""Kernel SHAP over superpixels (Lundberg & Lee, 2017, NeurIPS, arXiv:1705.07874).

Superpixels come from SLIC (Achanta et al., 2012) in scikit-image, which runs on CPU numpy:
that is the method's one host round trip. Everything else stays on the input's device.
"""

from __future__ import annotations

import math

import torch

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method
from salience.methods.baselines import Baseline, baseline_like, check_baseline


def slic_segments(x: torch.Tensor, segments: int, compactness: float) -> torch.Tensor:
    """SLIC labels ``[N, H, W]`` of each image, min-max scaled to [0, 1] over all channels and
    smoothed with a 1 px Gaussian first (without it, noisy images collapse to one segment)."""
    from skimage.segmentation import slic

    imgs = x.detach().to("cpu", torch.float64)
    lo = imgs.amin(dim=(1, 2, 3), keepdim=True)
    imgs = (imgs - lo) / (imgs.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    labels = []
    for img in imgs:
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        lab = slic(
            arr,
            n_segments=segments,
            compactness=compactness,
            sigma=1.0,
            start_label=0,
            channel_axis=None if img.shape[0] == 1 else -1,
        )
        labels.append(torch.from_numpy(lab.astype("int64")))
    return torch.stack(labels).to(x.device)


def given_segments(segments: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A user's label map ``[H, W]`` or ``[N, H, W]`` as int64 ``[N, H, W]`` on x's device."""
    n, _, h, w = x.shape
    if segments.is_floating_point() or segments.is_complex() or segments.dtype == torch.bool:
        raise SalienceError("segments must be an integer label tensor [H, W] or [N, H, W]")
    labels = segments.to(x.device, torch.int64)
    if labels.ndim == 2:
        labels = labels.unsqueeze(0)
    if labels.ndim != 3 or labels.shape[1:] != (h, w) or labels.shape[0] not in (1, n):
        raise SalienceError(
            f"segments of shape {tuple(segments.shape)} do not match the input; "
            f"pass [{h}, {w}] or [{n}, {h}, {w}] integer labels"
        )
    return labels.expand(n, h, w)


def coalitions(m: int, samples: int, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions ``[S, m]`` (bool) of ``m`` players and their regression weights ``[S]``.

    When all ``2**m - 2`` non-trivial coalitions fit in ``samples`` they are enumerated with
    the Shapley kernel weights, which makes the result exact. Otherwise, as in the shap
    package, the coalitions of the heaviest sizes (1 and m-1, then 2 and m-2, ...) are
    enumerated while the budget would sample each of them at least once on average, and the
    rest are drawn from the kernel's distribution over the remaining sizes, each paired with its
    complement to lower the variance (Covert & Lee, 2021, AISTATS, arXiv:2012.01536).
    """
    if m < 2:
        return torch.zeros(0, m, dtype=torch.bool), torch.zeros(0, dtype=torch.float64)
    size = torch.arange(1, m, dtype=torch.float64)
    mass = 1.0 / (size * (m - size))  # kernel weight of all coalitions of each size
    if 2**m - 2 <= samples:
        codes = torch.arange(1, 2**m - 1)
        z = (codes[:, None] >> torch.arange(m)) & 1 == 1
        n_in = z.sum(1)
        binom = torch.tensor([math.comb(m, int(s)) for s in n_in], dtype=torch.float64)
        return z, (m - 1) / (binom * n_in * (m - n_in))
    blocks: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    free = torch.ones(m - 1, dtype=torch.bool)
    left = samples
    for k in range(1, m // 2 + 1):
        pair = [k - 1] if 2 * k == m else [k - 1, m - k - 1]
        count = math.comb(m, k) * len(pair)
        if left * float(mass[pair].sum() / mass[free].sum()) < count:
            break
        z = torch.zeros(math.comb(m, k), m, dtype=torch.bool)
        z.scatter_(1, torch.combinations(torch.arange(m), r=k).view(-1, k), True)
        blocks += [z, ~z] if len(pair) == 2 else [z]
        weights.append(torch.full((count,), float(mass[k - 1]) / math.comb(m, k)))
        free[pair] = False
        left -= count
    if left > 0:
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        pairs = (left + 1) // 2
        sizes = size[free].long()[torch.multinomial(mass[free], pairs, True, generator=gen)]
        rank = torch.rand(pairs, m, generator=gen).argsort(1).argsort(1)
        z = rank < sizes[:, None]
        blocks.append(torch.stack([z, ~z], 1).reshape(2 * pairs, m)[:left])
        weights.append(torch.full((left,), float(mass[free].sum()) / left))
    return torch.cat(blocks), torch.cat(weights).double()


@register_method
class KernelShap(Attribution):
    """Shapley values of superpixels, estimated by the Shapley-kernel weighted regression.

    ``segments``: the SLIC superpixel count (``compactness`` as in scikit-image), or a label
    tensor ``[H, W]``/``[N, H, W]`` to use instead. Each of ``samples`` coalitions (seeded; the
    same draw for every image) keeps its superpixels and sets the rest to ``baseline``. The
    regression is constrained so the values sum to ``score(x) - score(baseline)``; every pixel
    gets its superpixel's value. Cost: ``samples + 1`` forward passes per image, plus one for x.
    """

    name = "kernel_shap"
    family = "perturbation"
    signed = True
    passes = "samples fwd"
    stochastic = True

    def __init__(
        self,
        *,
        segments: int | torch.Tensor = 50,
        compactness: float = 20.0,
        samples: int = 1000,
        baseline: Baseline = 0.0,
        seed: int | None = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        baseline = check_baseline(baseline)
        self.segments = segments
        self.compactness = compactness
        self.samples = samples
        self.baseline = baseline
        self.seed = seed

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """Consecutive superpixel labels ``[N, H, W]`` (0..m-1 in each image)."""
        if isinstance(self.segments, torch.Tensor):
            raw = given_segments(self.segments, x)
        elif isinstance(self.segments, int) and not isinstance(self.segments, bool):
            if self.segments < 1:
                raise SalienceError(f"segments must be >= 1, got {self.segments}")
            raw = slic_segments(x, self.segments, self.compactness)
        else:
            raise SalienceError("segments must be a superpixel count or an integer label tensor")
        return torch.stack([torch.unique(r, return_inverse=True)[1] for r in raw])

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        if not isinstance(self.samples, int) or self.samples < 1:
            raise SalienceError(f"samples must be a positive int, got {self.samples!r}")
        x = job.x
        n, _, h, w = x.shape
        labels = self.labels(x)
        players = [int(lab.max()) + 1 for lab in labels]
        width = max(players)
        drawn = [coalitions(m, self.samples, self.seed) for m in players]
        # Row layout per image: the empty coalition (the baseline), then its sampled coalitions.
        z = torch.zeros(sum(len(c) + 1 for c, _ in drawn), width, dtype=torch.bool)
        img = torch.repeat_interleave(torch.arange(n), torch.tensor([len(c) + 1 for c, _ in drawn]))
        start = torch.cumsum(torch.tensor([0] + [len(c) + 1 for c, _ in drawn]), 0)
        for i, (c, _) in enumerate(drawn):
            z[start[i] + 1 : start[i + 1], : players[i]] = c
        z, img = z.to(x.device), img.to(x.device)
        base = baseline_like(x, self.baseline)
        flat = labels.flatten(1)

        def build(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
            keep = torch.gather(z[a:b], 1, flat[img[a:b]]).view(b - a, 1, h, w)
            return torch.where(keep, x[img[a:b]], base[img[a:b]]), img[a:b]

        full = job.clean_scores()
        scores = job.perturbed_scores(z.shape[0], build)
        values = self._solve(z, scores, start, full, players, [wt for _, wt in drawn])
        return torch.gather(values.to(x.dtype), 1, flat).view(n, h, w)

    @staticmethod
    def _solve(
        z: torch.Tensor,
        scores: torch.Tensor,
        start: torch.Tensor,
        full: torch.Tensor,
        players: list[int],
        weights: list[torch.Tensor],
    ) -> torch.Tensor:
        """Weighted least squares with sum(values) = score(x) - score(baseline), all images in
        one batched solve of the KKT system (padded players are pinned to 0)."""
        dev = z.device
        dtype = torch.float32 if dev.type == "mps" else torch.float64
        n, width = len(players), z.shape[1]
        rows = max(len(wt) for wt in weights)
        zz = torch.zeros(n, rows, width, device=dev, dtype=dtype)
        yy = torch.zeros(n, rows, device=dev, dtype=dtype)
        ww = torch.zeros(n, rows, device=dev, dtype=dtype)
        empty = scores[start[:-1].to(dev)].to(dtype)
        for i, wt in enumerate(weights):
            k, a = len(wt), int(start[i]) + 1
            zz[i, :k] = z[a : a + k].to(dtype)
            yy[i, :k] = scores[a : a + k].to(dtype) - empty[i]
            ww[i, :k] = wt.to(dev, dtype)
        valid = torch.arange(width, device=dev)[None] < torch.tensor(players, device=dev)[:, None]
        valid = valid.to(dtype)
        gram = zz.transpose(1, 2) @ (ww[..., None] * zz)
        ridge = 1e-10 * gram.diagonal(dim1=1, dim2=2).mean(1)  # only matters if rank-deficient
        eye = torch.eye(width, device=dev, dtype=dtype)
        kkt = torch.zeros(n, width + 1, width + 1, device=dev, dtype=dtype)
        kkt[:, :width, :width] = gram + eye * ridge[:, None, None] + torch.diag_embed(1 - valid)
        kkt[:, :width, width] = valid
        kkt[:, width, :width] = valid
        rhs = torch.cat(
            [
                (zz.transpose(1, 2) @ (ww * yy)[..., None])[..., 0],
                (full.to(dtype) - empty)[:, None],
            ],
            1,
        )
        return torch.linalg.solve(kkt, rhs)[:, :width]
