"""Images: thumbnails, saliency overlays, mask outlines, selection mean maps, original files.

Every image is looked up through the run (by sample id, or by a path the run recorded), then
checked to resolve inside the run's data root; anything else is a 404 that is logged. Every
picture is decoded and resized by the library (:func:`salience.images.load_image`,
``Run.view_image``, :class:`~salience.models.preprocess.Preprocess`), whose size caps turn an
image too large to decode or resize into :class:`ImageTooLargeError` (422 here). Original files
are served only as pictures (see :func:`original`), never as HTML, SVG or script.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response
from PIL import Image

from salience.errors import DamagedRunError, ImageTooLargeError, SalienceError
from salience.images import load_image
from salience.server import render
from salience.server.params import filter_key, image_size, sample_filter
from salience.server.routes.samples import pick_method
from salience.server.run_cache import RunEntry, RunRegistry, get_entry, get_registry
from salience.server.summaries import region_colors
from salience.store import Run, SampleFilter

log = logging.getLogger("salience.server")
router = APIRouter(prefix="/api/runs/{run_id}", tags=["images"])

Entry = Annotated[RunEntry, Depends(get_entry)]
Registry = Annotated[RunRegistry, Depends(get_registry)]
Size = Annotated[int, Depends(image_size)]
CACHE = {"Cache-Control": "private, max-age=600"}
# Picture formats every browser shows, told by their first bytes (never by the file's name).
MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
REENCODED_SIDE = 4096  # other formats (TIFF, PPM...) come back as PNG, at most this large


@contextmanager
def unreadable(detail: str) -> Iterator[None]:
    """A failure to read one image, map or mask becomes a 404 with ``detail``; a damaged run
    file (503) and an image over the size caps (422) go to the app's handlers."""
    try:
        yield
    except (DamagedRunError, ImageTooLargeError):
        raise
    except (SalienceError, KeyError, IndexError, OSError):
        raise HTTPException(404, detail) from None


def sniff(head: bytes) -> str | None:
    """The media type of a JPEG, PNG, GIF, BMP or WebP file from its first 16 bytes."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in MAGIC if head.startswith(magic)), None)


def refuse(entry: RunEntry, what: str) -> HTTPException:
    log.warning("refused %s for run %s", what, entry.id)
    return HTTPException(404, "not found")


def image_file(entry: RunEntry, sample_id: str) -> Path:
    """The sample's image file, resolved (symlinks too) and checked to lie in the data root."""
    run = entry.run
    try:
        path, root = run.image_path(sample_id), run.data_root
    except DamagedRunError:
        raise
    except (SalienceError, KeyError, IndexError):
        known = entry.cached("sample_ids", lambda run: set(entry.samples()["sample_id"]))
        if sample_id in known:  # the run refused the file itself
            raise refuse(entry, f"the image of sample {sample_id!r}") from None
        raise HTTPException(404, "no such sample in this run") from None
    # Run.image_path resolves symlinks and refuses paths outside the root; check it did.
    if not Path(path).is_relative_to(Path(root).resolve()) or not Path(path).is_file():
        raise refuse(entry, f"image {str(path)!r} outside the data root")
    return Path(path)


@router.get("/thumb/{sample_id:path}")
async def thumb(entry: Entry, registry: Registry, sample_id: str, size: Size) -> Response:
    """The image as the model saw it (resized and cropped), which is what the maps lie on."""

    def make() -> bytes:
        image_file(entry, sample_id)
        with unreadable("image cannot be read"):
            return render.encode(render.fit(entry.run.view_image(sample_id), size), "JPEG")

    data = await registry.images.get_or_make_async((entry.id, "thumb", sample_id, size), make)
    return Response(data, media_type="image/jpeg", headers=CACHE)


@router.get("/overlay/{method}/{sample_id:path}")
async def overlay(
    entry: Entry,
    registry: Registry,
    method: str,
    sample_id: str,
    size: Size,
    smooth: Annotated[bool, Query(description="upsample a smaller map bilinearly")] = False,
) -> Response:
    """The stored map as a transparent overlay at its own resolution (the browser stretches
    it), or with ``smooth`` upsampled to ``size`` by bilinear interpolation of its values."""
    pick_method(entry, method)

    def make() -> bytes:
        with unreadable("no map for this sample and method"):
            saliency = entry.run.saliency(sample_id, method)
        return render.encode(render.overlay(saliency, size, smooth=smooth))

    key = (entry.id, "overlay", method, sample_id, size, smooth)
    data = registry.images.get_or_make(key, make)
    return Response(data, media_type="image/png", headers=CACHE)


@router.get("/outline/{sample_id:path}")
async def outline(entry: Entry, registry: Registry, sample_id: str, size: Size) -> Response:
    """The region mask's boundaries on the model's view, coloured as in the run's legend."""

    def make() -> bytes:
        with unreadable("no such sample in this run"):
            mask = entry.run.mask(sample_id)
        if mask is None:
            raise HTTPException(404, "this image has no mask")
        viewed = viewed_mask(entry.run, np.asarray(mask))
        h, w = viewed.shape[:2]
        scale = min(1.0, size / max(h, w))
        dims = (max(1, round(w * scale)), max(1, round(h * scale)))
        colors = {i: color for i, (_, color) in region_colors(entry).items()}
        return render.encode(render.mask_outline(viewed, colors, dims))

    data = await registry.images.get_or_make_async((entry.id, "outline", sample_id, size), make)
    return Response(data, media_type="image/png", headers=CACHE)


def viewed_mask(run: Run, mask: np.ndarray) -> np.ndarray:
    """The mask cropped and resized like the image the model saw (nearest neighbour)."""
    view = None if mask.max(initial=0) > 255 else run.preprocess(interpolation="nearest")
    if view is None:
        return mask
    img = view.view(Image.fromarray(mask.astype(np.uint8)).convert("RGB"))
    return np.asarray(img)[..., 0]


@router.get("/mean/{method}")
def mean_map(
    entry: Entry,
    registry: Registry,
    method: str,
    filters: Annotated[SampleFilter, Depends(sample_filter)],
    size: Size,
) -> Response:
    """The mean saliency map of every image the filter selects."""
    pick_method(entry, method)

    def make() -> bytes:
        saliency = entry.run.mean_saliency(method, filters)
        return render.encode(render.heatmap(saliency, size))

    key = (entry.id, "mean", method, filter_key(filters), size, entry.run.status)
    data = registry.images.get_or_make(key, make)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.get("/files/{relpath:path}")
def original(entry: Entry, registry: Registry, relpath: str) -> Response:
    """The original image file at a path (relative to the data root) that the run recorded,
    served only as a picture: a JPEG, PNG, GIF, BMP or WebP file as it is, typed by its first
    bytes (not its name); another format the library decodes (TIFF, PPM...) re-encoded as PNG;
    anything else (HTML, SVG, text) only as a download (``attachment``), never to be shown."""
    parts = PurePosixPath(relpath).parts
    if not parts or relpath.startswith("/") or ".." in parts or "\\" in relpath or "\0" in relpath:
        raise refuse(entry, f"path {relpath!r}")
    by_path = entry.cached(
        "ids_by_path",
        lambda run: dict(
            zip(entry.samples()["path"].astype(str), entry.samples()["sample_id"], strict=True)
        ),
    )
    sample_id = by_path.get(relpath)
    if sample_id is None:
        raise refuse(entry, f"path {relpath!r} that is not in the run")
    path = image_file(entry, str(sample_id))
    with unreadable("image cannot be read"), path.open("rb") as f:
        media = sniff(f.read(16))
    if media is not None:
        return FileResponse(path, media_type=media, headers=CACHE)

    def reencode() -> bytes:
        try:
            return render.encode(render.fit(load_image(path), REENCODED_SIDE))
        except ImageTooLargeError:
            raise
        except SalienceError:
            return b""  # not a picture: offered as a download below

    data = registry.images.get_or_make((entry.id, "file", relpath), reencode)
    if data:
        return Response(data, media_type="image/png", headers=CACHE)
    log.warning("serving %s of run %s as a download: not an image", relpath, entry.id)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=path.name,
        content_disposition_type="attachment",
        headers=CACHE,
    )
