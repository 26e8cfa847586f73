"""Shared pieces of the metrics: input checks, targets, explainers, order; forward-only scoring
is :mod:`salience.methods.scoring`, which :func:`forward_rows` configures for the metrics."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.methods._base import Attribution, check_batch
from salience.methods.scoring import class_scores, logits_of, predict, score_rows
from salience.models.layers import module_name
from salience.outputs import OutputSelector
from salience.targets import ClassTarget, as_target

ClassesLike = None | int | Sequence[int] | torch.Tensor
ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
MethodLike = str | Attribution | ExplainFn


def as_map(saliency: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Saliency as ``[N, H, W]`` float on x's device; ``[N, C, H, W]`` maps are summed over C."""
    if not isinstance(saliency, torch.Tensor):
        raise SalienceError(f"saliency must be a torch.Tensor, got {type(saliency).__name__}")
    s = saliency.detach()
    if s.ndim == 4:
        s = s.sum(1)
    if s.ndim != 3:
        raise SalienceError(f"saliency must have shape [N, H, W], got {tuple(saliency.shape)}")
    if x is not None:
        if s.shape[0] != x.shape[0] or s.shape[-2:] != x.shape[-2:]:
            raise SalienceError(
                f"saliency {tuple(s.shape)} does not match the images {tuple(x.shape)}; maps must "
                "be one per image at input resolution (salience.explain returns them so)"
            )
        s = s.to(device=x.device, dtype=x.dtype)
    if not bool(torch.isfinite(s).all()):
        raise SalienceError("saliency contains NaN or infinite values")
    return s


def as_masks(masks: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    """Ground truth as boolean ``[N, H, W]``: masks, or boxes ``[N, 4]`` as
    ``(x_min, y_min, x_max, y_max)`` in pixels with exclusive maxima."""
    m = torch.as_tensor(masks)
    if m.ndim == 2 and m.shape == (n, 4):
        boxes = m.round().long().cpu()
        out = torch.zeros(n, height, width, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            out[i, max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = True
        return out
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or tuple(m.shape) != (n, height, width):
        raise SalienceError(
            f"masks must be [N, H, W] = {(n, height, width)} or boxes [N, 4], got {tuple(m.shape)}"
        )
    return m.bool() if m.dtype == torch.bool else m > 0.5


def resolve_classes(
    model: nn.Module,
    x: torch.Tensor,
    target: ClassesLike,
    output: OutputSelector = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """One class index per image; ``None`` is the class the model predicts for the clean image."""
    if target is None:
        return predict(model, x, output, batch_size).argmax(1)
    resolved = as_target(target, x.shape[0])
    if not isinstance(resolved, ClassTarget):
        raise SalienceError("metrics need class indices as target (an int or one int per image)")
    return resolved.classes.to(x.device)


def forward_rows(
    model: nn.Module,
    count: int,
    make_rows: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    softmax: bool,
    output: OutputSelector,
    step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score ``count`` perturbed rows built ``step`` at a time by ``make_rows(a, b) -> (inputs,
    classes)`` with :func:`~salience.methods.scoring.score_rows` under ``inference_mode``.
    Returns target scores and predicted classes."""
    return score_rows(
        lambda rows: logits_of(model, rows, output),
        count,
        make_rows,
        lambda logits, classes: class_scores(logits, classes, softmax),
        step,
        inference=True,
    )


def explainer(
    method: MethodLike,
    method_params: dict[str, Any] | None = None,
    output: OutputSelector = None,
) -> ExplainFn:
    """A function ``(model, x, classes) -> [N, H, W]`` from a method name, instance or callable.

    A CAM ``layer`` given as a module is turned into its dotted name on first use, so the same
    explainer also works on deep copies of the model (the randomization tests)."""
    params = dict(method_params or {})
    if isinstance(method, str):
        from salience.methods import build_method

        method = build_method(method, **params)
    elif params:
        raise SalienceError("method_params only applies when method is given by name")
    if isinstance(method, Attribution):
        inst = copy.copy(method)  # its layer may be rewritten below; the caller's stays as is

        def run(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
            layer = getattr(inst, "layer", None)
            if isinstance(layer, nn.Module):
                setattr(inst, "layer", module_name(model, layer))  # noqa: B010
            return inst.explain(model, x, classes, output=output)

        return run
    if callable(method):
        fn = method

        def call(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
            return as_map(fn(model, x, classes), x)

        return call
    raise SalienceError(
        f"method must be a method name, an Attribution or a callable, got {method!r}"
    )


def trained_maps(
    model: nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    explain: ExplainFn,
    saliency: torch.Tensor | None,
    seed: int,
) -> torch.Tensor:
    """The maps of ``x`` on the unchanged model: ``saliency`` when the caller has them (computed
    with the same method and ``seed``), else explained here under that seed."""
    if saliency is not None:
        return as_map(saliency, x)
    from salience.metrics._registry import seeded

    with seeded(seed):
        return explain(model, x, classes)


def method_name(method: MethodLike) -> str:
    if isinstance(method, str):
        return method
    if isinstance(method, Attribution):
        return method.name
    return getattr(method, "__name__", type(method).__name__)


def descending_order(values: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per-row indices from the largest value down, ties broken uniformly at random."""
    perm = torch.rand(values.shape, generator=generator, device=values.device).argsort(dim=1)
    shuffled = values.gather(1, perm)
    idx = torch.sort(shuffled, dim=1, descending=True, stable=True).indices
    return perm.gather(1, idx)


def ranks(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: ``ranks[i, order[i, k]] = k``."""
    out = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return out.scatter_(1, order, positions)


def generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


__all__ = [
    "ClassesLike",
    "ExplainFn",
    "MethodLike",
    "as_map",
    "as_masks",
    "check_batch",
    "descending_order",
    "explainer",
    "forward_rows",
    "generator",
    "method_name",
    "model_guard",
    "ranks",
    "resolve_classes",
    "trained_maps",
]
