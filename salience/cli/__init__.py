"""The ``salience`` command line: a thin layer over the library, one module per command."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="salience",
    help="Explain image classifiers with saliency maps, check which maps to trust, and audit "
    "models with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module registers its command(s) on ``app`` when imported.
from salience.cli import (  # noqa: E402,F401
    audit_cmd,
    check_cmd,
    compare_cmd,
    demo_cmd,
    explain_cmd,
    methods_cmd,
    monitor_cmd,
    report_cmd,
    serve_cmd,
    shortcuts_cmd,
    slices_cmd,
)


def main() -> None:
    app()
