"""The names of :mod:`salience.check` under their former module, for existing imports."""

from __future__ import annotations

from salience.check import (
    CAVEAT,
    CONTROLS,
    DEFAULT_METHODS,
    DESIGN_NUMBERS,
    CheckConfig,
    MethodCheck,
    default_methods,
    failed,
    judge,
    load_batch,
    measure,
    run_check,
    summarise,
    units,
)

__all__ = [
    "CAVEAT",
    "CONTROLS",
    "DEFAULT_METHODS",
    "DESIGN_NUMBERS",
    "CheckConfig",
    "MethodCheck",
    "default_methods",
    "failed",
    "judge",
    "load_batch",
    "measure",
    "run_check",
    "summarise",
    "units",
]
