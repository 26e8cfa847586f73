"""The model seen from pixel space: budgets are stated on 0..1 pixels, whatever the model's
normalisation, and converted to the model's input space for the record."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from salience.outputs import OutputSelector, select_output


class PixelModel(nn.Module):
    """``model((p - mean) / std)`` for pixels ``p`` in [0, 1].

    The user's model is held, not changed: wrapping it adds no hook and no parameter to it.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        output: OutputSelector = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.output = output
        # The wrapper itself is "in eval mode" (set without touching the model): torchattacks
        # restores train mode afterwards when the model it attacks reports training, which
        # would switch batch norm to batch statistics and update its running statistics.
        self.training = False
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)

    def to_input(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean.to(pixels)) / self.std.to(pixels)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x) + self.mean.to(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits for an input already in its own (normalised) space."""
        return select_output(self.model(x), self.output)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.logits(self.to_input(pixels))

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Logits of ``pixels`` in chunks of ``batch``, without gradients."""
        return torch.cat([self(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])


def input_space_eps(eps: float, std: Sequence[float]) -> list[float]:
    """A pixel-space budget in the model's input space, one value per channel (``eps / std``).

    For L-inf this is the exact per-channel bound; for L2 it is the per-channel scale of the
    norm (the input-space L2 radius lies between ``eps / max(std)`` and ``eps / min(std)``).
    """
    return [eps / s for s in std]
