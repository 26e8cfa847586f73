"""LRP EpsilonGammaBox composite (Montavon et al., 2019, LNCS 11700; z-box rule: Montavon et al.,
2017, Pattern Recognition 65), zennit's ``EpsilonGammaBox``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from salience.errors import SalienceError
from salience.methods._lrp import LrpMethod
from salience.methods._registry import register_method

if TYPE_CHECKING:
    from zennit.core import Composite

Bound = float | Sequence[float] | None


@register_method
class LrpEpsilonGammaBox(LrpMethod):
    """LRP with the z-box rule in the first convolution, gamma in the others and epsilon in the
    dense layers.

    ``low``/``high`` bound the model's input (after preprocessing), as one value or one per
    channel: for pixels in [0, 1] normalised by ``mean``/``std`` they are ``-mean / std`` and
    ``(1 - mean) / std``. Unset, each image's own per-channel minimum and maximum are used.
    """

    name = "lrp_epsilon_gamma_box"

    def __init__(
        self,
        *,
        gamma: float = 0.25,
        low: Bound = None,
        high: Bound = None,
        epsilon: float = 1e-6,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(epsilon=epsilon, batch_size=batch_size)
        self.gamma, self.low, self.high = gamma, low, high

    def composite(self, x: torch.Tensor) -> Composite:
        from zennit.composites import EpsilonGammaBox

        low = _bound(self.low, x, "low") if self.low is not None else x.amin((2, 3), keepdim=True)
        high = (
            _bound(self.high, x, "high") if self.high is not None else x.amax((2, 3), keepdim=True)
        )
        return EpsilonGammaBox(low=low, high=high, epsilon=self.epsilon, gamma=self.gamma)


def _bound(value: float | Sequence[float], x: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` as a ``[1, C, 1, 1]`` tensor (or a scalar tensor) like ``x``."""
    bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if bound.ndim == 0:
        return bound
    if bound.ndim != 1 or bound.numel() != x.shape[1]:
        raise SalienceError(
            f"{name} must be one number or one per input channel ({x.shape[1]}), got {value!r}"
        )
    return bound.view(1, -1, 1, 1)
