"""``salience check --model SPEC --data DIR_OR_MANIFEST``: which saliency methods to trust.

Writes ``report.json`` (see DESIGN.md) and a self-contained ``report.html`` under ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    ChannelsLast,
    DataRoot,
    Device,
    LogTo,
    ModelSpec,
    PreprocessSpec,
    Weights,
    console,
    err_console,
    print_json,
    styled,
    task,
    user_errors,
    write_json,
)


@app.command()
@user_errors
def check(
    model: ModelSpec,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Image folder (class sub-folders, or just images) or a CSV/Parquet manifest.",
        ),
    ],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="NAME[:key=value,...]; repeat for several (default: gradient, "
            "integrated_gradients, guided_backprop, gradcam). The random and constant controls "
            "always run.",
        ),
    ] = None,
    root: DataRoot = None,
    samples: Annotated[int, typer.Option(help="Images to check, spread over the data.")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "salience-check"
    ),
    weights: Weights = None,
    device: Device = "auto",
    channels_last: ChannelsLast = False,
    preprocess: PreprocessSpec = None,
    steps: Annotated[int, typer.Option(help="Deletion/insertion steps.")] = 20,
    layers: Annotated[
        int, typer.Option(help="Cascading randomization stages (0: one per layer).")
    ] = 8,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per forward pass (default: automatic).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
    log_to: LogTo = None,
) -> None:
    """Check which saliency methods can be trusted for a model: randomization, faithfulness
    (deletion/insertion, ROAD), robustness, complexity and cost, against random and constant
    controls."""
    from salience.checking import DEFAULT_METHODS, CheckConfig, load_batch, run_check, units
    from salience.export.mlflow import log_check, require_mlflow
    from salience.models import load_model

    if log_to:
        require_mlflow()  # before the work, not after it
    from salience.report.check_html import write_check_html

    specs = list(method or DEFAULT_METHODS)
    config = CheckConfig(steps=steps, layers=layers or None, seed=seed, batch_size=batch_size)
    loaded = load_model(model, weights, device, preprocess=preprocess, channels_last=channels_last)
    x, paths = load_batch(data, loaded.preprocess, samples, loaded.device, root)
    with task("checking", total=units(specs)) as advance:
        report = run_check(
            loaded.module,
            x,
            specs,
            config=config,
            model_name=model,
            cam_layer=loaded.cam_layer,
            progress=lambda step: advance(rate=step),
        )
    report["images"] = paths
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    write_check_html(report, out / "report.html")
    if log_to:
        err_console.print(f"logged to MLflow run {log_check(report, out)}")
    if json_out:
        print_json(report)
        return
    table = Table(title=f"salience check: {model} on {report['samples']} images")
    for col in (
        "method",
        "trusted",
        "rand. sim.",
        "deletion",
        "insertion",
        "ROAD MoRF",
        "ROAD LeRF",
        "max-sens.",
        "ms/img",
    ):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, e in {**report["methods"], **report["controls"]}.items():
        verdict = styled("yes", "green") if e["trusted"] else styled("no", "red")
        trusted = "control" if e["control"] else verdict
        cells = [
            e[k]
            for k in (
                "randomization_similarity",
                "deletion_auc",
                "insertion_auc",
                "road_morf",
                "road_lerf",
                "max_sensitivity",
                "ms_per_image",
            )
        ]
        table.add_row(name, trusted, *("n/a" if v is None else f"{v:.3f}" for v in cells))
    console.print(table)
    for e in report["methods"].values():
        console.print(styled(e["verdict"], "green" if e["trusted"] else "red"))
    console.print(f"wrote {out / 'report.json'} and {out / 'report.html'}")
