"""Shared machinery of the class-activation-map family.

Activations are captured by a forward hook that re-roots the layer's output as a fresh leaf,
so gradients are taken with respect to the layer alone and the backward pass stops there
(nothing below the layer is differentiated).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from salience._guard import Hooks
from salience.errors import SalienceError
from salience.methods._base import Attribution, Problem
from salience.methods._batching import Kind, spans
from salience.models.layers import CamLayer, resolve_layer


@dataclass
class Captured:
    """Layer activations ``[N, C, h, w]``, their gradients (or None), and the target scores."""

    acts: torch.Tensor
    grads: torch.Tensor | None
    scores: torch.Tensor


def capture(
    problem: Problem,
    layer: CamLayer,
    inputs: torch.Tensor,
    index: torch.Tensor,
    *,
    grad: bool,
    clean: bool = True,
) -> Captured:
    """Run ``inputs`` forward, record ``layer``'s output and optionally d(score)/d(output)."""
    store: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        leaf = out.detach().requires_grad_(grad)
        store.append(leaf)
        return leaf.clone()  # later in-place ops (e.g. ReLU(inplace=True)) must not hit the leaf

    with Hooks() as hooks, torch.set_grad_enabled(grad):
        hooks.add(layer.module.register_forward_hook(hook))
        logits = problem.logits(inputs)
        hooks.remove()
        scores = problem.target_scores(logits, index, clean)
        grads = _layer_grad(scores, store[0], layer) if grad else None
    h, w = inputs.shape[-2:]
    acts = layer.maps(store[0].detach(), h, w)
    grads = None if grads is None else layer.maps(grads, h, w)
    return Captured(acts, grads, scores.detach())


def _layer_grad(scores: torch.Tensor, leaf: torch.Tensor, layer: CamLayer) -> torch.Tensor:
    (grad,) = (
        torch.autograd.grad(scores.sum(), leaf, allow_unused=True)
        if scores.requires_grad
        else (None,)
    )
    if grad is None:
        raise SalienceError(
            f"the target score does not depend on layer {layer.name!r}; pick a layer on the "
            "path to the output"
        )
    return grad


class CamMethod(Attribution):
    """A CAM: a map ``[N, h, w]`` from one layer's activations and (maybe) gradients.

    ``relu=True`` keeps the positive part as the papers do; ``relu=False`` returns the signed map.
    """

    family = "cam"
    signed = False
    passes = "1 fwd+partial bwd"
    needs_grad = True

    def __init__(
        self,
        *,
        layer: nn.Module | str | None = None,
        relu: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.layer = layer
        self.relu = relu

    def attribute(self, problem: Problem) -> torch.Tensor:
        layer = resolve_layer(problem.model, self.layer, problem.x)
        index = problem.rows()
        kind: Kind = "backward" if self.needs_grad else "forward"
        maps = []
        for a, b in spans(problem.n, problem.chunk(kind)):
            cap = capture(problem, layer, problem.x[a:b], index[a:b], grad=self.needs_grad)
            maps.append(self.cam(cap, problem, layer, index[a:b]))
        cam = torch.cat(maps)
        return cam.clamp_min(0) if self.relu else cam

    @abstractmethod
    def cam(
        self, cap: Captured, problem: Problem, layer: CamLayer, index: torch.Tensor
    ) -> torch.Tensor:
        """The map ``[n, h, w]`` for one chunk of images."""
