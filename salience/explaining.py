"""Explain a handful of image files and write what ``salience explain`` shows.

:func:`image_paths` turns files, folders and manifests into the images to explain, naming
every file it skips and why; :func:`explain_images` runs the model and the methods on them and
writes, under ``out``: ``<image>/input.png`` (what the model saw), ``<image>/<method>.png``
(overlay), ``<image>/<method>.npy`` (the raw map, float32, not normalised), ``grid.png`` (the
first images x all methods) and ``explain.json``. An unreadable image is skipped with its
reason, never the end of the job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from salience.errors import SalienceError
from salience.images import is_image_file, load_image
from salience.methods import Attribution, from_spec, get_method
from salience.models import LoadedModel
from salience.outputs import select_output
from salience.store.layout import write_json
from salience.viz import Column, overlay, save_grid, save_png

REPORT = "explain.json"  # the payload :func:`explain_images` returns, under ``out``

DEFAULT_METHODS = ("gradcam", "integrated_gradients")
GRID_IMAGES = 12
Step = Callable[[str], None]  # called after each (image, method) with what was done


@dataclass(frozen=True)
class Skipped:
    """A file that was not explained, and why."""

    path: str
    reason: str


def image_paths(
    args: Sequence[str | Path], root: str | Path | None = None
) -> tuple[list[Path], list[Skipped]]:
    """The images that ``args`` name: files as given, every image file under a folder (sorted,
    recursively), every row of a CSV/Parquet manifest (read with data root ``root``)."""
    from salience.data import MANIFEST_SUFFIXES, read_dataset, refused

    paths: list[Path] = []
    skipped: list[Skipped] = []
    manifests = [Path(a) for a in args if Path(a).suffix.lower() in MANIFEST_SUFFIXES]
    if root is not None and not manifests:
        raise SalienceError("--root is the data root of a manifest; give the manifest as IMAGE")
    for arg in map(Path, args):
        if arg in manifests:
            dataset = read_dataset(arg, root)
            note = refused(dataset.items)
            if note:
                raise SalienceError(f"{arg}: {note}")
            paths.extend(dataset.root / item.path for item in dataset.items)
        elif arg.is_dir():
            found = sorted(p for p in arg.rglob("*") if p.is_file() or p.is_symlink())
            for p in found:
                if is_image_file(p):
                    paths.append(p)
                else:
                    skipped.append(
                        Skipped(str(p), f"not an image file ({p.suffix or 'no suffix'})")
                    )
            if not any(is_image_file(p) for p in found):
                raise SalienceError(f"{arg} holds no image files (JPEG, PNG, BMP, GIF, TIFF, WebP)")
        elif not arg.exists():
            raise SalienceError(f"image not found: {arg}")
        else:
            paths.append(arg)
    return paths, skipped


def read_images(
    paths: Sequence[Path], skipped: Sequence[Skipped] = ()
) -> tuple[list[tuple[Path, Image.Image]], list[Skipped]]:
    """Each readable image with its path; the unreadable ones join ``skipped`` with the reason.
    Raises when none can be read."""
    pictures: list[tuple[Path, Image.Image]] = []
    skipped = list(skipped)
    for path in paths:
        try:
            pictures.append((path, load_image(path)))
        except SalienceError as exc:
            skipped.append(Skipped(str(path), str(exc)))
    if not pictures:
        reasons = "; ".join(f"{Path(s.path).name}: {s.reason}" for s in skipped[:3])
        raise SalienceError(f"no image could be read ({reasons})")
    return pictures, skipped


@dataclass(frozen=True)
class Map:
    """One method's map of one image, as the model saw it."""

    method: str
    saliency: np.ndarray  # [H, W] float32, not normalised
    signed: bool
    seconds: float


@dataclass(frozen=True)
class Explained:
    """One image explained: the model's view, its class probabilities and each method's map."""

    view: Image.Image
    probs: torch.Tensor  # [K] softmax of the logits, on the CPU
    index: int  # the explained class
    maps: dict[str, Map]  # by label


def build_methods(
    specs: Sequence[str], cam_layer: str | None
) -> list[tuple[str, str, Attribution]]:
    """``(label, name, method)`` per spec; labels are file-safe and unique."""
    methods = [from_spec(spec, cam_layer) for spec in specs]  # unknown names fail first
    labels = _labels(list(specs), [m.name for m in methods])
    return [(label, m.name, m) for label, m in zip(labels, methods, strict=True)]


def explain_picture(
    loaded: LoadedModel,
    picture: Image.Image,
    methods: Sequence[tuple[str, str, Attribution]],
    target: int | None = None,
    on_step: Step | None = None,
) -> Explained:
    """Crop ``picture`` the way the model sees it and explain ``target`` (None: the predicted
    class) with each method from :func:`build_methods`."""
    view = loaded.preprocess.view(picture)
    x = loaded.preprocess.normalize(view).unsqueeze(0).to(loaded.device)
    probs = _probabilities(loaded.module, x)
    index = int(probs.argmax()) if target is None else target
    if index >= probs.numel():
        raise SalienceError(
            f"class index {index} is out of range; the model has {probs.numel()} outputs"
        )
    maps: dict[str, Map] = {}
    for label, name, method in methods:
        start = time.perf_counter()
        saliency = method.explain(loaded.module, x, index)[0].float().cpu().numpy()
        seconds = time.perf_counter() - start
        signed = bool(get_method(name).signed or saliency.min() < 0)
        maps[label] = Map(name, saliency, signed, seconds)
        if on_step is not None:
            on_step(name)
    return Explained(view, probs, index, maps)


def explain_images(
    loaded: LoadedModel,
    pictures: Sequence[tuple[Path, Image.Image]],
    specs: Sequence[str] = DEFAULT_METHODS,
    out: str | Path = "salience-explain",
    *,
    target: str | int | None = None,
    skipped: Sequence[Skipped] = (),
    on_step: Step | None = None,
) -> dict[str, Any]:
    """Top-5 classes and every method's map for each image (from :func:`read_images`); writes
    the files listed in the module docstring and returns the ``explain.json`` payload."""
    built = build_methods(specs, loaded.cam_layer)
    target_index = loaded.class_index(target) if target is not None else None

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems([p for p, _ in pictures])
    views: list[Any] = []
    results: list[dict[str, Any]] = []
    grid_maps: dict[str, list[tuple[np.ndarray, bool]]] = {label: [] for label, _, _ in built}
    for (path, picture), stem in zip(pictures, stems, strict=True):
        done = explain_picture(loaded, picture, built, target_index, _on(on_step, path.name))
        folder = out / stem
        folder.mkdir(parents=True, exist_ok=True)
        save_png(folder / "input.png", done.view)
        maps: dict[str, Any] = {}
        for label, m in done.maps.items():
            np.save(folder / f"{label}.npy", m.saliency)
            save_png(folder / f"{label}.png", overlay(done.view, m.saliency, signed=m.signed))
            maps[label] = {
                "method": m.method,
                "overlay": f"{stem}/{label}.png",
                "npy": f"{stem}/{label}.npy",
                "signed": m.signed,
                "min": float(m.saliency.min()),
                "max": float(m.saliency.max()),
                "seconds": round(m.seconds, 4),
            }
            if len(views) < GRID_IMAGES:
                grid_maps[label].append((m.saliency, m.signed))
        if len(views) < GRID_IMAGES:
            views.append(done.view)
        results.append(_image_result(path, stem, loaded, done.probs, done.index, maps))

    grid = _write_grid(out / "grid.png", views, grid_maps, results)
    payload = {
        "model": loaded.describe(),
        "methods": [
            {"label": label, "name": name, "params": method.params()}
            for label, name, method in built
        ],
        "target": target,
        "out": str(out),
        "grid": grid.name,
        "images": results,
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }
    write_json(out / REPORT, payload)
    return payload


def _on(on_step: Step | None, where: str) -> Step | None:
    """``on_step`` told which image a method ran on."""
    if on_step is None:
        return None
    step = on_step
    return lambda name: step(f"{name} on {where}")


def _labels(specs: list[str], names: list[str]) -> list[str]:
    """File-safe labels: the method name, or the whole spec when a name is used twice."""
    labels = []
    for spec, name in zip(specs, names, strict=True):
        text = name if names.count(name) == 1 else spec
        labels.append(re.sub(r"[^\w.=-]+", "_", text).strip("_"))
    if len(set(labels)) != len(labels):
        raise SalienceError("the same method spec is given twice; drop the repeated --method")
    return labels


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = re.sub(r"[^\w.-]+", "_", p.stem) or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _probabilities(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = select_output(module(x))
    return logits.float().softmax(1)[0].cpu()


def _image_result(
    path: Path,
    stem: str,
    loaded: LoadedModel,
    probs: torch.Tensor,
    index: int,
    maps: dict[str, Any],
) -> dict[str, Any]:
    k = min(5, probs.numel())
    values, indices = probs.topk(k)
    top = [
        {"index": int(i), "name": loaded.class_name(int(i)), "probability": round(float(v), 6)}
        for v, i in zip(values, indices, strict=True)
    ]
    return {
        "path": str(path),
        "name": stem,
        "input": f"{stem}/input.png",
        "top5": top,
        "target": {
            "index": index,
            "name": loaded.class_name(index),
            "probability": round(float(probs[index]), 6),
        },
        "maps": maps,
    }


def _write_grid(
    path: Path,
    views: list[Any],
    grid_maps: dict[str, list[tuple[np.ndarray, bool]]],
    results: list[dict[str, Any]],
) -> Path:
    columns = [
        Column(label, [m for m, _ in cells], signed=any(s for _, s in cells))
        for label, cells in grid_maps.items()
    ]
    titles = []
    for r in results[: len(views)]:
        t = r["target"]
        titles.append(f"{t['name'][:22]} {t['probability']:.0%}")
    return save_grid(path, views, columns, row_titles=titles)
