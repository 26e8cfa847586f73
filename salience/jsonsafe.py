"""Values made fit for strict JSON: the one cleaner every writer and route uses.

NaN and infinities become None (JSON has neither), numpy scalars and arrays and tensors
become Python numbers and lists, pandas' missing values become None, paths become strings,
tuples become lists and mapping keys become strings. :func:`describe` records a parameter
value (a tensor as its shape, a module as its class name, anything unknown as its ``repr``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np
import torch


def finite(x: Any, digits: int | None = None) -> float | None:
    """``x`` as a float (rounded to ``digits`` when given), or None for missing, NaN, infinite
    or non-numeric values."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return f if digits is None else round(f, digits)


def json_safe(value: Any) -> Any:
    """``value`` with every part made plain (see the module docstring), recursively."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, PathLike):
        return str(value)
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # a torch tensor
        return json_safe(value.detach().cpu().tolist())
    if _missing(value):
        return None
    return value


def describe(value: Any) -> Any:
    """A parameter value as a run manifest or a metric result records it: plain values and
    containers as they are, a tensor as ``"tensor(shape)"``, a module as its class name and
    anything else as its ``repr``."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, torch.nn.Module):
        return type(value).__name__
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    return repr(value)


def _missing(value: Any) -> bool:
    """pandas' NA and NaT (without importing pandas)."""
    return type(value).__name__ in ("NAType", "NaTType")
