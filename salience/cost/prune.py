"""Structurally pruned copies of a model (torch-pruning: Fang et al., DepGraph, CVPR 2023).

Channels with the smallest L2 weight norm are removed at a ratio, with every dependent layer
resized by torch-pruning's dependency graph; the output layer keeps its classes. No
fine-tuning: the maps show what pruning alone changes. The user's model is never changed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from salience.errors import SalienceError


def output_layers(model: nn.Module, classes: int) -> list[nn.Module]:
    """Layers whose outputs are the classes (never pruned)."""
    return [
        m
        for m in model.modules()
        if (isinstance(m, nn.Linear) and m.out_features == classes)
        or (isinstance(m, nn.Conv2d) and m.out_channels == classes)
    ]


def pruned(model: nn.Module, ratio: float, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the channels of each prunable layer removed."""
    try:
        import torch_pruning as tp
    except ImportError:
        raise SalienceError("pruning needs torch-pruning: pip install 'salience[cost]'") from None
    if not 0 < ratio < 1:
        raise SalienceError(f"pruning ratio must be in (0, 1), got {ratio}")
    copy_ = copy.deepcopy(model).eval()
    for p in copy_.parameters():
        p.requires_grad_(True)  # the dependency graph is read from autograd
    with torch.no_grad():
        classes = int(copy_(example[:1]).shape[-1])
    pruner = tp.pruner.MagnitudePruner(
        copy_,
        example_inputs=example[:1],
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=output_layers(copy_, classes),
    )
    pruner.step()
    return copy_.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
