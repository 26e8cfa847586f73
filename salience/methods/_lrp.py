"""Layer-wise relevance propagation through zennit's rules, composites and canonizers.

LRP (Bach et al., 2015, PLoS ONE 10(7); overview: Montavon et al., 2019, "Layer-wise relevance
propagation: an overview", LNCS 11700) redistributes the target score layer by layer down to
the pixels. zennit (Anders et al., 2021, arXiv:2106.13200) implements the rules; this module only
decides what to apply to the user's model and undoes it, even after an error:

- canonizers: every batch norm that directly follows a convolution or linear layer (in the
  order the modules are registered; a convolution with children such as timm/EfficientNet's
  static padding counts as one layer) is merged into it by zennit's ``NamedMergeBatchNorm``;
  torchvision ResNet blocks also get zennit's block canonizers, so their residual sum follows
  the ``Norm`` rule. For torchvision ResNets and VGGs this is exactly zennit's
  ``ResNetCanonizer`` / ``VGGCanonizer``.
- coverage: a module whose own parameters no rule uses (layer norm, attention, a batch norm
  that follows no linear layer, a custom layer) is refused with its name, before any forward.
- the relevance at the output is the target score itself (one-hot times the logit), so it is
  conserved down to the input for bias-free networks.

Residual additions written as ``a + b`` inside a model's ``forward`` (other than torchvision
ResNet blocks) and multiplicative gates are differentiated as plain gradients, as in zennit.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from itertools import pairwise
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from salience.errors import UnsupportedModelError
from salience.methods._base import Attribution, ExplainJob
from salience.methods.batching import spans

if TYPE_CHECKING:  # zennit (and torchvision's model zoo) are imported when LRP runs
    from zennit.canonizers import Canonizer
    from zennit.core import Composite

_MAX_NAMED = 3


class LrpMethod(Attribution):
    """One zennit composite applied with automatic canonizers; subclasses build the composite."""

    family = "relevance"
    signed = True
    passes = "1 fwd+bwd"

    def __init__(self, *, epsilon: float = 1e-6, batch_size: int | None = None) -> None:
        super().__init__(batch_size=batch_size)
        self.epsilon = epsilon

    @abstractmethod
    def composite(self, x: torch.Tensor) -> Composite:
        """zennit's composite (rules only, no canonizers) for the chunk ``x``."""

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        if isinstance(job.model, torch.jit.ScriptModule):
            raise UnsupportedModelError(
                f"{self.name} needs module hooks, which TorchScript models do not have; "
                "load the model as Python code, or choose gradient or integrated_gradients"
            )
        index = job.rows()
        return torch.cat(
            [
                self._relevance(job, job.x[a:b], index[a:b])
                for a, b in spans(job.n, job.chunk("backward"))
            ]
        )

    def _relevance(self, job: ExplainJob, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        from zennit.canonizers import MergeBatchNorm
        from zennit.core import RemovableHandleList

        model = job.model
        composite = self.composite(x)
        applied = RemovableHandleList()
        try:
            for canonizer in canonizers_for(model):
                applied += canonizer.apply(model)
            composite.register(model)
            merged = {id(c.batch_norm) for c in applied if isinstance(c, MergeBatchNorm)}
            refuse_uncovered(model, composite, merged, self.name)
            inp = x.detach().requires_grad_(True)
            with torch.enable_grad():
                scores = job.target_scores(job.logits(inp), index, clean=True)
                (relevance,) = torch.autograd.grad(scores, inp, grad_outputs=scores.detach())
        finally:
            composite.remove()
            for canonizer in reversed(applied):
                canonizer.remove()
        return relevance


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """Batch-norm merges for ``model``, plus zennit's block canonizers for torchvision ResNets."""
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    found: list[Canonizer] = [NamedMergeBatchNorm(merge_pairs(model))]
    if any(_is_resnet_block(m) for m in model.modules()):
        found += [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()]
    return found


def _is_resnet_block(module: nn.Module) -> bool:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return isinstance(module, BasicBlock | Bottleneck)


def merge_pairs(model: nn.Module) -> list[tuple[tuple[str], str]]:
    """``((linear,), batch_norm)`` names for each batch norm registered right after a layer."""
    pairs: list[tuple[tuple[str], str]] = []
    for (prev_name, prev), (name, module) in pairwise(_layers(model)):
        if _follows(prev, module):
            _check_mergeable(name, module)
            pairs.append(((prev_name,), name))
    return pairs


def _follows(prev: nn.Module, module: nn.Module) -> bool:
    """A batch norm after a linear layer of its width (another width normalises something else)."""
    from zennit.types import BatchNorm, Linear

    return (
        isinstance(prev, Linear)
        and isinstance(module, BatchNorm)
        and _channels(prev) == int(module.num_features)
    )


def _layers(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Leaf modules in registration order; a linear layer with children counts as one leaf."""
    from zennit.types import Linear

    children = list(module.named_children())
    if not children or isinstance(module, Linear):
        yield prefix, module
        return
    for name, child in children:
        yield from _layers(child, f"{prefix}.{name}" if prefix else name)


def _channels(layer: nn.Module) -> int:
    from zennit.types import ConvolutionTranspose

    weight = cast(torch.Tensor, layer.weight)
    if isinstance(layer, ConvolutionTranspose):
        return int(weight.shape[1]) * int(getattr(layer, "groups", 1))
    return int(weight.shape[0])


def _check_mergeable(name: str, bn: nn.Module) -> None:
    missing = [
        k for k in ("weight", "bias", "running_mean", "running_var") if getattr(bn, k) is None
    ]
    if missing:
        raise UnsupportedModelError(
            f"LRP cannot merge batch norm {name!r} into the layer before it: it has no "
            f"{', '.join(missing)} (affine=False or track_running_stats=False)"
        )


def refuse_uncovered(model: nn.Module, composite: Composite, merged: set[int], method: str) -> None:
    """Raise naming the modules whose own parameters no rule of ``composite`` accounts for."""
    from zennit.rules import Pass

    ctx: dict[object, object] = {}
    uncovered = []
    for name, module in model.named_modules():
        rule = composite.module_map(ctx, name, module)
        if next(module.parameters(recurse=False), None) is None:
            continue
        passed = isinstance(rule, Pass) and not isinstance(module, nn.PReLU)
        if rule is None or (passed and id(module) not in merged):
            uncovered.append(f"{name or '(the model itself)'} ({type(module).__name__})")
    if uncovered:
        more = len(uncovered) - _MAX_NAMED
        names = ", ".join(uncovered[:_MAX_NAMED]) + (f" and {more} more" if more > 0 else "")
        raise UnsupportedModelError(
            f"{method} has no LRP rule for layer {names}: its parameters would be ignored "
            "(rules cover convolutions, linear layers, batch norms that follow one, activations "
            "and pooling); choose a gradient or CAM method for this model"
        )
