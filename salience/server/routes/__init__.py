"""One router per resource; the app factory includes them all."""

from __future__ import annotations

from fastapi import APIRouter

from salience.server.routes import (
    attack,
    colormaps,
    compare,
    confusion,
    images,
    live,
    monitor,
    runs,
    samples,
    slices,
)

ROUTERS: list[APIRouter] = [
    runs.router,
    confusion.router,
    samples.router,
    images.router,
    live.router,
    compare.router,
    colormaps.router,
    monitor.router,
    monitor.metrics_router,
    slices.router,
    attack.router,
]
