"""``salience slices RUN --by COLUMN``: metadata groups of one run against the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import console, err_console, print_json, styled, user_errors
from salience.store.layout import write_json


@app.command()
@user_errors
def slices(
    run: Annotated[
        Path, typer.Argument(help="Run folder (from `salience audit`).", show_default=False)
    ],
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Metadata column (manifest column name), or label, pred or split.",
            show_default=False,
        ),
    ],
    method: Annotated[
        list[str] | None, typer.Option("--method", help="Method(s) to test (default: all).")
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(help="Family-wise error rate over every group and test.", min=0.0001, max=0.5),
    ] = 0.05,
    min_size: Annotated[int, typer.Option("--min-size", min=2, help="Smallest group tested.")] = 5,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="slices.json path (default: RUN/slices-BY.json)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Compare each group of a metadata column with the rest of the run.

    Accuracy (Fisher's exact test), each saliency statistic (KS) and the map embeddings
    (MMD) per group against the rest, Holm-corrected over every group and test: a flagged
    group differs beyond chance. Biased data shows here before it shows in a headline metric.
    """
    from salience.monitor import slices as compute
    from salience.monitor import slices_file

    result = compute(run, by, method, alpha=alpha, min_size=min_size)
    path = out or slices_file(run, by)
    write_json(path, result)
    if json_out:
        print_json(result)
        return
    show(result)
    err_console.print(f"wrote {path}")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def show(result: dict[str, Any]) -> None:
    table = Table(title=f"slices by {result['by']}")
    for col in ("group", "images", "accuracy", "rest", "flagged", "why"):
        table.add_column(col)
    for g in result["groups"]:
        if not g["tested"]:
            table.add_row(g["value"], str(g["n"]), "-", "-", "too small", "")
            continue
        flag = styled("yes", "bold red") if g["flagged"] else "no"
        table.add_row(
            g["value"],
            str(g["n"]),
            _pct(g["accuracy"]),
            _pct(g["accuracy_rest"]),
            flag,
            ", ".join(g["reasons"]),
        )
    console.print(table)
