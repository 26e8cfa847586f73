"""Reading a vision transformer's attention probabilities without reshape code.

Three families are recognised, each with the one change that makes it hand out per-head
probabilities ``softmax(q k^T / sqrt(d))`` while they stay on the autograd graph; every change
is undone on exit, also after an error:

- torchvision (``nn.MultiheadAttention``, called with ``need_weights=False``): a forward
  pre-hook asks for per-head weights; the hook keeps the tensor the attention multiplies ``v``
  with (the returned weights are a view of it).
- timm (``Attention`` modules with a ``fused_attn`` flag, ViT/DeiT/EVA-style): the flag is
  switched off so the probabilities pass through ``attn_drop``, whose output is hooked.
- Hugging Face (attention modules with ``config`` and ``num_attention_heads``, ViT/DeiT): the
  config is switched to eager attention, which returns the probabilities.

The token layout (class, distillation and register tokens, non-square grids) is the one the
CAMs use (:func:`salience.models.layers.token_prefix`). Windowed attention (Swin) has no
token-to-token attention over the whole image and is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from salience._guard import Hooks
from salience.errors import UnsupportedModelError
from salience.models.layers import token_prefix

Kind = Literal["torchvision", "timm", "transformers"]


@dataclass(frozen=True)
class AttentionBlocks:
    """The attention modules of a transformer, in forward order, and the token rows its
    classifier reads (class and distillation tokens); ``None``: the mean of the patch tokens."""

    modules: tuple[nn.Module, ...]
    kind: Kind
    readout: tuple[int, ...] | None


@dataclass(frozen=True)
class Attention:
    """One block's probabilities: ``node`` is the tensor on the graph (for gradients),
    ``heads`` the same values as ``[N, heads, T, T]``."""

    node: torch.Tensor
    shape: tuple[int, ...]

    @property
    def heads(self) -> torch.Tensor:
        return self.node.detach().reshape(self.shape)

    def grad_heads(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(self.shape)


def find_attention(model: nn.Module) -> AttentionBlocks | None:
    """The model's attention blocks (see the module docstring), or None for a model without."""
    found: list[nn.Module] = []
    kind: Kind | None = None
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            found.append(m)
            kind = kind or "torchvision"
        elif hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Dropout):
            found.append(m)
            kind = kind or "timm"
        elif hasattr(m, "num_attention_heads") and hasattr(
            getattr(m, "config", None), "_attn_implementation"
        ):
            found.append(m)
            kind = kind or "transformers"
    if kind is None:
        return None
    return AttentionBlocks(tuple(found), kind, _readout(model))


def _readout(model: nn.Module) -> tuple[int, ...] | None:
    """Rows of the token sequence the classifier reads: timm's and Hugging Face's distilled
    DeiT read the class and the distillation token, an average-pooled timm ViT the patches."""
    if any(
        hasattr(m, "head_dist") or hasattr(m, "distillation_classifier") for m in model.modules()
    ):
        return (0, 1)
    if getattr(model, "global_pool", "token") not in ("token", None, ""):
        return None
    if getattr(model, "num_prefix_tokens", 1) == 0:
        return None
    return (0,)


def require_attention(model: nn.Module, method: str) -> AttentionBlocks:
    blocks = find_attention(model)
    if blocks is None:
        raise UnsupportedModelError(
            f"{method} needs a transformer with attention blocks; this model has none"
        )
    return blocks


@contextmanager
def recorded_attention(blocks: AttentionBlocks) -> Iterator[list[Attention]]:
    """While open, each forward pass appends every block's :class:`Attention` to the list."""
    store: list[Attention] = []
    with ExitStack() as stack:
        hooks = stack.enter_context(Hooks())
        for m in blocks.modules:
            if blocks.kind == "torchvision":
                hooks.add(m.register_forward_pre_hook(_need_weights, with_kwargs=True))
                hooks.add(m.register_forward_hook(_keep_weights(store)))
            elif blocks.kind == "timm":
                stack.enter_context(_attribute(m, "fused_attn", False))
                dropout = m.get_submodule("attn_drop")
                hooks.add(dropout.register_forward_hook(_keep_output(store)))
            else:
                stack.enter_context(_attribute(m.config, "_attn_implementation_internal", "eager"))
                hooks.add(m.register_forward_hook(_keep_second(store)))
        yield store


@contextmanager
def _attribute(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


_MHA_ARGS = ("key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")


def _need_weights(
    _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``nn.MultiheadAttention`` called for per-head weights (arguments after the query, key and
    value passed by name, so that none is lost)."""
    named = dict(zip(_MHA_ARGS, args[3:], strict=False))
    return tuple(args[:3]), {**named, **kwargs, "need_weights": True, "average_attn_weights": False}


def _keep_weights(store: list[Attention]) -> Any:
    def hook(_m: nn.Module, _i: object, out: tuple[torch.Tensor, torch.Tensor]) -> None:
        weights = out[1]
        node = weights._base if weights._base is not None else weights  # what multiplied v
        store.append(Attention(node, tuple(weights.shape)))

    return hook


def _keep_output(store: list[Attention]) -> Any:
    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        store.append(Attention(out, tuple(out.shape)))

    return hook


def _keep_second(store: list[Attention]) -> Any:
    def hook(_m: nn.Module, _i: object, out: tuple[torch.Tensor | None, ...]) -> None:
        if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
            store.append(Attention(out[1], tuple(out[1].shape)))

    return hook


def token_prefix_of(
    model: nn.Module, maps: list[Attention], n: int, height: int, width: int, method: str
) -> int:
    """The number of leading non-patch tokens in recorded attention for ``n`` images; refuses
    windowed or otherwise non-global attention in one line."""
    if not maps:
        raise UnsupportedModelError(
            f"{method} found attention blocks that do not report their probabilities"
        )
    shape = maps[0].shape
    tokens = shape[-1]
    if any(a.shape != shape for a in maps) or len(shape) != 4 or shape[0] != n:
        raise UnsupportedModelError(
            f"{method} needs attention over all tokens of the image in every block; this model "
            "attends within windows or over changing token sets (e.g. Swin): use gradcam"
        )
    return token_prefix(model, tokens, height, width)
