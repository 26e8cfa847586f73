"""Helpers shared by the CLI commands: error reporting, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from salience.errors import SalienceError

console = Console()
err_console = Console(stderr=True)

MODEL_HELP = (
    "torchvision:NAME, timm:NAME, FILE.pt (TorchScript), package.module:factory or "
    "FILE.py:factory, or efficientnet_lite0."
)
ModelSpec = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP, show_default=False)]
Weights = Annotated[
    Path | None,
    typer.Option("--weights", "-w", help="State-dict file for the model (loaded weights-only)."),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
PreprocessSpec = Annotated[
    str | None,
    typer.Option(
        help="Override preprocessing: imagenet, efficientnet_lite, half or unit, "
        "optionally with :size=,resize=,mean=,std=,interpolation=."
    ),
]
ChannelsLast = Annotated[
    bool,
    typer.Option(
        "--channels-last",
        help="Keep the model's weights channels-last (NHWC): faster convolutions on CPUs and "
        "recent GPUs; maps change only by float rounding.",
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print a :class:`SalienceError` (and similar user mistakes) as one line; exit code 2."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SalienceError as exc:
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except FileNotFoundError as exc:
            err_console.print(
                f"[bold red]error:[/] file not found: {exc.filename}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def progress(transient: bool = False) -> Progress:
    """A rich progress bar with count, rate-friendly columns and ETA (on stderr)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


@contextmanager
def task(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Context manager yielding ``advance(n=1, rate="")`` for one progress bar."""
    with progress() as bar:
        tid = bar.add_task(description, total=total, rate="")

        def advance(n: int = 1, rate: str = "") -> None:
            bar.update(tid, advance=n, rate=rate)

        yield advance
