"""Before a long job: every method once on one image, so a method that cannot run on the model
fails in seconds with its reason instead of being recorded on every image."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from salience.errors import SalienceError, UnsupportedModelError
from salience.methods._base import Attribution


def preflight(model: nn.Module, methods: Mapping[str, Attribution], x: torch.Tensor) -> None:
    """Explain the first image of ``x`` with each of ``methods`` (name -> method); the first
    that cannot run raises a :class:`SalienceError` naming it and why."""
    for name, method in methods.items():
        try:
            maps = method.explain(model, x[:1])
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{name} cannot run on this model: {exc}") from None
        except SalienceError as exc:
            raise SalienceError(f"{name} cannot run on this model: {exc}") from None
        except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise SalienceError(
                f"{name} failed on a test image before the job started "
                f"({type(exc).__name__}: {first}); check the model and the method's parameters"
            ) from None
        if maps.shape[0] != 1:
            raise SalienceError(f"{name} returned {maps.shape[0]} maps for one image")
