"""ReLU overrides for guided backpropagation and DeconvNet, at the autograd level.

A :class:`~torch.overrides.TorchFunctionMode` intercepts every ReLU-like call made from
Python while the model runs forward: ``torch.relu``, ``F.relu``, ``Tensor.relu``, their
in-place forms, ``F.relu6`` and ``F.hardtanh`` with ``min_val=0`` (``nn.ReLU``, ``nn.ReLU6``
and ``nn.Hardtanh(0, x)`` call these). Each call is routed through an autograd Function with
the same forward and a modified backward. No module is swapped and no hook is registered, so
in-place ReLUs, one ReLU module reused in several places and ``F.relu`` inside ``forward()``
all get the rule; the mode is exited when the forward pass ends, even on error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from salience.errors import UnsupportedModelError
from salience.methods._base import Attribution, ExplainJob
from salience.methods.batching import spans

Rule = Literal["guided", "deconv"]
_Match = tuple[torch.Tensor, float | None, bool]  # input, upper bound (None: ReLU), in place

_RELU = {torch.relu, torch.Tensor.relu}
_RELU_ = {torch.relu_, torch.Tensor.relu_, F.relu_}
_RELU6 = {torch._C._nn.relu6}
_RELU6_ = {torch._C._nn.relu6_}
_HARDTANH = {F.hardtanh, F.hardtanh_, torch._C._nn.hardtanh, torch._C._nn.hardtanh_}


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _match(
    func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> _Match | None:
    """The ReLU-like call ``func(*args, **kwargs)`` describes, or None for any other call."""
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    if func in _RELU:
        return x, None, False
    if func in _RELU_:
        return x, None, True
    if func is F.relu:
        return x, None, bool(_arg(args, kwargs, 1, "inplace", False))
    if func is F.relu6:
        return x, 6.0, bool(_arg(args, kwargs, 1, "inplace", False))
    if func in _RELU6 or func in _RELU6_:
        return x, 6.0, func in _RELU6_
    if func in _HARDTANH:
        lo = _arg(args, kwargs, 1, "min_val", -1.0)
        hi = _arg(args, kwargs, 2, "max_val", 1.0)
        if lo != 0 or hi <= 0:
            return None
        inplace = func in (F.hardtanh_, torch._C._nn.hardtanh_) or bool(
            _arg(args, kwargs, 3, "inplace", False)
        )
        return x, float(hi), inplace
    return None


class _RectifiedClamp(torch.autograd.Function):
    """``clamp(x, 0, hi)`` forward; the backward passes only positive gradients ("deconv"),
    and only where the forward was in its linear range as well ("guided")."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, hi: float | None, rule: str, inplace: bool
    ) -> torch.Tensor:
        if inplace:
            out = x.clamp_(0.0, hi)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(0.0, hi)
        ctx.hi, ctx.rule = hi, rule
        if rule == "guided":
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        g = grad.clamp(min=0)
        if ctx.rule == "guided":
            (out,) = ctx.saved_tensors
            mask = out > 0
            if ctx.hi is not None:
                mask &= out < ctx.hi
            g = g * mask
        return g, None, None, None


class ReluLikeMode(TorchFunctionMode):
    """While active, every ReLU-like call (see :func:`_match`) is computed by :meth:`replace`;
    ``calls`` counts them. Nothing on the model changes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def replace(self, x: torch.Tensor, hi: float | None, inplace: bool) -> torch.Tensor:
        raise NotImplementedError

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        match = _match(func, args, kwargs)
        if match is None:
            return func(*args, **kwargs)
        self.calls += 1
        return self.replace(*match)


class ReluOverride(ReluLikeMode):
    """Route ReLU-like calls through the ``rule``'s backward."""

    def __init__(self, rule: Rule) -> None:
        super().__init__()
        self.rule = rule

    def replace(self, x: torch.Tensor, hi: float | None, inplace: bool) -> torch.Tensor:
        out: torch.Tensor = _RectifiedClamp.apply(x, hi, self.rule, inplace)
        return out


def rectified_gradient(
    job: ExplainJob, inputs: torch.Tensor, index: torch.Tensor, rule: Rule, method: str
) -> torch.Tensor:
    """Input gradient of each row's target score with the model's ReLUs following ``rule``."""
    inp = inputs.detach().requires_grad_(True)
    override = ReluOverride(rule)
    with torch.enable_grad():
        with override:
            logits = job.logits(inp)
        if override.calls == 0:
            raise UnsupportedModelError(
                f"{method} needs ReLU activations (torch.relu, F.relu, nn.ReLU, nn.ReLU6, "
                "hardtanh(0, x)) called from Python; this model has none (e.g. it uses GELU or "
                "is scripted): choose gradient or integrated_gradients instead"
            )
        scores = job.target_scores(logits, index, clean=True)
        (grad,) = torch.autograd.grad(scores.sum(), inp)
    return grad


class RectifiedGradient(Attribution):
    """Input gradient with a modified ReLU backward; subclasses choose the ``rule``."""

    family = "gradient"
    signed = True
    passes = "1 fwd+bwd"
    rule: ClassVar[Rule]

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        index = job.rows()
        return torch.cat(
            [
                rectified_gradient(job, job.x[a:b], index[a:b], self.rule, self.name)
                for a, b in spans(job.n, job.chunk("backward"))
            ]
        )
