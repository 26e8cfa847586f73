"""Chunk sizes for methods and metrics that run many rows per image (steps, samples, masks).

One helper decides how many rows go through the model at once: an explicit ``batch_size``
always wins; otherwise the size is derived from the measured activation memory of one sample
and the memory available on the device. On CPUs, large batches do not run faster
(``benchmarks/attribution.py`` sweeps it), so the CPU cap is small.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Literal

import psutil
import torch
from torch import nn

Kind = Literal["forward", "backward"]

_CPU_CAP: dict[Kind, int] = {"forward": 32, "backward": 16}
_GPU_CAP: dict[Kind, int] = {"forward": 512, "backward": 256}
_activation_bytes: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], int]] = (
    weakref.WeakKeyDictionary()
)


def activation_bytes(model: nn.Module, sample: torch.Tensor) -> int:
    """Bytes of all leaf-module outputs for one sample, measured once per model and shape."""
    key = (tuple(sample.shape[1:]), sample.dtype, sample.device.type)
    cache = _activation_bytes.setdefault(model, {})
    if key in cache:
        return cache[key]
    if isinstance(model, torch.jit.ScriptModule):  # no hooks on TorchScript: assume a big CNN
        cache[key] = 256 * sample[:1].numel() * sample.element_size()
        return cache[key]
    total = 0

    def count(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        for h in handles:
            h.remove()
    cache[key] = max(total, sample[:1].numel() * sample.element_size())
    return cache[key]


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def chunk_size(
    model: nn.Module, sample: torch.Tensor, kind: Kind, batch_size: int | None = None
) -> int:
    """Rows per pass: ``batch_size`` if given, else what fits in a share of free memory."""
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return batch_size
    per_row = activation_bytes(model, sample) * (3 if kind == "backward" else 1)
    budget = available_bytes(sample.device) // (2 if sample.device.type == "cuda" else 4)
    cap = (_CPU_CAP if sample.device.type == "cpu" else _GPU_CAP)[kind]
    return int(max(1, min(cap, budget // max(per_row, 1))))


def spans(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(total)`` in steps of ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)
