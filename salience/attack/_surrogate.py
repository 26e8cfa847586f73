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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from salience.methods._activations import _match


class SoftplusSurrogate(TorchFunctionMode):
    """While active, ReLU-like calls compute ``softplus(beta)``; ``calls`` counts them."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"softplus beta must be positive, got {beta}")
        self.beta = beta
        self.calls = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        match = _match(func, args, kwargs)
        if match is None:
            return func(*args, **kwargs)
        self.calls += 1
        x, hi, _inplace = match
        out = F.softplus(x, self.beta)
        return out if hi is None else out - F.softplus(x - hi, self.beta)
