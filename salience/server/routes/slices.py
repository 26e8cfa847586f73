"""Slices: one run's metadata groups against the rest (``salience slices``), read from the
file the command saved when there is one, else computed here (cached per column)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from salience.errors import SalienceError
from salience.jsonsafe import finite
from salience.monitor import slice_columns, slices, slices_file
from salience.server import monitor_schemas as ms
from salience.server.run_cache import RunEntry, get_entry
from salience.store import Run

router = APIRouter(prefix="/api/runs/{run_id}/slices", tags=["slices"])

Entry = Annotated[RunEntry, Depends(get_entry)]


def _saved(run: Run, by: str) -> dict[str, Any] | None:
    """``RUN/slices-BY.json`` as ``salience slices`` wrote it, when it is there and readable."""
    path = slices_file(run.path, by)
    if path.parent.resolve() != run.path or not path.is_file():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("groups"), list) else None


def _group(g: dict[str, Any]) -> ms.SliceGroup:
    tests = {
        str(k): ms.SliceTest(
            statistic=finite(t.get("statistic")),
            p_value=finite(t.get("p_value")),
            alert=bool(t.get("alert")),
            shift=finite(t.get("shift")),
        )
        for k, t in (g.get("tests") or {}).items()
    }
    return ms.SliceGroup(
        value=str(g.get("value")),
        n=int(g.get("n", 0)),
        tested=bool(g.get("tested")),
        flagged=bool(g.get("flagged")),
        accuracy=finite(g.get("accuracy")),
        accuracy_rest=finite(g.get("accuracy_rest")),
        reasons=[str(r) for r in g.get("reasons", [])],
        tests=tests,
    )


@router.get("", response_model=ms.Slices)
def run_slices(
    entry: Entry,
    by: Annotated[
        str | None, Query(max_length=200, description="a column slice_columns lists")
    ] = None,
) -> ms.Slices:
    """Per group of ``by``: accuracy and every saliency test against the rest of the run,
    Holm-corrected; without ``by``, only the columns that can be chosen."""
    run = entry.run
    columns = slice_columns(run)
    if not by:
        return ms.Slices(columns=columns, by=None)
    if by not in columns:
        raise SalienceError(f"cannot slice by {by!r}; choose one of: {', '.join(columns)}")

    def make(run: Run) -> tuple[str, dict[str, Any]]:
        saved = _saved(run, by)
        if saved is not None:
            return slices_file(run.path, by).name, saved
        return "computed", slices(run, by)

    source, result = entry.cached(f"slices:{by}", make)
    return ms.Slices(
        columns=columns,
        by=by,
        column=result.get("column"),
        alpha=finite(result.get("alpha")),
        methods=[str(m) for m in result.get("methods", [])],
        correction=result.get("correction"),
        source=source,
        groups=[_group(g) for g in result.get("groups", [])],
        flagged=[str(v) for v in result.get("flagged", [])],
    )
