"""Specs as written on the command line: ``NAME[:key=value[,key=value...]]``.

The generic parser under every spec (methods, preprocessing): it knows no names, only the
``key=value`` list and how a value reads."""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection
from typing import Any

from salience.errors import SalienceError


def parse_value(text: str) -> Any:
    """Python literal if it parses (``32``, ``0.15``, ``True``, ``(8, 8)``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(
    text: str, bad_item: Callable[[str], str], keys: Collection[str] | None = None
) -> dict[str, Any]:
    """``"steps=32,window=(8,8)"`` -> ``{"steps": 32, "window": (8, 8)}``.

    An item without ``=``, with an empty key, or with a key outside ``keys`` (when given)
    raises :class:`SalienceError` with the line ``bad_item(item)``."""
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in split_items(text))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or (keys is not None and key not in keys):
            raise SalienceError(bad_item(item))
        params[key] = parse_value(value.strip())
    return params


def split_items(text: str) -> list[str]:
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
