"""Values made fit for strict JSON: the one cleaner every writer and route uses.

NaN and infinities become None (JSON has neither), numpy scalars and arrays and tensors
become Python numbers and lists, pandas' missing values become None, paths become strings,
tuples become lists and mapping keys become strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np


def finite(x: Any) -> float | None:
    """``x`` as a float, or None for missing, NaN, infinite or non-numeric values."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


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


def _missing(value: Any) -> bool:
    """pandas' NA and NaT (without importing pandas)."""
    return type(value).__name__ in ("NAType", "NaTType")
