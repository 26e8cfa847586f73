"""Choosing and reading the layer a CAM method explains.

CNNs: the last module (in execution order) whose output is a spatial map ``[N, C, h, w]``
with h, w > 1. Vision transformers (torchvision ``VisionTransformer``, timm ViT/DeiT/EVA-style
models with ``blocks``): the first norm of the last block, i.e. the token sequence entering the
last attention, reshaped to its patch grid with class and register tokens dropped. Models that
declare channels-last features (timm's ``output_fmt == "NHWC"``, e.g. Swin) have their
``[N, h, w, C]`` outputs read as maps too.

Layer facts (which modules run, how often, and the shape of what they return) come from one
hooked forward pass of a single image, cached per model and input shape.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from salience._guard import Hooks
from salience.errors import SalienceError, UnsupportedModelError


@dataclass(frozen=True)
class CamLayer:
    """A module to explain and how to read its output as ``[N, C, h, w]`` maps."""

    module: nn.Module
    name: str
    prefix_tokens: int | None = None  # tokens [N, T, D]: leading tokens to drop; None: not tokens
    channels_last: bool = False  # [N, h, w, C] instead of [N, C, h, w]

    @property
    def channel_dim(self) -> int:
        """The dimension of the raw output that holds the channels (features)."""
        return -1 if self.prefix_tokens is not None or self.channels_last else 1

    def maps(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The layer's raw output (for a ``height`` x ``width`` input) as ``[N, C, h, w]``."""
        if self.prefix_tokens is not None:
            return tokens_to_grid(out, self.prefix_tokens, height, width)
        return out.permute(0, 3, 1, 2) if self.channels_last else out


@dataclass(frozen=True)
class _Probe:
    """What one forward pass of one image showed: calls and first output shape per module."""

    modules: tuple[int, ...]  # ids of model.modules(), to notice a changed architecture
    order: tuple[str, ...]  # module names in the order their forward finished
    calls: dict[str, int]
    shapes: dict[str, tuple[int, ...] | None]  # None: the output was not a tensor


_probes: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], _Probe]] = (
    weakref.WeakKeyDictionary()
)


def module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise SalienceError("the layer given is not a submodule of the model; pass one of its modules")


def resolve_layer(model: nn.Module, layer: nn.Module | str | None, x: torch.Tensor) -> CamLayer:
    """The layer to explain: a module, its dotted name, or ``None`` for the automatic choice."""
    if layer is None:
        return auto_layer(model, x)
    if isinstance(layer, str):
        names = [n for n, _ in model.named_modules() if n]
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=3) or names[-3:]
            raise SalienceError(f"model has no layer {layer!r}; did you mean: {', '.join(close)}?")
        module, name = model.get_submodule(layer), layer
    elif isinstance(layer, nn.Module):
        module, name = layer, module_name(model, layer)
    else:
        raise SalienceError(
            f"layer must be a module of the model or its dotted name, got {type(layer).__name__}"
        )
    return _checked(model, module, name, x)


def auto_layer(model: nn.Module, x: torch.Tensor) -> CamLayer:
    """The default CAM layer (see the module docstring)."""
    vit = _transformer_layer(model)
    if vit is not None:
        return _checked(model, vit, module_name(model, vit), x)
    probe = _probe(model, x)
    for name in reversed(probe.order):
        s = probe.shapes[name]
        if probe.calls[name] != 1 or s is None or len(s) != 4:
            continue
        module = model.get_submodule(name)
        last = _channels_last(model, module, s, x)
        if min(s[1:3] if last else s[2:]) > 1:
            return CamLayer(module, name, channels_last=last)
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
    if (
        hasattr(model, "num_prefix_tokens")
        and isinstance(blocks, (nn.Sequential, nn.ModuleList))
        and len(blocks)
    ):
        return getattr(blocks[-1], "norm1", blocks[-1])  # timm ViT family
    return None


def _probe(model: nn.Module, x: torch.Tensor) -> _Probe:
    """Run one image through ``model`` recording every module's calls and output shape."""
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            "CAM methods read a layer through forward hooks, and TorchScript has none; load the "
            "Python model instead (its state dict as --weights with --model FILE.py:factory), "
            "or use a gradient or perturbation method"
        )
    key = (tuple(x.shape[1:]), x.dtype, x.device.type)
    ids = tuple(id(m) for m in model.modules())
    cached = _probes.setdefault(model, {}).get(key)
    if cached is not None and cached.modules == ids:
        return cached
    order: list[str] = []
    calls: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}

    def recorder(name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_m: nn.Module, _i: object, out: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                order.append(name)
                shapes[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else None

        return record

    with Hooks() as hooks, torch.no_grad():
        for name, m in model.named_modules():
            if name:
                hooks.add(m.register_forward_hook(recorder(name)))
        model(x[:1])
    probe = _Probe(ids, tuple(order), calls, shapes)
    _probes[model][key] = probe
    return probe


def _checked(model: nn.Module, module: nn.Module, name: str, x: torch.Tensor) -> CamLayer:
    """A :class:`CamLayer` after checking that ``module`` runs once and returns a usable map."""
    if not name:
        raise SalienceError("layer must be a submodule of the model, not the model itself")
    probe = _probe(model, x)
    calls = probe.calls.get(name, 0)
    if calls == 0:
        raise SalienceError(f"layer {name!r} does not run in the model's forward pass")
    if calls > 1:
        raise SalienceError(
            f"layer {name!r} runs {calls} times per forward pass (a reused module); "
            "pick a module that runs once, e.g. its parent block"
        )
    shape = probe.shapes[name]
    if shape is None:
        raise SalienceError(f"layer {name!r} does not return a tensor; pick another layer")
    if len(shape) == 4:
        return CamLayer(module, name, channels_last=_channels_last(model, module, shape, x))
    if len(shape) != 3:
        raise SalienceError(
            f"layer {name!r} returns shape {shape}; CAMs need [N, C, h, w] or tokens [N, T, D]"
        )
    return CamLayer(module, name, token_prefix(model, shape[1], *x.shape[-2:]))


_PREFIX_PARAMETERS = ("cls_token", "distillation_token", "register_tokens")  # Hugging Face


def known_prefix(model: nn.Module) -> int | None:
    """The number of class, distillation and register tokens the model declares: timm's
    ``num_prefix_tokens``, torchvision's ``class_token``, or the token parameters of a Hugging
    Face embedding (``cls_token``, ``distillation_token``, ``register_tokens``); None if none."""
    known = getattr(model, "num_prefix_tokens", None)
    if known is not None:
        return int(known)
    if hasattr(model, "class_token"):
        return 1
    for m in model.modules():
        tokens = [getattr(m, n, None) for n in _PREFIX_PARAMETERS]
        if isinstance(tokens[0], nn.Parameter):
            return sum(int(t.shape[1]) for t in tokens if isinstance(t, torch.Tensor))
    return None


def token_prefix(model: nn.Module, tokens: int, height: int, width: int) -> int:
    """Leading non-patch tokens in a sequence of ``tokens`` for a ``height`` x ``width`` input:
    the model's declared count when the rest tiles the image, else inferred from the grid."""
    known = known_prefix(model)
    if known is not None and patch_grid(tokens - known, height, width) is not None:
        return known
    return infer_prefix(tokens, height, width)


def _channels_last(
    model: nn.Module, module: nn.Module, shape: tuple[int, ...], x: torch.Tensor
) -> bool:
    """A 4-d output is [N, h, w, C] when the model declares channels-last features, the module
    is not a convolution, and (h, w) is a grid over the input."""
    if getattr(model, "output_fmt", None) != "NHWC" or isinstance(module, nn.Conv2d):
        return False
    return patch_grid(shape[1] * shape[2], x.shape[-2], x.shape[-1]) == (shape[1], shape[2])


def infer_prefix(tokens: int, height: int, width: int, max_prefix: int = 16) -> int:
    """Smallest prefix p such that tokens - p patches tile the image as a grid of square patches."""
    for p in range(min(max_prefix, tokens - 1) + 1):
        if patch_grid(tokens - p, height, width) is not None:
            return p
    raise SalienceError(
        f"cannot infer a patch grid from {tokens} tokens for a {height}x{width} input; "
        "pass layer= a module with a spatial output [N, C, h, w]"
    )


def patch_grid(patches: int, height: int, width: int) -> tuple[int, int] | None:
    """The grid (h, w) of ``patches`` square patches of some size s over the image, where the
    last patch of a row or column may be cut off (floor) or padded (ceil); None if none fits."""
    if patches <= 0:
        return None
    for s in range(1, max(height, width) + 1):
        for h, w in ((height // s, width // s), (-(-height // s), -(-width // s))):
            if h * w == patches:
                return h, w
        if -(-height // s) * -(-width // s) < patches:
            return None
    return None


def tokens_to_grid(tokens: torch.Tensor, prefix: int, height: int, width: int) -> torch.Tensor:
    """``[N, T, D]`` tokens -> ``[N, D, h, w]`` patch grid (prefix tokens dropped)."""
    patches = tokens[:, prefix:]
    grid = patch_grid(patches.shape[1], height, width)
    if grid is None:
        raise SalienceError(f"{patches.shape[1]} patch tokens do not tile a {height}x{width} input")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
