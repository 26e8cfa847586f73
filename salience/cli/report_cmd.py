"""``salience report RUN -o report.html``: one self-contained HTML file to share a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from salience.cli import app
from salience.cli._common import console, print_json, user_errors
from salience.report import PAGE


@app.command()
@user_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run folder written by `salience audit`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(PAGE),
    max_images: Annotated[
        int, typer.Option(help="Images to embed at most (big runs are sampled).")
    ] = 200,
    per_cell: Annotated[int, typer.Option(help="Images per confusion-matrix cell at most.")] = 8,
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="Methods to show (default: all).")
    ] = None,
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = 112,
    seed: Annotated[int, typer.Option(help="Seed of the random sample of images.")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON.")
    ] = False,
) -> None:
    """Write the run's overview, confusion matrix with drill-down into embedded images, and
    the shortcut findings (when RUN/shortcuts.json exists) as one HTML file."""
    from salience.report import write_report

    data = write_report(
        run, out, max_images=max_images, per_cell=per_cell, methods=method, size=size, seed=seed
    )
    summary = {
        "report": str(out),
        "bytes": out.stat().st_size,
        "images": data.count,
        "embedded": data.embedded,
        "methods": data.methods,
        "shortcuts": bool(data.shortcuts),
    }
    if json_out:
        print_json(summary)
    else:
        sampled = (
            f", {data.embedded} of {data.count} images embedded"
            if data.embedded < data.count
            else ""
        )
        console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB{sampled})", highlight=False)
