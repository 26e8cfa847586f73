"""Choosing and reading the layer a CAM method explains.

CNNs: the last module (in execution order) whose output is a spatial map ``[N, C, h, w]``
with h, w > 1. Vision transformers (torchvision ``VisionTransformer``, timm ViT/DeiT/EVA-style
models with ``blocks``): the first norm of the last block, i.e. the token sequence entering the
last attention, reshaped to its patch grid with class and register tokens dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from salience.errors import SalienceError


@dataclass(frozen=True)
class CamLayer:
    """A module to explain and, for token sequences, how many leading tokens to drop."""

    module: nn.Module
    name: str
    prefix_tokens: int | None = None  # None: output is already [N, C, h, w]


def module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise SalienceError("the layer given is not a submodule of the model")


def resolve_layer(model: nn.Module, layer: nn.Module | str | None, x: torch.Tensor) -> CamLayer:
    """The layer to explain: a module, its dotted name, or ``None`` for the automatic choice."""
    if layer is None:
        return auto_layer(model, x)
    if isinstance(layer, str):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n][-8:]
            raise SalienceError(
                f"model has no layer {layer!r}; the last layers are: {', '.join(names)}"
            ) from None
        name = layer
    else:
        module, name = layer, module_name(model, layer)
    return CamLayer(module, name, _prefix_tokens(model, module, x))


def auto_layer(model: nn.Module, x: torch.Tensor) -> CamLayer:
    """The default CAM layer (see the module docstring)."""
    vit = _transformer_layer(model)
    if vit is not None:
        name = module_name(model, vit)
        return CamLayer(vit, name, _prefix_tokens(model, vit, x))
    order: list[nn.Module] = []
    shapes: dict[int, tuple[int, ...]] = {}

    def record(m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            order.append(m)
            shapes[id(m)] = tuple(out.shape)

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    for m in reversed(order):
        s = shapes[id(m)]
        if len(s) == 4 and s[2] > 1 and s[3] > 1:
            return CamLayer(m, module_name(model, m))
    raise SalienceError(
        "found no layer with a spatial output [N, C, h, w] for CAM methods; pass layer= "
        "a module or its dotted name"
    )


def _transformer_layer(model: nn.Module) -> nn.Module | None:
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if hasattr(model, "class_token") and isinstance(layers, nn.Sequential) and len(layers):
        return getattr(layers[-1], "ln_1", layers[-1])  # torchvision VisionTransformer
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "num_prefix_tokens") and isinstance(blocks, nn.Sequential) and len(blocks):
        return getattr(blocks[-1], "norm1", blocks[-1])  # timm ViT family
    return None


def _prefix_tokens(model: nn.Module, module: nn.Module, x: torch.Tensor) -> int | None:
    """Leading non-patch tokens of a token-sequence layer, or None for spatial layers."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_hook(
        lambda _m, _i, out: seen.append(tuple(out.shape)) if isinstance(out, torch.Tensor) else None
    )
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    if not seen:
        raise SalienceError("the chosen layer produced no tensor output during the forward pass")
    shape = seen[0]
    if len(shape) == 4:
        return None
    if len(shape) != 3:
        raise SalienceError(f"CAM layer output has shape {shape}; expected [N,C,h,w] or [N,T,D]")
    known = getattr(model, "num_prefix_tokens", None)
    if known is None and hasattr(model, "class_token"):
        known = 1
    if known is not None:
        return int(known)
    return infer_prefix(shape[1], x.shape[-2], x.shape[-1])


def infer_prefix(tokens: int, height: int, width: int, max_prefix: int = 16) -> int:
    """Smallest prefix p such that tokens - p patches tile an h x w grid of the image's aspect."""
    for p in range(max_prefix + 1):
        if _grid(tokens - p, height, width) is not None:
            return p
    raise SalienceError(f"cannot infer a patch grid from {tokens} tokens for a {height}x{width} input")


def _grid(patches: int, height: int, width: int) -> tuple[int, int] | None:
    if patches <= 0:
        return None
    for h in range(1, patches + 1):
        if patches % h == 0:
            w = patches // h
            if height % h == 0 and width % w == 0 and height // h == width // w:
                return h, w
    return None


def tokens_to_grid(tokens: torch.Tensor, prefix: int, height: int, width: int) -> torch.Tensor:
    """``[N, T, D]`` tokens -> ``[N, D, h, w]`` patch grid (prefix tokens dropped)."""
    patches = tokens[:, prefix:]
    grid = _grid(patches.shape[1], height, width)
    if grid is None:
        raise SalienceError(
            f"{patches.shape[1]} patch tokens do not tile a {height}x{width} input"
        )
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
