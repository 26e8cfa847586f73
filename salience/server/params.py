"""Query parameters shared by several routes: the sample filter and the image sizes."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated

from fastapi import Query

from salience.errors import SalienceError
from salience.store import SampleFilter

SIZES = (16, 32, 64, 96, 128, 160, 192, 256, 384, 512)


async def sample_filter(
    true: Annotated[str | None, Query(description="true class name")] = None,
    pred: Annotated[str | None, Query(description="predicted class name")] = None,
    correct: Annotated[bool | None, Query()] = None,
    conf_min: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    conf_max: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    split: Annotated[str | None, Query()] = None,
    meta: Annotated[list[str] | None, Query(description="metadata filters as name=value")] = None,
    region: Annotated[str | None, Query(description="region for the share filter")] = None,
    share_min: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    share_max: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    errors: Annotated[bool, Query(description="only images that failed")] = False,
) -> SampleFilter:
    """FastAPI dependency turning the filter query parameters into a :class:`SampleFilter`."""
    pairs: dict[str, str] = {}
    for item in meta or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SalienceError(f"metadata filter {item!r} must look like name=value")
        pairs[name] = value
    if (share_min is not None or share_max is not None) and not region:
        raise SalienceError("a region share filter needs region=NAME")
    return SampleFilter(
        true=true or None,
        pred=pred or None,
        correct=correct,
        confidence_min=conf_min,
        confidence_max=conf_max,
        split=split or None,
        meta=pairs,
        region=region or None,
        region_share_min=share_min,
        region_share_max=share_max,
        errors=errors,
    )


async def image_size(size: Annotated[int, Query(ge=16, le=1024)] = 160) -> int:
    """Snap a requested size to a few fixed ones, so the cache is shared between clients."""
    return min(SIZES, key=lambda s: (abs(s - size), s))


def filter_key(f: SampleFilter) -> tuple[object, ...]:
    """A hashable key of a filter for caches."""
    return tuple(
        tuple(sorted(v.items())) if isinstance(v, dict) else v
        for v in (getattr(f, field.name) for field in fields(f))
    )
