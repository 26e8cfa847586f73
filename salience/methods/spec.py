"""Method specs as written on the command line: ``NAME[:key=value[,key=value...]]``."""

from __future__ import annotations

from typing import Any

from salience.methods._registry import get_method
from salience.specs import parse_params


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"integrated_gradients:steps=32,baseline=blur"`` -> ``("integrated_gradients", {...})``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    get_method(name)  # unknown names fail here, listing the known ones
    return name, parse_params(
        rest,
        lambda item: f"bad method parameter {item!r} in {spec!r}; write NAME:key=value,key=value",
    )
