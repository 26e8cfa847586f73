"""The explorer's app factory: routers, the guard, error handlers and the static front end."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from salience import __version__
from salience.errors import SalienceError
from salience.server.registry import RunRegistry
from salience.server.routes import ROUTERS
from salience.server.security import Guard
from salience.store import Run

log = logging.getLogger("salience.server")

STATIC = Path(str(files("salience.server") / "static"))


def create_app(
    runs: RunRegistry | Sequence[str | Path | Run],
    *,
    token: str | None = None,
    cache_mb: int = 256,
) -> FastAPI:
    """A FastAPI app serving ``runs`` read-only; with ``token``, every request must carry it."""
    if isinstance(runs, RunRegistry):
        registry = runs
    else:
        opened = [r if isinstance(r, Run) else Run.open(Path(r)) for r in runs]
        registry = RunRegistry(opened, cache_bytes=cache_mb * 2**20)
    app = FastAPI(
        title="salience explorer",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.registry = registry
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(SalienceError, _user_error)
    app.add_exception_handler(Exception, _server_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_middleware(Guard, token=token)
    return app


async def _user_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("error serving %s", request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal error; the server log has the details"}, status_code=500
    )
