"""Helpers shared by the CLI commands: error reporting, JSON output, progress bars.

Both consoles print text as it is: rich markup is off, so class names, file names and
metadata such as ``[/]`` or ``[bold]`` print literally and cannot break a command. Styles are
given as :class:`rich.text.Text` spans (see :func:`styled`).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TextIO, TypeVar

import typer
from click.exceptions import Abort, ClickException
from click.exceptions import Exit as ClickExit
from rich.console import Console
from rich.text import Text

from salience.cli._progress import Bars
from salience.cli._progress import task as _task
from salience.errors import SalienceError, SalienceWarning

if TYPE_CHECKING:
    from salience.models import LoadedModel

console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

MODEL_HELP = (
    "torchvision:NAME, timm:NAME, hf:FOLDER (a saved Hugging Face image classifier, or a "
    "name in the local Hugging Face cache), FILE.pt (TorchScript), package.module:factory or "
    "FILE.py:factory, or efficientnet_lite0. package.module:factory and FILE.py:factory "
    "import and run that Python code: use them only with code you trust."
)
ModelSpec = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP, show_default=False)]
Weights = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        help="State-dict file for the model, loaded as tensors only: a file that pickles "
        "Python objects or code is refused, never executed.",
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
PreprocessSpec = Annotated[
    str | None,
    typer.Option(
        help="Override preprocessing: imagenet, efficientnet_lite, half or unit, "
        "optionally with :size=,resize=,mean=,std=,interpolation=,squash=,max_side=."
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


ChannelsLastAuto = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--contiguous",
        help="Memory format of the model's weights: channels-last (NHWC: faster convolutions "
        "on CPUs) or contiguous. Default: channels-last on a CPU for models with "
        "convolutions; maps change only by float rounding.",
        show_default=False,
    ),
]


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


PrecisionOption = Annotated[
    PrecisionChoice,
    typer.Option(
        "--precision",
        help="Run the model's forward pass in fp32, bf16 (CPU or CUDA) or fp16 (CUDA only) "
        "under autocast; `salience cost` measures how much the maps change.",
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Run the model under torch.compile; its first (compiling) pass is reported "
        "apart. Needs a C++ compiler on CPUs.",
    ),
]
DataRoot = Annotated[
    Path | None,
    typer.Option(
        help="Data root of a manifest; no path may leave it (default: the common parent of "
        "the manifest's folder and its absolute paths).",
        show_default=False,
    ),
]


class LogTarget(str, Enum):
    mlflow = "mlflow"


LogTo = Annotated[
    LogTarget | None,
    typer.Option(
        "--log-to",
        help="Also log the summary to MLflow (server from MLFLOW_TRACKING_URI); needs "
        "pip install 'salience[mlflow]'.",
        show_default=False,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def styled(text: str, style: str) -> Text:
    """``text`` in a rich ``style``, for consoles that print without markup."""
    return Text(text, style=style)


def error_line(message: str) -> None:
    """Print ``error: MESSAGE`` on stderr as one line (the message printed literally)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def crash_log(exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback to a new log file and return its path (None if unwritable)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "salience" / "logs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in (base, Path(tempfile.gettempdir()) / "salience-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            path.write_text(f"salience {' '.join(sys.argv[1:])}\n\n{text}")
            return path
        except OSError:
            continue
    return None


_python_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """salience's own warnings as one ``warning:`` line; others as Python shows them."""
    if issubclass(category, SalienceWarning):
        err_console.print(
            Text.assemble(("warning:", "bold yellow"), " ", str(message)), soft_wrap=True
        )
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a command so that every failure ends as one line on stderr, never a traceback.

    User mistakes (:class:`SalienceError`, missing files) exit with 2; a full disk or memory
    exhaustion say so and what to do (exit 1); anything else is a bug: one line naming the
    exception and a log file with the traceback (exit 1). ``SALIENCE_DEBUG=1`` re-raises it.
    """

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except SalienceError as exc:
            error_line(str(exc))
            raise typer.Exit(2) from None
        except FileNotFoundError as exc:
            error_line(f"file not found: {exc.filename}")
            raise typer.Exit(2) from None
        except PermissionError as exc:
            error_line(f"permission denied: {exc.filename}; check the file's owner and mode")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print(styled("interrupted", "yellow"))
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, ClickExit, Abort, ClickException):
            raise  # click prints these itself
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                _internal(exc)
            where = f" writing {exc.filename}" if exc.filename else ""
            error_line(f"disk full{where}; free some space and rerun the same command")
            raise typer.Exit(1) from None
        except MemoryError:
            error_line("out of memory; use a smaller --batch-size or fewer images at once")
            raise typer.Exit(1) from None
        except Exception as exc:
            _internal(exc)

    return wrapper


def _internal(exc: Exception) -> NoReturn:
    if os.environ.get("SALIENCE_DEBUG"):
        raise exc
    log = crash_log(exc)
    where = f"; the traceback is in {log}" if log else ""
    error_line(f"internal error ({_one_line(exc)}){where}. Please report it with that file.")
    raise typer.Exit(1) from None


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def load_cli_model(
    spec: str,
    weights: Path | None,
    device: str,
    preprocess: str | None,
    channels_last: bool | None,
    precision: PrecisionChoice,
    compile_model: bool,
) -> LoadedModel:
    """``load_model`` with the commands' model settings; a compiled model's first
    (compiling) pass is reported on stderr, apart from the command's own timings."""
    from salience.models import load_model

    loaded = load_model(
        spec,
        weights,
        device,
        preprocess=preprocess,
        channels_last=channels_last,
        precision=precision.value,
        compile=compile_model,
    )
    if loaded.compile_warmup_s is not None:
        err_console.print(
            f"torch.compile warm-up: {loaded.compile_warmup_s:.1f} s (first pass; new input "
            "shapes compile again)",
            soft_wrap=True,
        )
    return loaded


def progress(transient: bool = False) -> Bars:
    """Progress bars on stderr (see :mod:`salience.cli._progress`): a rich bar on a terminal,
    plain lines with the time left when piped."""
    return Bars(err_console, transient=transient)


@contextmanager
def task(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Context manager yielding ``advance(n=1, rate="")`` for one progress bar."""
    with _task(err_console, description, total) as advance:
        yield advance
