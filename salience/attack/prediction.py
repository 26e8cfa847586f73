"""Prediction robustness with torchattacks (Kim, 2020, arXiv:2010.01950): success rates at a
list of budgets and each image's smallest successful budget by bisection.

Attacks run on :class:`~salience.attack._pixel.PixelModel`, so every budget is in 0..1 pixel
space, and every batch is attacked at once. PGD (Madry et al., ICLR 2018) uses the step size
``2.5 * eps / steps``; FGSM (Goodfellow et al., ICLR 2015) is one signed step; their L2 forms
are torchattacks' ``PGDL2`` (``fgsm_l2`` is ``PGDL2`` with one step of size ``eps``, the fast
gradient method). Bisection passes each image its own budget (a ``[N, ...]`` tensor, which
torchattacks' projection broadcasts) and starts PGD without random noise so that success is a
function of the budget alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from salience._guard import model_guard
from salience.attack._pixel import PixelModel
from salience.errors import SalienceError

Budget = float | torch.Tensor


@dataclass(frozen=True)
class AttackSpec:
    """One prediction attack: its norm and how to build it for a budget."""

    name: str
    norm: str  # "linf" or "l2"
    build: Callable[[PixelModel, Budget, int, bool], Any]  # (model, eps, steps, random_start)


def _pgd(m: PixelModel, eps: Budget, steps: int, random_start: bool) -> Any:
    import torchattacks

    return torchattacks.PGD(
        m, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=random_start
    )


def _fgsm(m: PixelModel, eps: Budget, steps: int, random_start: bool) -> Any:
    import torchattacks

    return torchattacks.FGSM(m, eps=eps)


def _image_wise(eps: Budget) -> Budget:
    """An L2 budget per image ``[N]`` as a step size that broadcasts over ``[N, C, H, W]``."""
    return eps.view(-1, 1, 1, 1) if isinstance(eps, torch.Tensor) else eps


def _pgd_l2(m: PixelModel, eps: Budget, steps: int, random_start: bool) -> Any:
    import torchattacks

    alpha = 2.5 * _image_wise(eps) / steps
    return torchattacks.PGDL2(m, eps=eps, alpha=alpha, steps=steps, random_start=random_start)


def _fgsm_l2(m: PixelModel, eps: Budget, steps: int, random_start: bool) -> Any:
    import torchattacks

    return torchattacks.PGDL2(m, eps=eps, alpha=_image_wise(eps), steps=1, random_start=False)


ATTACKS: dict[str, AttackSpec] = {
    "pgd": AttackSpec("pgd", "linf", _pgd),
    "fgsm": AttackSpec("fgsm", "linf", _fgsm),
    "pgd_l2": AttackSpec("pgd_l2", "l2", _pgd_l2),
    "fgsm_l2": AttackSpec("fgsm_l2", "l2", _fgsm_l2),
}
DEFAULT_EPS: dict[str, tuple[float, ...]] = {
    "linf": (0.5 / 255, 1 / 255, 2 / 255, 4 / 255),
    "l2": (0.1, 0.25, 0.5, 1.0),
}


def require_torchattacks() -> None:
    """A one-line error with the install command when torchattacks is missing."""
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        raise SalienceError(
            "salience attack needs torchattacks: pip install 'salience[attack]'"
        ) from None


def get_attack(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise SalienceError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return ATTACKS[name]


def norm_of(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-image size of a perturbation ``[N, C, H, W]`` in ``norm``."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _per_image(eps: torch.Tensor, norm: str, like: torch.Tensor) -> torch.Tensor:
    eps = eps.to(like)
    return eps.view(-1, 1, 1, 1) if norm == "linf" else eps


def run_attack(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    eps: Budget,
    *,
    steps: int = 10,
    random_start: bool = True,
    seed: int = 0,
    batch: int = 32,
) -> torch.Tensor:
    """Adversarial pixels for ``labels`` within ``eps`` (a float, or one budget per image).

    Seeded: the random start draws from a generator forked from ``seed``, the global state is
    left as it was. The model is attacked in eval mode with frozen parameters, and both are
    restored afterwards (batch-norm statistics are never updated)."""
    out = []
    devices = [pixels.device] if pixels.device.type == "cuda" else []
    with model_guard(pm), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(pixels), batch):
            e = eps
            if isinstance(eps, torch.Tensor):
                e = _per_image(eps[i : i + batch], spec.norm, pixels)
            attack = spec.build(pm, e, steps, random_start)
            attack.set_device(pixels.device)
            out.append(attack(pixels[i : i + batch], labels[i : i + batch]).detach())
    return torch.cat(out)


def success(pm: PixelModel, adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """True where the attacked image is no longer classified as its label."""
    return pm.predict(adv).argmax(1) != labels


@dataclass
class BudgetSweep:
    """Success per image at each budget, and the attacked pixels of each budget."""

    eps: list[float]
    success: torch.Tensor  # [len(eps), N] bool
    adversarial: list[torch.Tensor]


def sweep(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    eps: Sequence[float],
    *,
    steps: int = 10,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> BudgetSweep:
    """Attack every image at every budget in ``eps``."""
    hits, advs = [], []
    for e in eps:
        adv = run_attack(pm, pixels, labels, spec, float(e), steps=steps, seed=seed)
        hits.append(success(pm, adv, labels))
        advs.append(adv)
        if progress:
            progress(1)
    return BudgetSweep([float(e) for e in eps], torch.stack(hits), advs)


def smallest_budget(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    high: float | torch.Tensor,
    *,
    low: torch.Tensor | None = None,
    steps: int = 10,
    iterations: int = 6,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Each image's smallest successful budget, by bisection on ``(low, high]`` (one bracket
    per image, or ``(0, high]``); ``inf`` where the attack fails even at ``high``.
    Resolution: ``(high - low) / 2**iterations``."""
    n = len(pixels)
    lo = torch.zeros(n, dtype=torch.float64) if low is None else low.double().cpu().clone()
    hi = torch.as_tensor(high, dtype=torch.float64).expand(n).clone()
    start = run_attack(pm, pixels, labels, spec, hi, steps=steps, random_start=False)
    found = success(pm, start, labels).cpu()
    if progress:
        progress(1)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        adv = run_attack(pm, pixels, labels, spec, mid, steps=steps, random_start=False)
        ok = success(pm, adv, labels).cpu()
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
        if progress:
            progress(1)
    return torch.where(found, hi, torch.full_like(hi, float("inf")))


def bracket(sweep: BudgetSweep, ceiling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the bisection bracket a sweep gives: the smallest swept budget that broke
    the image (else ``ceiling``) and the largest swept budget below it that did not (else 0)."""
    eps = torch.tensor(sweep.eps, dtype=torch.float64)
    hits = sweep.success.cpu()
    broke = torch.where(hits, eps[:, None], torch.full_like(eps[:, None], ceiling))
    high = broke.amin(0)
    held = torch.where(~hits & (eps[:, None] < high), eps[:, None], torch.zeros_like(eps[:, None]))
    return held.amax(0), high
