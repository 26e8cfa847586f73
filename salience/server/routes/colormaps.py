"""Colormaps: the colours the server paints with, so the browser can draw matching legends."""

from __future__ import annotations

from fastapi import APIRouter

from salience.server import render, schemas

router = APIRouter(prefix="/api", tags=["colormaps"])


@router.get("/colormaps", response_model=list[schemas.Colormap])
def colormaps() -> list[schemas.Colormap]:
    return [
        schemas.Colormap(name=name, signed=signed, stops=render.stops(name))
        for name, signed in render.LEGEND_MAPS.items()
    ]
