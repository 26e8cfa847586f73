"""The softplus surrogate: ReLU-like activations replaced by ``softplus(beta)`` while a model
runs forward, without touching the model.

ReLU networks have zero second derivatives almost everywhere, so the gradient of a gradient
map with respect to the input carries no signal; Dombrowski et al. (NeurIPS 2019,
arXiv:1906.07983) attack and explain through ``softplus(beta x) / beta`` instead, which tends
to the ReLU as ``beta`` grows. ``relu6`` and ``hardtanh(0, hi)`` become
``softplus(x) - softplus(x - hi)``. Calls are intercepted with the same
:class:`~torch.overrides.TorchFunctionMode` matcher as guided backpropagation
(:mod:`salience.methods._activations`), so no module is swapped and nothing needs undoing; an
in-place ReLU returns its result instead of writing into its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salience.methods._activations import ReluLikeMode


class SoftplusSurrogate(ReluLikeMode):
    """While active, ReLU-like calls compute ``softplus(beta)``; ``calls`` counts them."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"softplus beta must be positive, got {beta}")
        self.beta = beta

    def replace(self, x: torch.Tensor, hi: float | None, inplace: bool) -> torch.Tensor:
        out = F.softplus(x, self.beta)
        return out if hi is None else out - F.softplus(x - hi, self.beta)
