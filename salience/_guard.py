"""Leave the user's model exactly as it was: mode, ``requires_grad`` flags and hooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@contextmanager
def model_guard(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with frozen parameters; restore both on exit, even on error.

    Freezing parameters skips their weight gradients, which makes input gradients cheaper,
    and never touches ``.grad``.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


class Hooks:
    """Removable hook handles owned by one object; removed on ``__exit__``, errors propagate."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def add(self, handle: RemovableHandle) -> None:
        self._handles.append(handle)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def hook_count(model: nn.Module) -> int:
    """Number of hooks registered on ``model`` and its submodules (for leak checks)."""
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
        ):
            total += len(getattr(m, attr, {}) or {})
    return total


def tensor_snapshot(t: torch.Tensor) -> tuple[torch.Tensor, bool, torch.Tensor | None]:
    """A copy of a tensor's value, ``requires_grad`` and ``.grad`` for no-mutation checks."""
    grad = t.grad.detach().clone() if t.grad is not None else None
    return t.detach().clone(), t.requires_grad, grad
