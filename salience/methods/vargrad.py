"""VarGrad (Adebayo et al., 2018, ICLR workshop, arXiv:1810.03307)."""

from __future__ import annotations

from typing import Any

from salience.methods._registry import register_method
from salience.methods.smoothgrad import NoisyAverage


@register_method
class VarGrad(NoisyAverage):
    """Variance (over samples, divided by ``samples``) of a gradient method's attributions
    on noisy copies of the input; unsigned."""

    name = "vargrad"
    signed = False

    def __init__(
        self,
        *,
        base: str = "gradient",
        samples: int = 25,
        noise: float = 0.15,
        seed: int = 0,
        base_params: dict[str, Any] | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            "var",
            base=base,
            samples=samples,
            noise=noise,
            seed=seed,
            base_params=base_params,
            batch_size=batch_size,
        )
