"""Layers of a model for the randomization tests, and how each is re-initialised.

A layer is a module with parameters of its own that runs in the forward pass; layers are listed
in execution order. Re-initialisation uses the module's ``reset_parameters()`` when it has one
(the layer's default initialisation; batch-norm layers also reset their running statistics),
otherwise every parameter is redrawn from a normal distribution with its original mean and
standard deviation. Everything here works on a deep copy; the user's model is never touched.
"""

from __future__ import annotations

import copy
import io

import torch
from torch import nn

from salience._guard import Hooks
from salience.errors import SalienceError


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy to randomize (TorchScript through a save/load round trip: a deep-copied
    ScriptModule's parameters are not leaves, so their gradient flags cannot be set)."""
    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(model, buffer)
        buffer.seek(0)
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        loaded: nn.Module = torch.jit.load(buffer, map_location=device)
        return loaded.train(model.training)
    return copy.deepcopy(model)


def parameter_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module with its own parameters, in the order their forward
    passes start (TorchScript modules take no hooks: there, the order of definition)."""
    names = {id(m): n for n, m in model.named_modules()}
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if isinstance(model, torch.jit.ScriptModule):  # no hooks: the order of definition
        if not owners:
            raise SalienceError("the model has no layers with parameters to randomize")
        return [(names[id(m)] or type(m).__name__, m) for m in owners]
    seen: list[nn.Module] = []

    def record(m: nn.Module, _i: object) -> None:
        if all(m is not s for s in seen):
            seen.append(m)

    with Hooks() as hooks, torch.no_grad():
        for m in owners:
            hooks.add(m.register_forward_pre_hook(record))  # a parent's own parameters (e.g. a
            # ViT's class token) are used where its forward starts, before its children
        model(x[:1])
    if not seen:
        raise SalienceError("the model has no layers with parameters to randomize")
    return [(names[id(m)] or type(m).__name__, m) for m in seen]


Layer = tuple[str, nn.Module]


def groups(layers: list[Layer], count: int | None) -> list[list[Layer]]:
    """Split layers (top first) into ``count`` contiguous groups (``None``: one per layer)."""
    if count is None or count >= len(layers):
        return [[layer] for layer in layers]
    if count < 1:
        raise SalienceError("layers must be >= 1")
    bounds = [round(i * len(layers) / count) for i in range(count + 1)]
    return [layers[bounds[i] : bounds[i + 1]] for i in range(count)]


@torch.no_grad()
def reinitialize(module: nn.Module) -> None:
    """Re-draw ``module``'s own parameters (uses the global RNG; seed it first)."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    for p in module.parameters(recurse=False):
        flat = p.detach().flatten().double()
        std = float(flat.std()) if flat.numel() > 1 else 0.0
        p.normal_(float(flat.mean()), std if std > 0 else 1.0)


def snapshot(modules: list[nn.Module]) -> list[dict[str, torch.Tensor]]:
    """Copies of the modules' own parameters and buffers, to undo a randomization."""
    return [
        {k: v.detach().clone() for k, v in m.state_dict(keep_vars=False).items() if "." not in k}
        for m in modules
    ]


def restore(modules: list[nn.Module], saved: list[dict[str, torch.Tensor]]) -> None:
    for m, state in zip(modules, saved, strict=True):
        m.load_state_dict(state, strict=False)
