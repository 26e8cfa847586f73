"""Stage 4: logits and saliency maps for a batch, resized to the map size.

:func:`attribute_each` is what the audit calls: where the batch fails (the model's forward, or
a method) it retries one image at a time, so that one bad image costs only its own row.

The predicted class is what every map explains. To avoid a forward pass only for the
prediction, :class:`LogitTap` records the model's outputs on the clean batch while the first
method (or group of methods sharing a pass) runs; most methods evaluate the clean images at
least once. Only if it did not see every image is a separate forward pass made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.methods import Attribution, explain_many, share_groups
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
    """Run every method on ``x`` explaining the predicted class; methods that share a pass
    run it once (:func:`~salience.methods.explain_many`). A :class:`SalienceError` (a wrong
    setup) stops the audit; any other failure is recorded for this batch only."""
    maps: dict[str, torch.Tensor | None] = {}
    errors: dict[str, str | None] = {}
    logits: torch.Tensor | None = None
    for i, group in enumerate(share_groups(methods)):
        target = None if logits is None else logits.argmax(1)
        if i == 0:
            with LogitTap(model, x) as tap:
                found = _explain_group(model, x, group, target)
            logits = tap.logits()
        else:
            found = _explain_group(model, x, group, target)
        for name, (raw, error) in found.items():
            maps[name] = None if raw is None else resize_maps(raw.detach(), map_size)
            errors[name] = error
        if logits is None:
            logits = forward(model, x)
    if logits is None:
        logits = forward(model, x)
    return Attributed(logits.detach().float(), maps, errors)


def _explain_group(
    model: nn.Module, x: torch.Tensor, group: dict[str, Attribution], target: Any
) -> dict[str, tuple[torch.Tensor | None, str | None]]:
    """Maps (or None and why) of methods sharing a pass; if the shared run fails, each method
    runs alone, so that only the failing ones are recorded."""
    try:
        return {n: (m, None) for n, m in explain_many(model, x, group, target).items()}
    except SalienceError:
        raise
    except Exception as exc:  # recorded per batch; the run goes on
        if len(group) == 1:
            return {name: (None, failure("method failed", exc)) for name in group}
    found: dict[str, tuple[torch.Tensor | None, str | None]] = {}
    for name, method in group.items():
        try:
            found[name] = (method.explain(model, x, target), None)
        except SalienceError:
            raise
        except Exception as exc:
            found[name] = (None, failure("method failed", exc))
    return found


def failure(kind: str, exc: BaseException) -> str:
    """``"<kind>: <Type>: <message>"`` on one line (long messages are cut)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{kind}: {type(exc).__name__}: {text}" if text else f"{kind}: {type(exc).__name__}"


@dataclass
class PerImage:
    """A batch through the model, image by image where needed: logits ``[N, K]`` and per
    method maps ``[N, h, w]``, with NaN rows (and the reason) where the model or a method
    failed on an image. ``K`` is 0 when the model failed on every image."""

    logits: torch.Tensor
    maps: dict[str, torch.Tensor]
    model_errors: dict[int, str]  # image -> why the model failed on it
    errors: dict[str, dict[int, str]]  # method -> image -> why the method failed on it


def attribute_each(
    model: nn.Module,
    x: torch.Tensor,
    methods: dict[str, Attribution],
    map_size: tuple[int, int],
) -> PerImage:
    """:func:`attribute` on the batch; if the model fails on it, each image alone; if a
    method fails on it, that method on each image alone (same target: the prediction)."""
    n = len(x)
    try:
        whole = attribute(model, x, methods, map_size)
    except SalienceError:
        raise
    except Exception as exc:  # the model's forward failed on this batch
        if n > 1:
            alone = [attribute_each(model, x[i : i + 1], methods, map_size) for i in range(n)]
            return _stack(alone)
        nan = torch.full((1, *map_size), float("nan"), device=x.device)
        return PerImage(
            torch.full((1, 0), float("nan"), device=x.device),
            dict.fromkeys(methods, nan),
            {0: failure("model failed", exc)},
            {m: {} for m in methods},
        )
    target = whole.logits.argmax(1)
    maps: dict[str, torch.Tensor] = {}
    errors: dict[str, dict[int, str]] = {}
    for name, found in whole.maps.items():
        if found is not None:
            maps[name], errors[name] = found, {}
        else:
            why = whole.errors[name] or "method failed"
            maps[name], errors[name] = _one_by_one(model, x, target, methods[name], map_size, why)
    return PerImage(whole.logits, maps, {}, errors)


def _one_by_one(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    method: Attribution,
    map_size: tuple[int, int],
    reason: str,
) -> tuple[torch.Tensor, dict[int, str]]:
    """A method that failed on the batch, on each image alone: maps with NaN rows, reasons."""
    out = torch.full((len(x), *map_size), float("nan"), device=x.device)
    if len(x) == 1:
        return out, {0: reason}
    errors: dict[int, str] = {}
    for i in range(len(x)):
        try:
            raw = method.explain(model, x[i : i + 1], target[i : i + 1])
            out[i] = resize_maps(raw.detach(), map_size)[0]
        except SalienceError:
            raise
        except Exception as exc:
            errors[i] = failure("method failed", exc)
    return out, errors


def _stack(parts: list[PerImage]) -> PerImage:
    k = max(p.logits.shape[1] for p in parts)
    logits = [
        p.logits if p.logits.shape[1] == k else p.logits.new_full((1, k), float("nan"))
        for p in parts
    ]
    methods = list(parts[0].maps)
    return PerImage(
        torch.cat(logits),
        {m: torch.cat([p.maps[m] for p in parts]) for m in methods},
        {i: p.model_errors[0] for i, p in enumerate(parts) if p.model_errors},
        {m: {i: p.errors[m][0] for i, p in enumerate(parts) if p.errors[m]} for m in methods},
    )
