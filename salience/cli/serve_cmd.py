"""``salience serve RUN...``: the explorer for one or more runs, in the browser."""

from __future__ import annotations

import logging
import socket
import threading
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer

from salience.cli import app
from salience.cli._common import MODEL_HELP, Device, Weights, console, styled, user_errors
from salience.errors import SalienceError


@app.command()
@user_errors
def serve(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders written by `salience audit`, and monitor folders written by "
            "`salience monitor` (Monitor tab, Prometheus metrics at /metrics).",
            show_default=False,
        ),
    ],
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind; anything but loopback requires a token. Without a token the "
            "explorer answers only requests addressed to 127.0.0.1, localhost, ::1 or this name."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(help="Access token required on every request (generated off loopback)."),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the explorer in a web browser.")
    ] = False,
    cache_mb: Annotated[int, typer.Option(help="Memory for rendered images, in MiB.")] = 256,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Keep this model loaded and compute maps live (any class, any method, full "
            "resolution); it must be the audited one. " + MODEL_HELP,
            show_default=False,
        ),
    ] = None,
    weights: Weights = None,
    device: Device = "auto",
    force: Annotated[
        bool, typer.Option("--force", help="Use --model even where it is not the audited one.")
    ] = False,
) -> None:
    """Explore runs: confusion matrix -> images -> saliency maps, and two runs side by side;
    monitor folders: the drift timeline and each window's images and maps."""
    import uvicorn

    from salience.server import create_app
    from salience.server.security import LOOPBACK, new_token
    from salience.server.warm import warm

    if host not in LOOPBACK and not token:
        token = new_token()
    _check_port(host, port)
    runs, monitors = split_folders(runs)
    explorer = create_app(runs, token=token, cache_mb=cache_mb, hosts=[host], monitors=monitors)
    if model:
        _live(explorer.state.registry, model, weights, device, force)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    served = f"{len(runs)} run(s)" + (f" and {len(monitors)} monitor(s)" if monitors else "")
    console.print(styled("salience explorer", "bold"), f"serving {served} at {url}")
    if monitors:
        console.print(f"Prometheus metrics at {url.split('?')[0]}metrics")
    if token:
        console.print("access token:", styled(token, "bold"), "(send it as ?token= once, or as "
                      "header X-Salience-Token)")  # fmt: skip
    console.print("read-only; press Ctrl+C to stop")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    threading.Thread(target=warm, args=(explorer.state.registry,), daemon=True).start()
    if open_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.run(explorer, host=host, port=port, log_level="warning")


def _live(registry: Any, spec: str, weights: Path | None, device: str, force: bool) -> None:
    """Load the model once and check it against every run (one line and exit 2 on a mismatch,
    unless ``force``)."""
    from salience.models import load_model
    from salience.server.run_cache import attach

    loaded = load_model(spec, weights, device)
    for reason in attach(registry, loaded, force=force):
        console.print(styled("warning:", "yellow"), reason, "(used anyway: --force)")
    console.print("live maps with", repr(loaded))


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise SalienceError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port"
            ) from None


def split_folders(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Run folders and monitor folders, told apart by their layout; without a run, the
    monitors' baseline runs are served. Anything else is one clear line."""
    from salience.monitor import MonitorFolder, is_monitor
    from salience.store.layout import MANIFEST

    runs: list[Path] = []
    monitors: list[Path] = []
    for path in paths:
        if not path.exists():
            raise SalienceError(f"{path} does not exist; give a run folder from `salience audit`")
        if is_monitor(path):
            monitors.append(path)
        elif (path / MANIFEST).is_file():
            runs.append(path)
        else:
            raise SalienceError(
                f"{path} is neither a run folder (no {MANIFEST}, from `salience audit`) nor a "
                "monitor folder (no config.json and monitor.json, from `salience monitor`)"
            )
    if not runs:
        for path in monitors:
            baseline = Path(MonitorFolder.open(path).config()["baseline"])
            if (baseline / MANIFEST).is_file() and baseline not in runs:
                runs.append(baseline)
        if not runs:
            raise SalienceError("no run to serve: pass the monitor's baseline run folder too")
    return runs, monitors
