"""The clean pass: one forward (and maybe one backward) of the unperturbed batch that several
methods finish from.

A :class:`Sharing` method asks the pass for what it needs (a layer's activations, the input
gradient) and turns each chunk of the result into its attribution in :meth:`Sharing.finish`.
Alone, a method runs the pass for itself; in :func:`explain_many`, methods with equal
:meth:`Sharing.shares` keys run it once per chunk for all of them (e.g. one backward for the
five gradient CAMs and the input gradient). Each method sees the same tensors as alone and runs
the same operations on them, so its maps are the same as alone.

Layer activations are captured by a forward hook. Where the layer's output is not yet part of
a graph (nothing below it needs a gradient) it is re-rooted as a fresh leaf, so the backward
stops at the layer; where it is (the input gradient is wanted too), the gradient is taken with
respect to the output itself, in the same backward as the input's.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from salience._guard import Hooks, model_guard
from salience.errors import SalienceError
from salience.methods._base import (
    REDUCTIONS,
    Attribution,
    ExplainJob,
    Reduce,
    check_batch,
    format_map,
)
from salience.methods.batching import Kind, spans
from salience.models.layers import CamLayer
from salience.outputs import OutputSelector
from salience.targets import TargetLike, as_target

SHARE_ENV = "SALIENCE_SHARED_PASSES"  # "0": every method runs its own passes (benchmarks, tests)


@dataclass
class Captured:
    """Layer activations ``[N, C, h, w]``, their gradients (or None), and the target scores."""

    acts: torch.Tensor
    grads: torch.Tensor | None
    scores: torch.Tensor


@dataclass
class Chunk:
    """Rows ``start:stop`` of the clean batch after the pass: the inputs, their image index,
    target scores, the input gradient (if asked for) and each asked-for layer's capture."""

    start: int
    stop: int
    x: torch.Tensor
    index: torch.Tensor
    scores: torch.Tensor
    input_grad: torch.Tensor | None
    layers: dict[CamLayer, Captured]


class Sharing(Attribution):
    """A method computed from the clean pass; subclasses say what they need and ``finish``."""

    needs_grad: ClassVar[bool] = True  # a backward pass (else forward only)
    needs_input_grad: ClassVar[bool] = False

    def capture_layer(self, job: ExplainJob) -> CamLayer | None:
        """The layer whose activations (and gradients) this method needs, if any."""
        return None

    def shares(self) -> Hashable:
        """Methods with equal keys share one pass (the chunking and kind of pass must agree)."""
        return (self.needs_grad, self.batch_size)

    @abstractmethod
    def finish(self, chunk: Chunk, job: ExplainJob, layer: CamLayer | None) -> torch.Tensor:
        """This method's attribution for one chunk of the batch."""

    def combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The attribution of the whole batch from the chunks'."""
        return torch.cat(parts)

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        return run_shared([self], job)[0]


def run_shared(methods: Sequence[Sharing], job: ExplainJob) -> list[torch.Tensor]:
    """The attributions of ``methods`` (with one :meth:`~Sharing.shares` key) from one pass."""
    grad = methods[0].needs_grad
    layers = [m.capture_layer(job) for m in methods]
    wanted = list(dict.fromkeys(layer for layer in layers if layer is not None))
    input_grad = any(m.needs_input_grad for m in methods)
    index = job.rows()
    kind: Kind = "backward" if grad else "forward"
    parts: list[list[torch.Tensor]] = [[] for _ in methods]
    for a, b in spans(job.n, job.chunk(kind)):
        chunk = clean_pass(job, a, b, index[a:b], wanted, grad=grad, input_grad=input_grad)
        for part, method, layer in zip(parts, methods, layers, strict=True):
            part.append(method.finish(chunk, job, layer))
    return [m.combine(part) for m, part in zip(methods, parts, strict=True)]


def clean_pass(
    job: ExplainJob,
    a: int,
    b: int,
    index: torch.Tensor,
    layers: Sequence[CamLayer],
    *,
    grad: bool,
    input_grad: bool,
) -> Chunk:
    """Rows ``a:b`` forward with ``layers`` recorded; with ``grad``, d(score)/d(each layer's
    output) and, with ``input_grad``, d(score)/d(input), all in one backward."""
    x = job.x[a:b]
    inputs = x.detach().requires_grad_(True) if input_grad else x
    store: dict[CamLayer, torch.Tensor] = {}

    def recorder(layer: CamLayer) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
            kept = out if out.requires_grad else out.detach().requires_grad_(grad)
            store.setdefault(layer, kept)
            return kept.clone()  # later in-place ops (e.g. ReLU(inplace=True)) must not hit it

        return hook

    with Hooks() as hooks, torch.set_grad_enabled(grad):
        for layer in layers:
            hooks.add(layer.module.register_forward_hook(recorder(layer)))
        logits = job.logits(inputs)
        hooks.remove()
        scores = job.target_scores(logits, index, clean=True)
        outs = [store[layer] for layer in layers]
        found = _gradients(scores, inputs if input_grad else None, outs, layers) if grad else None
    input_gradient, layer_grads = found if found is not None else (None, [None] * len(layers))
    h, w = x.shape[-2:]
    captured = {
        layer: Captured(
            layer.maps(store[layer].detach(), h, w),
            None if g is None else layer.maps(g, h, w),
            scores.detach(),
        )
        for layer, g in zip(layers, layer_grads, strict=True)
    }
    return Chunk(a, b, x, index, scores.detach(), input_gradient, captured)


def _gradients(
    scores: torch.Tensor,
    inputs: torch.Tensor | None,
    outs: list[torch.Tensor],
    layers: Sequence[CamLayer],
) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """d(summed scores)/d(inputs) (None without inputs) and d/d(each of outs), one backward."""
    wrt = ([] if inputs is None else [inputs]) + outs
    if not scores.requires_grad:
        found: tuple[torch.Tensor | None, ...] = (None,) * len(wrt)
    else:
        found = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
    for layer, g in zip(layers, found[len(found) - len(outs) :], strict=True):
        if g is None:
            _not_on_path(layer)
    if inputs is not None and found[0] is None:
        raise RuntimeError("the target score does not depend on the input")
    return (None if inputs is None else found[0]), list(found[len(found) - len(outs) :])


def _not_on_path(layer: CamLayer) -> None:
    raise SalienceError(
        f"the target score does not depend on layer {layer.name!r}; pick a layer on the "
        "path to the output"
    )


def sharing_enabled() -> bool:
    """False where ``SALIENCE_SHARED_PASSES=0`` (to measure or test methods run alone)."""
    return os.environ.get(SHARE_ENV, "1") != "0"


def share_groups(
    methods: Mapping[str, Attribution], share: bool | None = None
) -> list[dict[str, Attribution]]:
    """``methods`` split into groups that run together: methods sharing a pass, else alone;
    in order of each group's first method. ``share=None`` follows ``SALIENCE_SHARED_PASSES``."""
    share = sharing_enabled() if share is None else share
    groups: dict[Hashable, dict[str, Attribution]] = {}
    for name, method in methods.items():
        key: Hashable = (
            ("shared", method.shares())
            if share and isinstance(method, Sharing)
            else ("alone", name)
        )
        groups.setdefault(key, {})[name] = method
    return list(groups.values())


def explain_many(
    model: nn.Module,
    x: torch.Tensor,
    methods: Mapping[str, Attribution] | Sequence[Attribution],
    target: TargetLike = None,
    *,
    reduce: Reduce = "sum",
    output: OutputSelector = None,
    share: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Maps of several methods for batch ``x``, by name (a mapping's keys, else each method's
    ``name``), each as :meth:`Attribution.explain` returns it; methods that can share a pass
    (the gradient CAMs, gradient and input x gradient) run it once per chunk.
    ``share=False`` runs every method alone (``None``: unless ``SALIENCE_SHARED_PASSES=0``)."""
    named = dict(methods) if isinstance(methods, Mapping) else _by_name(methods)
    check_batch(x)
    if reduce not in REDUCTIONS:
        raise SalienceError(f"unknown reduce {reduce!r}; choose one of: {', '.join(REDUCTIONS)}")
    raw: dict[str, torch.Tensor] = {}
    with model_guard(model):
        for group in share_groups(named, share):
            first = next(iter(group.values()))
            job = ExplainJob(
                model, x.detach(), as_target(target, x.shape[0]), output, first.batch_size
            )
            if len(group) == 1:
                raw[next(iter(group))] = first.attribute(job)
            else:
                found = run_shared([m for m in group.values() if isinstance(m, Sharing)], job)
                raw.update(zip(group, found, strict=True))
    return {name: format_map(raw[name], x, reduce) for name in named}


def _by_name(methods: Sequence[Attribution]) -> dict[str, Attribution]:
    named: dict[str, Attribution] = {}
    for method in methods:
        if method.name in named:
            raise SalienceError(
                f"method {method.name} given twice; pass a mapping with a name for each"
            )
        named[method.name] = method
    return named
