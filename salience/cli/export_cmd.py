"""``salience export fiftyone RUN``: a run as a dataset of another tool.

Writes the exported files and ``export.json`` under ``--out`` (default ``RUN/fiftyone``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from salience.cli import app
from salience.cli._command import Command, Group
from salience.cli._common import err_console, print_json, task, user_errors

export_app = typer.Typer(
    name="export",
    help="Export a run to another tool (FiftyOne).",
    no_args_is_help=True,
    cls=Group,
)
app.add_typer(export_app)


@export_app.command("fiftyone", cls=Command)
@user_errors
def fiftyone(
    run: Annotated[Path, typer.Argument(help="Run folder written by `salience audit`.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder of the images and heatmaps (default: RUN/fiftyone).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="FiftyOne dataset name (default: salience-<run folder>).", show_default=False
        ),
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="Methods to export (default: all).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a FiftyOne dataset of the same name.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export a run to a persistent FiftyOne dataset: the model's view of each image, ground
    truth, predictions, one heatmap per method and the per-image statistics as fields."""
    from salience.export.fiftyone import export_fiftyone
    from salience.store import Run

    opened = Run.open(run)
    with task("exporting", total=opened.count()) as advance:
        summary = export_fiftyone(
            opened, out, name=name, methods=method, overwrite=overwrite, progress=advance
        )
    if json_out:
        print_json(summary)
        return
    skipped = summary["skipped"]["total"]
    note = f", {skipped} skipped (no readable image)" if skipped else ""
    err_console.print(
        f"FiftyOne dataset {summary['dataset']!r}: {summary['samples']} samples{note}; "
        f"files in {summary['out']}",
        soft_wrap=True,
    )
    err_console.print(
        f'open it: python -c "import fiftyone as fo; '
        f'fo.launch_app(fo.load_dataset({summary["dataset"]!r})).wait()"',
        soft_wrap=True,
    )
