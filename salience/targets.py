"""Targets: which scalar of the model output is explained, one per image.

The public API accepts ``None`` (the predicted class), an ``int``, a sequence or tensor of ints
(one per image) or a callable on the logits (returning scores, or class indices).
:func:`as_target` converts that once, at the boundary, into a :class:`Target`; internal code
only ever sees that type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from salience.errors import SalienceError

TargetLike = None | int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


class Target:
    """Scores rows of a ``[M, K]`` logits tensor; ``index[m]`` is the image row ``m`` came from."""

    def scores(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class ClassTarget(Target):
    """One class index per image."""

    classes: torch.Tensor  # [N] int64

    def scores(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        if int(self.classes.max()) >= k or int(self.classes.min()) < 0:
            raise SalienceError(
                f"target class {int(self.classes.max())} is out of range "
                f"for a model with {k} outputs"
            )
        cls = self.classes.to(logits.device)[index.to(logits.device)]
        return logits.gather(1, cls[:, None]).squeeze(1)


@dataclass(frozen=True)
class FunctionTarget(Target):
    """A callable on ``[M, K]`` logits, applied row-wise: ``[M]`` scores, or ``[M]`` integer
    class indices (``lambda y: y.argmax(1)``), whose logits are then the scores."""

    fn: Callable[[torch.Tensor], torch.Tensor]

    def scores(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        out = self.fn(logits)
        if not isinstance(out, torch.Tensor) or out.shape != (logits.shape[0],):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise SalienceError(
                "a target callable must return one score per row (or one class index per row), "
                f"shape [{logits.shape[0]}]; got {shape}"
            )
        if out.is_floating_point() or out.is_complex():
            return out
        classes = out.long()
        k = logits.shape[1]
        if bool(((classes < 0) | (classes >= k)).any()):
            raise SalienceError(
                f"the target callable returned class indices outside 0..{k - 1}; "
                "return scores or valid indices"
            )
        return logits.gather(1, classes[:, None]).squeeze(1)


class PredictedTarget(Target):
    """The class the model predicts for the unperturbed image; resolved before use."""

    def scores(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("PredictedTarget must be resolved with resolve_predicted() first")


def as_target(target: TargetLike, n: int) -> Target:
    """Normalise any accepted target form into a :class:`Target` for a batch of ``n`` images."""
    if target is None:
        return PredictedTarget()
    if isinstance(target, Target):
        return target
    if callable(target) and not isinstance(target, torch.Tensor):
        return FunctionTarget(target)
    if isinstance(target, bool):
        raise SalienceError("target must be a class index, not a bool")
    if isinstance(target, int):
        return ClassTarget(torch.full((n,), target, dtype=torch.long))
    classes = torch.as_tensor(target)
    if classes.is_floating_point() or classes.is_complex():
        raise SalienceError("target must hold integer class indices")
    classes = classes.long().flatten()
    if classes.numel() == 1:
        classes = classes.expand(n).clone()
    if classes.numel() != n:
        raise SalienceError(f"got {classes.numel()} targets for a batch of {n} images")
    if bool((classes < 0).any()):
        raise SalienceError("target class indices must be >= 0")
    return ClassTarget(classes)


def resolve_predicted(target: Target, logits: torch.Tensor) -> Target:
    """Turn a :class:`PredictedTarget` into the argmax classes of the clean batch's ``logits``."""
    if isinstance(target, PredictedTarget):
        return ClassTarget(logits.detach().argmax(dim=1))
    return target
