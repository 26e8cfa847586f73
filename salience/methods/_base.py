"""The attribution template: normalise inputs and target, guard the model, compute, format."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.jsonsafe import describe
from salience.methods.batching import Kind, chunk_size
from salience.methods.scoring import Build, clean_logits, logits_of, score_rows, target_scores
from salience.outputs import OutputSelector
from salience.targets import PredictedTarget, Target, TargetLike, as_target, resolve_predicted

Reduce = Literal["sum", "abs_sum", "abs_max", "none"]
REDUCTIONS: tuple[str, ...] = ("sum", "abs_sum", "abs_max", "none")


@dataclass
class ExplainJob:
    """One explanation job as methods see it: a guarded model, a clean batch and its target."""

    model: nn.Module
    x: torch.Tensor  # [N, C, H, W], detached
    target: Target
    output: OutputSelector = None
    batch_size: int | None = None
    _chunks: dict[Kind, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model, inputs, self.output)

    def chunk(self, kind: Kind) -> int:
        """Rows per pass for this model and input size (see :mod:`salience.methods.batching`)."""
        if kind not in self._chunks:
            self._chunks[kind] = chunk_size(self.model, self.x, kind, self.batch_size)
        return self._chunks[kind]

    def resolve_target(self, logits: torch.Tensor | None = None) -> Target:
        """Fix the predicted class from ``logits`` of the clean batch (or a no-grad forward)."""
        if isinstance(self.target, PredictedTarget):
            if logits is None:
                logits = clean_logits(self.logits, self.x, self.chunk("forward"))
            self.target = resolve_predicted(self.target, logits)
        return self.target

    def rows(self, repeats: int = 1) -> torch.Tensor:
        """Image index of each row when every image is repeated ``repeats`` times in a block."""
        return torch.arange(self.n, device=self.x.device).repeat_interleave(repeats)

    def target_scores(self, logits: torch.Tensor, index: torch.Tensor, clean: bool) -> torch.Tensor:
        """Scores of ``logits`` rows; ``clean`` rows are unperturbed images, so a predicted
        target is their own argmax and needs no extra forward pass."""
        if clean and isinstance(self.target, PredictedTarget):
            return logits.gather(1, logits.detach().argmax(1, keepdim=True)).squeeze(1)
        return self.resolve_target().scores(logits, index)

    def input_gradient(
        self, inputs: torch.Tensor, index: torch.Tensor, clean: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of each row's target score w.r.t. that row, and the scores."""
        inp = inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            scores = self.target_scores(self.logits(inp), index, clean)
            (grad,) = torch.autograd.grad(scores.sum(), inp)
        return grad, scores.detach()

    def clean_scores(self, probs: bool = False) -> torch.Tensor:
        """Scores ``[N]`` of the unperturbed images; resolves a predicted target from the same
        pass. ``probs``: softmax probabilities instead of logits."""
        logits = clean_logits(self.logits, self.x, self.chunk("forward"))
        return target_scores(logits, self.resolve_target(logits), self.rows(), probs)

    def perturbed_scores(self, total: int, build: Build, probs: bool = False) -> torch.Tensor:
        """Target scores of ``total`` perturbed rows, forward only; ``build(a, b)`` returns rows
        ``a..b-1`` and their image indices, so only one chunk of copies exists at a time."""
        target = self.resolve_target()
        scores, _ = score_rows(
            self.logits,
            total,
            build,
            lambda logits, index: target_scores(logits, target, index, probs),
            self.chunk("forward"),
        )
        return scores

    def scores(
        self, inputs: torch.Tensor, index: torch.Tensor, probs: bool = False
    ) -> torch.Tensor:
        """Target scores of the perturbed rows ``inputs`` (``index[m]``: row m's image)."""
        return self.perturbed_scores(inputs.shape[0], lambda a, b: (inputs[a:b], index[a:b]), probs)


class Attribution(ABC):
    """Base class of every method. Subclasses set the class attributes and ``attribute``.

    ``attribute`` returns either input-space attributions ``[N, C, H, W]`` or a single-channel
    map ``[N, h, w]`` at any resolution; :meth:`explain` reduces channels and upsamples.
    """

    name: ClassVar[str]
    # "gradient", "cam", "perturbation", "relevance", "attention" or "control"
    family: ClassVar[str]
    signed: ClassVar[bool]
    passes: ClassVar[str]  # cost per image, e.g. "1 fwd+bwd" or "steps fwd+bwd"
    stochastic: ClassVar[bool] = False
    needs: ClassVar[str] = ""  # what a model must have for this method; "": any classifier

    @classmethod
    def unsupported(cls, model: nn.Module) -> str | None:
        """Why this method cannot explain ``model`` (the one-line error it would raise), found
        without running the model; None when it applies. Defaults choose methods with it."""
        return None

    def __init__(self, *, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    @abstractmethod
    def attribute(self, job: ExplainJob) -> torch.Tensor:
        """Compute the raw attribution for ``job.x`` (see the class docstring for shapes)."""

    def explain(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: TargetLike = None,
        *,
        reduce: Reduce = "sum",
        output: OutputSelector = None,
    ) -> torch.Tensor:
        """Explain ``target`` for the batch ``x``; returns ``[N, H, W]`` float32 on x's device."""
        check_batch(x)
        if reduce not in REDUCTIONS:
            raise SalienceError(
                f"unknown reduce {reduce!r}; choose one of: {', '.join(REDUCTIONS)}"
            )
        job = ExplainJob(model, x.detach(), as_target(target, x.shape[0]), output, self.batch_size)
        with model_guard(model):
            raw = self.attribute(job)
        return format_map(raw, x, reduce)

    def params(self) -> dict[str, Any]:
        """This instance's parameters, as recorded in run manifests and metric results."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ]
        return {n: describe(getattr(self, n, None)) for n in names}


def check_batch(x: torch.Tensor) -> None:
    """Reject inputs that cannot be explained, with the reason and the fix."""
    if not isinstance(x, torch.Tensor):
        raise SalienceError(f"x must be a torch.Tensor [N, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise SalienceError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise SalienceError(
            f"x must be a floating-point tensor, got {x.dtype}; preprocess it first"
        )
    if x.shape[0] == 0:
        raise SalienceError("x is an empty batch")
    if not bool(torch.isfinite(x).all()):
        raise SalienceError("x contains NaN or infinite values; check the preprocessing")


def format_map(raw: torch.Tensor, x: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    """Reduce channels and resize to x's resolution; float32 on x's device, never normalised."""
    size = tuple(x.shape[-2:])
    if raw.ndim == 4:
        if reduce == "none":
            out = raw
        elif reduce == "sum":
            out = raw.sum(1)
        elif reduce == "abs_sum":
            out = raw.abs().sum(1)
        else:
            out = raw.abs().amax(1)
    elif raw.ndim == 3:
        out = raw.unsqueeze(1) if reduce == "none" else raw
    else:
        raise RuntimeError(f"attribution has unexpected shape {tuple(raw.shape)}")
    if tuple(out.shape[-2:]) != size:
        squeeze = out.ndim == 3
        img = out.unsqueeze(1) if squeeze else out
        img = F.interpolate(img.float(), size=size, mode="bilinear", align_corners=False)
        out = img.squeeze(1) if squeeze else img
    return out.to(device=x.device, dtype=torch.float32)
