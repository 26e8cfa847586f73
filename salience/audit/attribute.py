"""Stage 4: logits and saliency maps for a batch, resized to the map size.

The predicted class is what every map explains. To avoid a forward pass only for the
prediction, :class:`LogitTap` records the model's outputs on the clean batch while the first
method runs (every method evaluates the clean images at least once); only if it did not see
every image is a separate forward pass made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.methods import Attribution
from salience.outputs import select_output


class LogitTap:
    """Forward hook on the model keeping its output for rows that *are* the clean batch
    (same storage, shape and strides), e.g. ``x[a:b]`` or ``x.detach()``."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        self.rows: dict[int, torch.Tensor] = {}
        self._handle: Any = None
        self._row_bytes = x.stride(0) * x.element_size()

    def _hook(self, _m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if not args or not isinstance(args[0], torch.Tensor):
            return
        inp = args[0]
        if inp.shape[1:] != self.x.shape[1:] or inp.stride() != self.x.stride():
            return
        if inp.device != self.x.device or inp.dtype != self.x.dtype:
            return
        offset = inp.data_ptr() - self.x.data_ptr()
        if (
            offset < 0
            or offset % self._row_bytes
            or inp.untyped_storage().data_ptr() != (self.x.untyped_storage().data_ptr())
        ):
            return
        first = offset // self._row_bytes
        if first + inp.shape[0] > self.x.shape[0]:
            return
        try:
            logits = select_output(out, None)
        except SalienceError:
            return  # the method's own forward call will report it
        for i, row in enumerate(logits.detach()):
            self.rows.setdefault(first + i, row.clone())

    def __enter__(self) -> LogitTap:
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def logits(self) -> torch.Tensor | None:
        if len(self.rows) < self.x.shape[0]:
            return None
        return torch.stack([self.rows[i] for i in range(self.x.shape[0])])


@dataclass
class Attributed:
    """One batch through the model: logits ``[N, K]`` and per method maps ``[N, h, w]``
    (None with an error message when the method failed on this batch)."""

    logits: torch.Tensor
    maps: dict[str, torch.Tensor | None]
    errors: dict[str, str | None]


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, H, W]`` -> ``[N, h, w]`` (bilinear, antialiased when shrinking), float32."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    shrink = size[0] < maps.shape[-2] or size[1] < maps.shape[-1]
    return F.interpolate(
        maps[:, None], size=size, mode="bilinear", align_corners=False, antialias=shrink
    )[:, 0]


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with model_guard(model), torch.no_grad():
        return select_output(model(x), None)


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    methods: dict[str, Attribution],
    map_size: tuple[int, int],
) -> Attributed:
    """Run every method on ``x`` explaining the predicted class. A :class:`SalienceError`
    (a wrong setup) stops the audit; any other failure is recorded for this batch only."""
    maps: dict[str, torch.Tensor | None] = {}
    errors: dict[str, str | None] = {}
    logits: torch.Tensor | None = None
    for i, (name, method) in enumerate(methods.items()):
        target = None if logits is None else logits.argmax(1)
        try:
            if i == 0:
                with LogitTap(model, x) as tap:
                    raw = method.explain(model, x, target)
                logits = tap.logits()
            else:
                raw = method.explain(model, x, target)
            maps[name], errors[name] = resize_maps(raw.detach(), map_size), None
        except SalienceError:
            raise
        except Exception as exc:  # recorded per batch; the run goes on
            maps[name], errors[name] = None, f"method failed: {type(exc).__name__}: {exc}"
        if logits is None:
            logits = forward(model, x)
    if logits is None:
        logits = forward(model, x)
    return Attributed(logits.detach().float(), maps, errors)
