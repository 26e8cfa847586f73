"""Live maps: any class's map with any registered method, computed by the loaded model.

``GET /live`` says whether this server can (``salience serve --model``); ``GET /live/{method}/
{sample}?target=K&size=S`` is the map as a transparent PNG overlay on the model's view (at the
model's input resolution, smoothed up to ``size``), and ``GET /live-info/{method}/{sample}``
the same computation's numbers (the class's probability, the prediction). Both share one
computation, cached in the registry's image cache. Without a model they answer 409 with the
one-line reason; a class index out of range or an unknown method is 422.
"""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from salience.live import explain_sample
from salience.methods import list_methods, method_info
from salience.server import render, schemas
from salience.server.live import NO_MODEL, LiveModel
from salience.server.params import image_size
from salience.server.routes.images import CACHE, image_file, unreadable
from salience.server.run_cache import RunEntry, RunRegistry, get_entry, get_registry

router = APIRouter(prefix="/api/runs/{run_id}", tags=["live"])

Entry = Annotated[RunEntry, Depends(get_entry)]
Registry = Annotated[RunRegistry, Depends(get_registry)]
Size = Annotated[int, Depends(image_size)]
Target = Annotated[
    int | None, Query(ge=0, le=1_000_000, description="class index (default: the prediction)")
]


def pixel_methods() -> list[str]:
    return list_methods("gradient")


@router.get("/live", response_model=schemas.LiveStatus)
def live_status(entry: Entry, registry: Registry) -> schemas.LiveStatus:
    live = registry.live
    run = entry.run
    return schemas.LiveStatus(
        available=live is not None,
        reason=None if live is not None else NO_MODEL,
        model=live.loaded.spec if live is not None else None,
        methods=list_methods(model=live.loaded.module) if live is not None else [],
        pixel_methods=pixel_methods(),
        signed=[name for name in list_methods() if method_info(name).signed],
        classes=_classes(live, entry) if live is not None else len(run.class_names),
        map_size=[int(v) for v in run.map_size],
        input_size=run.info.input_size,
    )


@router.get("/live/{method}/{sample_id:path}")
async def live_overlay(
    entry: Entry, registry: Registry, method: str, sample_id: str, size: Size, target: Target = None
) -> Response:
    saliency, _ = await _computed(entry, registry, method, sample_id, target)
    key = (entry.id, "live-png", method, sample_id, target, size)
    data = registry.images.get_or_make(
        key, lambda: render.encode(render.overlay(saliency, size, smooth=True))
    )
    return Response(data, media_type="image/png", headers=CACHE)


@router.get("/live-info/{method}/{sample_id:path}", response_model=schemas.LiveMap)
async def live_info(
    entry: Entry, registry: Registry, method: str, sample_id: str, target: Target = None
) -> schemas.LiveMap:
    _, info = await _computed(entry, registry, method, sample_id, target)
    return info


def _classes(live: LiveModel, entry: RunEntry) -> int:
    return live.classes or len(entry.run.class_names)


async def _computed(
    entry: RunEntry, registry: RunRegistry, method: str, sample_id: str, target: int | None
) -> tuple[np.ndarray, schemas.LiveMap]:
    """The map and numbers of one (method, sample, class): from the cache, else computed."""
    live = registry.live
    if live is None:
        raise HTTPException(409, NO_MODEL)
    if method not in list_methods():
        raise HTTPException(422, f"unknown method {method!r}; see salience methods")
    classes = _classes(live, entry)
    if target is not None and target >= classes:
        raise HTTPException(422, f"target: class index {target} is out of range 0..{classes - 1}")
    image_file(entry, sample_id)  # 404 for an unknown sample or a file outside the data root
    key = (entry.id, "live", method, sample_id, target)

    def cached() -> tuple[np.ndarray, schemas.LiveMap] | None:
        saliency, info = registry.images.get((*key, "map")), registry.images.get((*key, "info"))
        if saliency is None or info is None:
            return None
        return np.load(io.BytesIO(saliency)), schemas.LiveMap.model_validate_json(info)

    def compute() -> tuple[np.ndarray, schemas.LiveMap]:
        hit = cached()  # another request may have computed it while this one waited
        if hit is not None:
            return hit
        run = entry.run
        model = live.model_for(entry.id, entry.run)
        with unreadable("image cannot be read"):
            done = explain_sample(model, run, sample_id, method, target)
        saliency = done.maps[method].saliency.astype(np.float32)
        probs = done.probs.float()
        pred = int(probs.argmax())
        info = schemas.LiveMap.model_validate(
            {
                "method": method,
                "sample_id": sample_id,
                "target": done.index,
                "class": _name(run.class_names, done.index),
                "prob": float(probs[done.index]),
                "pred": pred,
                "pred_class": _name(run.class_names, pred),
                "pred_prob": float(probs[pred]),
                "map_size": list(saliency.shape),
                "seconds": round(done.maps[method].seconds, 4),
            }
        )
        buf = io.BytesIO()
        np.save(buf, saliency)
        registry.images.put((*key, "map"), buf.getvalue())
        registry.images.put((*key, "info"), info.model_dump_json(by_alias=True).encode())
        return saliency, info

    hit = cached()
    return hit if hit is not None else await live.run(compute)


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"
