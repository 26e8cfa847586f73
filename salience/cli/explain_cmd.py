"""``salience explain IMAGE... --model SPEC``: top-5 classes and saliency maps per image.

Writes, under ``--out``: ``<image>/input.png`` (what the model saw), ``<image>/<method>.png``
(overlay) and ``<image>/<method>.npy`` (the raw map, float32, not normalised), ``grid.png``
(the first 12 images x all methods) and ``explain.json``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    MODEL_HELP,
    ChannelsLast,
    DataRoot,
    Device,
    PreprocessSpec,
    Weights,
    console,
    print_json,
    task,
    user_errors,
    write_json,
)
from salience.errors import SalienceError

DEFAULT_METHODS = ("gradcam", "integrated_gradients")
GRID_IMAGES = 12


@app.command()
@user_errors
def explain(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Image files to explain; a CSV/Parquet manifest stands for its images.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
    weights: Weights = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="NAME[:key=value,...]; repeat for several (default: gradcam, "
            "integrated_gradients). See `salience methods`.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Class index or name (default: predicted class)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "salience-explain"
    ),
    device: Device = "auto",
    channels_last: ChannelsLast = False,
    preprocess: PreprocessSpec = None,
    root: DataRoot = None,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Also explain a picture the package draws (a wall clock); with no --model "
            "uses efficientnet_lite0. Needs no download.",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Explain a model's predictions on images: top-5 classes, overlays, a grid and raw maps."""
    from salience.data.samples import write_sample
    from salience.images import load_image
    from salience.methods import build_method, get_method, method_info
    from salience.methods.spec import parse_method_spec
    from salience.models import load_model
    from salience.viz import overlay, save_png

    specs = list(method or DEFAULT_METHODS)
    parsed = [parse_method_spec(s) for s in specs]  # unknown names fail before any work
    paths = _expand(list(images or []), root)
    if sample:
        paths.insert(0, write_sample(out))
    if not paths:
        raise SalienceError("give at least one IMAGE, or --sample to explain a generated picture")
    for p in paths:
        if not p.is_file():
            raise SalienceError(f"image not found: {p}")
    if model is None:
        if not sample:
            raise SalienceError("give the model with --model SPEC, e.g. --model efficientnet_lite0")
        model = "efficientnet_lite0"

    loaded = load_model(model, weights, device, preprocess=preprocess, channels_last=channels_last)
    pictures = [load_image(p) for p in paths]  # every image is checked before explaining
    target_index = loaded.class_index(target) if target is not None else None
    labels = _labels(specs, [name for name, _ in parsed])
    built = []
    for (name, params), label in zip(parsed, labels, strict=True):
        if loaded.cam_layer and "layer" in method_info(name).params and "layer" not in params:
            params = {**params, "layer": loaded.cam_layer}
        built.append((label, name, params, build_method(name, **params)))

    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(paths)
    views: list[Any] = []
    results: list[dict[str, Any]] = []
    grid_maps: dict[str, list[tuple[np.ndarray, bool]]] = {label: [] for label in labels}
    with task("explaining", total=len(paths) * len(built)) as advance:
        for path, picture, stem in zip(paths, pictures, stems, strict=True):
            view = loaded.preprocess.view(picture)
            x = loaded.preprocess.normalize(view).unsqueeze(0).to(loaded.device)
            probs = _probabilities(loaded.module, x)
            index = int(probs.argmax()) if target_index is None else target_index
            if index >= probs.numel():
                raise SalienceError(
                    f"class index {index} is out of range; the model has {probs.numel()} outputs"
                )
            folder = out / stem
            folder.mkdir(parents=True, exist_ok=True)
            save_png(folder / "input.png", view)
            maps: dict[str, Any] = {}
            for label, name, _, instance in built:
                start = time.perf_counter()
                saliency = instance.explain(loaded.module, x, index)[0].cpu().numpy()
                seconds = time.perf_counter() - start
                signed = bool(get_method(name).signed or saliency.min() < 0)
                np.save(folder / f"{label}.npy", saliency)
                save_png(folder / f"{label}.png", overlay(view, saliency, signed=signed))
                maps[label] = {
                    "method": name,
                    "overlay": f"{stem}/{label}.png",
                    "npy": f"{stem}/{label}.npy",
                    "signed": signed,
                    "min": float(saliency.min()),
                    "max": float(saliency.max()),
                    "seconds": round(seconds, 4),
                }
                if len(views) < GRID_IMAGES:
                    grid_maps[label].append((saliency, signed))
                advance(rate=f"{name} on {path.name}")
            if len(views) < GRID_IMAGES:
                views.append(view)
            results.append(_image_result(path, stem, loaded, probs, index, maps))

    grid = _write_grid(out / "grid.png", views, grid_maps, results)
    payload = {
        "model": loaded.describe(),
        "methods": [
            {"label": label, "name": name, "params": instance.params()}
            for label, name, _, instance in built
        ],
        "target": target,
        "out": str(out),
        "grid": grid.name,
        "images": results,
    }
    write_json(out / "explain.json", payload)
    if json_out:
        print_json(payload)
        return
    for result in results:
        _print_top5(result)
    console.print(
        f"wrote {len(results) * len(built)} overlays and raw maps, {grid} and "
        f"{out / 'explain.json'}",
        highlight=False,
    )


def _expand(args: list[Path], root: Path | None) -> list[Path]:
    """The image arguments, each manifest replaced by its rows' images; a refused row is a
    user error saying how many rows were refused and why."""
    from salience.data.dataset import MANIFEST_SUFFIXES, read_dataset, refused

    manifests = [a for a in args if a.suffix.lower() in MANIFEST_SUFFIXES]
    if root is not None and not manifests:
        raise SalienceError("--root is the data root of a manifest; give the manifest as IMAGE")
    out: list[Path] = []
    for arg in args:
        if arg not in manifests:
            out.append(arg)
            continue
        dataset = read_dataset(arg, root)
        note = refused(dataset.items)
        if note:
            raise SalienceError(f"{arg}: {note}")
        out.extend(dataset.root / item.path for item in dataset.items)
    return out


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
    from salience.outputs import select_output

    with torch.no_grad():
        logits = select_output(module(x))
    return logits.float().softmax(1)[0].cpu()


def _image_result(
    path: Path, stem: str, loaded: Any, probs: torch.Tensor, index: int, maps: dict[str, Any]
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
    from salience.viz import Column, save_grid

    columns = [
        Column(label, [m for m, _ in cells], signed=any(s for _, s in cells))
        for label, cells in grid_maps.items()
    ]
    titles = []
    for r in results[: len(views)]:
        t = r["target"]
        titles.append(f"{t['name'][:22]} {t['probability']:.0%}")
    return save_grid(path, views, columns, row_titles=titles)


def _print_top5(result: dict[str, Any]) -> None:
    table = Table(title=Path(result["path"]).name, title_justify="left", show_edge=False)
    table.add_column("#", justify="right")
    table.add_column("class")
    table.add_column("index", justify="right")
    table.add_column("probability", justify="right")
    target = result["target"]["index"]
    for rank, row in enumerate(result["top5"], start=1):
        mark = " ← explained" if row["index"] == target else ""
        table.add_row(str(rank), row["name"] + mark, str(row["index"]), f"{row['probability']:.1%}")
    if all(row["index"] != target for row in result["top5"]):
        t = result["target"]
        table.add_row("", f"{t['name']} ← explained", str(t["index"]), f"{t['probability']:.1%}")
    console.print(table)
