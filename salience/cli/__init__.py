"""The ``salience`` command line: a thin layer over the library, one module per command."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperCommand

from salience.cli._command import Command, Group

app = typer.Typer(
    name="salience",
    help="Explain image classifiers with saliency maps, check which maps to trust, and audit "
    "models with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


def _show_version(value: bool) -> None:
    if value:
        import platform

        import torch

        from salience import __version__

        py = platform.python_version()
        typer.echo(f"salience {__version__} (torch {torch.__version__}, Python {py})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Explain image classifiers with saliency maps, check which maps to trust, and audit
    models with them."""


# Each module registers its command(s) on ``app`` when imported; all use one command class.
from salience.cli import (  # noqa: E402,F401
    attack_cmd,
    audit_cmd,
    check_cmd,
    compare_cmd,
    cost_cmd,
    demo_cmd,
    explain_cmd,
    export_cmd,
    methods_cmd,
    monitor_cmd,
    report_cmd,
    serve_cmd,
    shortcuts_cmd,
    slices_cmd,
)

for _info in app.registered_commands:
    if _info.cls in (None, TyperCommand):
        _info.cls = Command


def main() -> None:
    from salience.allocator import keep_freed_memory

    keep_freed_memory()  # the command's own process: freed tensors stay in the heap
    app()
