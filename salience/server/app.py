"""The explorer's app factory: routers, the guard, error handlers and the static front end."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from salience import __version__
from salience.errors import DamagedRunError, ImageTooLargeError, SalienceError
from salience.server.monitors import MonitorRegistry
from salience.server.routes import ROUTERS
from salience.server.run_cache import RunRegistry, one_line
from salience.server.security import Guard
from salience.store import Run

log = logging.getLogger("salience.server")

STATIC = Path(str(files("salience.server") / "static"))


def create_app(
    runs: RunRegistry | Sequence[str | Path | Run],
    *,
    token: str | None = None,
    cache_mb: int = 256,
    hosts: Iterable[str] = (),
    monitors: Sequence[str | Path] = (),
    frame_ancestors: Sequence[str] = (),
) -> FastAPI:
    """A FastAPI app serving ``runs`` read-only; with ``token``, every request must carry it.

    Without a token, only requests whose ``Host`` names 127.0.0.1, localhost, ::1 or one of
    ``hosts`` (the names the server is bound to) are answered: a page on another name that
    resolves to this machine (DNS rebinding) gets 400. A damaged run (a truncated or corrupt
    file) is listed with its reason, and the other runs are served as usual.
    ``frame_ancestors`` lists the origins that may show the page in a frame (a notebook)."""
    if isinstance(runs, RunRegistry):
        registry = runs
    else:
        registry = RunRegistry(list(runs), cache_bytes=cache_mb * 2**20)
    app = FastAPI(
        title="salience explorer",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.registry = registry
    app.state.monitors = MonitorRegistry(monitors)  # monitor folders (salience monitor)
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(SalienceError, _user_error)
    app.add_exception_handler(DamagedRunError, _damaged)
    app.add_exception_handler(ImageTooLargeError, _too_large)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_middleware(
        Guard, token=token, hosts=hosts, frame_ancestors=frame_ancestors
    )  # also answers uncaught errors (500)
    return app


async def _user_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": one_line(exc)}, status_code=400)


async def _damaged(request: Request, exc: Exception) -> JSONResponse:
    """A run file is truncated or corrupt: its one-line reason, for this run only."""
    return JSONResponse({"detail": one_line(exc), "status": "damaged"}, status_code=503)


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    log.warning("refused to render %s: %s", request.url.path, one_line(exc))
    return JSONResponse({"detail": "the image is too large to render safely"}, status_code=422)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """A query parameter out of range: one line naming it, without echoing its value."""
    assert isinstance(exc, RequestValidationError)
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
        for e in exc.errors()[:5]
    ]
    return JSONResponse({"detail": one_line("; ".join(parts))}, status_code=422)
