"""Method specs as written on the command line: ``NAME[:key=value[,key=value...]]``."""

from __future__ import annotations

import ast
from typing import Any

from salience.errors import SalienceError
from salience.methods._registry import get_method


def parse_value(text: str) -> Any:
    """Python literal if it parses (``32``, ``0.15``, ``True``, ``(8, 8)``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"integrated_gradients:steps=32,baseline=blur"`` -> ``("integrated_gradients", {...})``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    get_method(name)  # unknown names fail here, listing the known ones
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in _split(rest))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SalienceError(
                f"bad method parameter {item!r} in {spec!r}; write NAME:key=value,key=value"
            )
        params[key.strip()] = parse_value(value.strip())
    return name, params


def _split(text: str) -> list[str]:
    """Split on commas outside brackets, so ``window=(8,8)`` stays one item."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts
