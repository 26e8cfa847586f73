"""Where ``salience attack`` writes and how its output is read back: ``attack.json``,
``attack.html`` and the example pictures, in ``--out`` or inside a run (``RUN/attack``, the
store's :data:`~salience.store.layout.ATTACK`), where the explorer's Attack tab finds them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from salience.errors import SalienceError
from salience.store.layout import ATTACK, MANIFEST

REPORT = "attack.json"
PAGE = "attack.html"
EXAMPLES = "examples"


def run_attack_folder(run: str | os.PathLike[str]) -> Path:
    """``RUN/attack``; a folder that is not a run (no manifest) is one clear line."""
    if not (Path(run) / MANIFEST).is_file():
        raise SalienceError(f"{run} is not a run folder (no {MANIFEST}, from `salience audit`)")
    return Path(run) / ATTACK


def read_report(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``folder/attack.json``; missing, unreadable or not an attack report: one line."""
    path = Path(folder) / REPORT
    if not path.is_file():
        raise SalienceError(f"{folder} has no {REPORT} (write one with `salience attack`)")
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SalienceError(f"{path} is not readable JSON") from None
    if not isinstance(found, dict) or not isinstance(found.get("prediction"), dict):
        raise SalienceError(f"{path} is not an attack report")
    return found


def example_file(folder: str | os.PathLike[str], relative: object) -> Path:
    """An example picture as ``attack.json`` names it, resolved (links too) and checked to lie
    in ``folder/examples``; anything else (a path out of the folder, a missing file): one line."""
    root = (Path(folder) / EXAMPLES).resolve()
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise SalienceError("no such example picture")
    path = (Path(folder) / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise SalienceError("no such example picture")
    return path
