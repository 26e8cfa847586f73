"""The explorer from Python: ``salience.open_explorer(run)`` serves it from a background thread
on a free loopback port and shows it inline in a notebook (an iframe), or opens a browser tab.

The page may be framed only by loopback origins (a Jupyter server on this machine, any port);
every other response still refuses to be framed. A notebook served from another machine cannot
reach this loopback server: run ``salience serve`` there and forward its port instead.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from salience.errors import SalienceError
from salience.htmlsafe import escape
from salience.server.app import create_app
from salience.server.run_cache import RunRegistry
from salience.server.warm import warm
from salience.store import Run

NOTEBOOK_ORIGINS = (
    "http://localhost:*",
    "http://127.0.0.1:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
)


class Explorer:
    """A running explorer: ``.url``, ``.stop()``; shows itself as an iframe in a notebook."""

    def __init__(
        self, runs: Sequence[str | os.PathLike[str] | Run], port: int = 0, height: int = 760
    ) -> None:
        if not runs:
            raise SalienceError("give at least one run folder to explore")
        registry = RunRegistry([r if isinstance(r, Run) else Path(r) for r in runs])
        app = create_app(registry, frame_ancestors=NOTEBOOK_ORIGINS)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.height = height
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SalienceError(f"the explorer could not start on port {self.port}")
            time.sleep(0.05)
        threading.Thread(target=warm, args=(registry,), daemon=True).start()

    def stop(self) -> None:
        """Shut the server down and free its port."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> Explorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _repr_html_(self) -> str:
        src = escape(self.url)
        return (
            f'<iframe src="{src}" width="100%" height="{int(self.height)}" '
            'frameborder="0" title="salience explorer"></iframe>'
            f'<div><a href="{src}" target="_blank" rel="noopener">open in a new tab</a></div>'
        )

    def __repr__(self) -> str:
        state = "running" if self._thread.is_alive() else "stopped"
        return f"Explorer({self.url}, {state})"


def open_explorer(
    *runs: str | os.PathLike[str] | Run, port: int = 0, browser: bool | None = None
) -> Explorer:
    """Serve ``runs`` in the explorer; in a notebook the result displays it inline, elsewhere
    (or with ``browser=True``) a browser tab opens."""
    explorer = Explorer(runs, port=port)
    if browser or (browser is None and not _in_notebook()):
        webbrowser.open(explorer.url)
    return explorer


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell: Any = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
