"""Output selectors: turn whatever a model returns into a ``[N, K]`` logits tensor.

The default selector accepts, in this order: a tensor; an object with a ``.logits`` attribute
(Hugging Face style); a mapping with a ``"logits"`` key, or with a single tensor value; a tuple
or list, whose first element is used (torchvision's GoogLeNet/Inception auxiliary outputs).
Pass ``output=`` a key, an index or a callable to choose differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from salience.errors import SalienceError

OutputSelector = str | int | Callable[[Any], torch.Tensor] | None


def select_output(raw: Any, selector: OutputSelector = None) -> torch.Tensor:
    """Return the logits tensor from a model's raw output, using ``selector`` when given."""
    if callable(selector):
        out = selector(raw)
    elif isinstance(selector, str):
        out = raw[selector] if isinstance(raw, Mapping) else getattr(raw, selector)
    elif isinstance(selector, int):
        out = raw[selector]
    else:
        out = _default(raw)
    if not isinstance(out, torch.Tensor):
        raise SalienceError(
            f"the model output selector produced {type(out).__name__}, not a tensor; "
            "pass output= a key, index or callable that returns the logits"
        )
    if out.ndim == 1:
        out = out.unsqueeze(1)
    if out.ndim != 2:
        raise SalienceError(
            f"model output has shape {tuple(out.shape)}; expected [N, classes]. "
            "Pass output= a callable that returns per-class scores"
        )
    return out


def _default(raw: Any) -> Any:
    if isinstance(raw, torch.Tensor):
        return raw
    logits = getattr(raw, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(raw, Mapping):
        if "logits" in raw:
            return raw["logits"]
        tensors = [v for v in raw.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise SalienceError(
            f"model returned a mapping with keys {list(raw)}; "
            "pass output='KEY' to choose the logits"
        )
    if isinstance(raw, (tuple, list)) and raw:
        return _default(raw[0])
    raise SalienceError(
        f"cannot find logits in a model output of type {type(raw).__name__}; "
        "pass output= a key, index or callable"
    )
