"""``salience explain IMAGE... --model SPEC``: top-5 classes and saliency maps per image.

A thin layer over :func:`salience.explaining.explain_images`, which says what is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    MODEL_HELP,
    ChannelsLast,
    CompileOption,
    DataRoot,
    Device,
    PrecisionChoice,
    PrecisionOption,
    PreprocessSpec,
    Weights,
    console,
    err_console,
    load_cli_model,
    print_json,
    styled,
    task,
    user_errors,
)
from salience.errors import SalienceError


@app.command()
@user_errors
def explain(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Image files or folders to explain; a CSV/Parquet manifest stands for its images.",
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
    precision: PrecisionOption = PrecisionChoice.fp32,
    compile_model: CompileOption = False,
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
    """Explain a model's predictions on images: top-5 classes, overlays, a grid and raw maps.

    IMAGE may be a file, a folder (every image file under it) or a CSV/Parquet manifest.
    """
    from salience.data.samples import write_sample
    from salience.explaining import (
        DEFAULT_METHODS,
        REPORT,
        explain_images,
        image_paths,
        read_images,
    )
    from salience.methods.spec import parse_method_spec

    specs = list(method or DEFAULT_METHODS)
    for spec in specs:
        parse_method_spec(spec)  # unknown names fail before the model loads
    paths, skipped = image_paths(list(images or []), root)
    if sample:
        paths.insert(0, write_sample(out))
    if not paths:
        raise SalienceError("give at least one IMAGE, or --sample to explain a generated picture")
    if model is None:
        if not sample:
            raise SalienceError("give the model with --model SPEC, e.g. --model efficientnet_lite0")
        model = "efficientnet_lite0"

    loaded = load_cli_model(
        model, weights, device, preprocess, channels_last, precision, compile_model
    )
    pictures, skipped = read_images(paths, skipped)  # all read before any is explained
    if target is not None:
        loaded.class_index(target)  # an unknown class fails before the progress bar
    with task("explaining", total=len(pictures) * len(specs)) as advance:
        payload = explain_images(
            loaded,
            pictures,
            specs,
            out,
            target=target,
            skipped=skipped,
            on_step=lambda what: advance(rate=what),
        )
    if json_out:
        print_json(payload)
        return
    for result in payload["images"]:
        _print_top5(result)
    for s in payload["skipped"]:
        err_console.print(
            styled("skipped", "yellow"), f"{s['path']}: {s['reason']}", soft_wrap=True
        )
    maps = sum(len(r["maps"]) for r in payload["images"])
    console.print(f"wrote {maps} overlays and raw maps, {out / payload['grid']} and {out / REPORT}")


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
