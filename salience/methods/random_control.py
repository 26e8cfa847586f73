"""Random-map control for sanity checks (Adebayo et al., 2018, NeurIPS, arXiv:1810.03292)."""

from __future__ import annotations

from typing import Literal

import torch

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method


@register_method
class RandomControl(Attribution):
    """Noise that ignores the model and the image: what any trustworthy method must beat.

    ``distribution="uniform"`` draws from [0, 1); ``"gaussian"`` draws ``|N(0, 1)|`` (kept
    non-negative, like every control). ``seed=None`` uses torch's global generator on the input's
    device, so every call differs; an int seed gives the same maps for the same batch shape on
    any device (drawn on the CPU).
    """

    name = "random"
    family = "control"
    signed = False
    passes = "none"
    stochastic = True

    def __init__(
        self,
        *,
        distribution: Literal["uniform", "gaussian"] = "uniform",
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.distribution = distribution
        self.seed = seed

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        if self.distribution not in ("uniform", "gaussian"):
            raise SalienceError(
                f"distribution must be 'uniform' or 'gaussian', got {self.distribution!r}"
            )
        x = job.x
        shape = (x.shape[0], *x.shape[2:])
        draw = torch.rand if self.distribution == "uniform" else torch.randn
        if self.seed is None:
            noise = draw(shape, device=x.device, dtype=x.dtype)
        else:
            gen = torch.Generator().manual_seed(self.seed)
            noise = draw(shape, generator=gen, dtype=x.dtype).to(x.device)
        return noise.abs() if self.distribution == "gaussian" else noise
