"""Regenerate the README's method table from the registry: python scripts/readme_tables.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from salience.methods import list_methods, method_info

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- methods:start -->", "<!-- methods:end -->"


def _param(value: object) -> str:
    return "auto" if value is None else repr(value)


def method_table() -> str:
    rows = [
        "| method | family | signed | passes per image | key parameters | what it is |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in list_methods():
        info = method_info(name)
        params = ", ".join(
            f"`{k}={_param(v)}`" for k, v in info.params.items() if k != "batch_size"
        )
        signed = "yes" if info.signed else "no"
        rows.append(
            f"| `{name}` | {info.family} | {signed} | {info.passes} | {params} | {info.summary} |"
        )
    return "\n".join(rows)


def render(text: str) -> str:
    block = f"{START}\n{method_table()}\n{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S)


if __name__ == "__main__":
    new = render(README.read_text())
    if "--check" in sys.argv:
        sys.exit(0 if new == README.read_text() else 1)
    README.write_text(new)
