"""``salience check --model SPEC --data DIR_OR_MANIFEST``: which saliency methods to trust.

Writes ``report.json`` (see DESIGN.md) and a self-contained ``report.html`` under ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from salience.cli import app
from salience.cli._common import (
    ChannelsLastAuto,
    CompileOption,
    DataRoot,
    Device,
    LogTo,
    ModelSpec,
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
from salience.store.layout import write_json


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
            "integrated_gradients:steps=16, guided_backprop, and gradcam when the model has a "
            "layer for it). The random and constant controls always run.",
        ),
    ] = None,
    root: DataRoot = None,
    samples: Annotated[int, typer.Option(help="Images to check, spread over the data.")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "salience-check"
    ),
    weights: Weights = None,
    device: Device = "auto",
    channels_last: ChannelsLastAuto = None,
    precision: PrecisionOption = PrecisionChoice.fp32,
    compile_model: CompileOption = False,
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
    controls. Every number the verdict uses comes with a 95% bootstrap interval over the
    images; a verdict whose interval straddles its threshold says "not enough evidence".
    Prints an estimate first, then progress (plain lines when piped), and saves report.json
    after each method."""
    from salience.check import (
        CheckConfig,
        columns,
        default_methods,
        estimate_check,
        load_batch,
        run_check,
    )
    from salience.check.files import PAGE, REPORT
    from salience.export.mlflow import log_check, require_mlflow

    if log_to:
        require_mlflow()  # before the work, not after it
    from salience.report.check_html import write_check_html

    config = CheckConfig(steps=steps, layers=layers or None, seed=seed, batch_size=batch_size)
    loaded = load_cli_model(
        model, weights, device, preprocess, channels_last, precision, compile_model
    )
    settings = loaded.settings.describe()  # how the model ran (channels-last by default on CPUs)
    x, paths = load_batch(data, loaded.preprocess, samples, loaded.device, root)
    specs = list(method or default_methods(loaded.module, x, loaded.cam_layer))
    out.mkdir(parents=True, exist_ok=True)
    err_console.print("timing each method on one image to estimate the check's time")
    estimate = estimate_check(loaded.module, x, specs, config, loaded.cam_layer)
    err_console.print(
        f"checking {', '.join(specs)} and the controls on {len(paths)} images: about "
        f"{_duration(estimate.total)} (results are saved to {out / REPORT} as each "
        "method finishes)",
        soft_wrap=True,
    )

    def save(partial: dict[str, Any]) -> None:
        write_json(out / REPORT, {**partial, "images": paths, "settings": settings})

    with task("checking", total=max(1, round(estimate.total))) as advance:
        report = run_check(
            loaded.module,
            x,
            specs,
            config=config,
            model_name=model,
            cam_layer=loaded.cam_layer,
            progress=lambda e: advance(round(e.work), rate=f"{e.method}: {e.stage}"),
            estimate=estimate,
            on_method=save,
        )
    report["images"] = paths
    report["settings"] = settings
    write_json(out / REPORT, report)
    write_check_html(report, out / PAGE)
    if log_to:
        err_console.print(f"logged to MLflow run {log_check(report, out)}")
    if json_out:
        print_json(report)
        return
    console.print(check_table(report, model))
    for c in columns(short=True):
        console.print(Text.assemble((c.short, "bold"), f": {c.meaning}"))
    console.print(Text.assemble(("[lo, hi]", "bold"), ": the 95% interval over the images"))
    for name in report["ranking"]:
        e = report["methods"][name]
        console.print(styled(e["verdict"], "green" if e["trusted"] else "red"))
    console.print(styled(report["recommendation"], "bold"))
    console.print(f"wrote {out / REPORT} and {out / PAGE}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def check_table(report: dict[str, Any], model: str) -> Table:
    """The numbers the verdicts use, with their 95% intervals, best method first (arrows: which
    way is better; the HTML report has every number and what it means)."""
    from salience.check import columns

    cols = columns(short=True)
    table = Table(title=f"salience check: {model} on {report['samples']} images")
    table.add_column("method")
    table.add_column("verdict")
    for c in cols:
        table.add_column(f"{c.short} {'↓' if c.direction == 'lower' else '↑'}", justify="right")
    entries = {**{n: report["methods"][n] for n in report["ranking"]}, **report["controls"]}
    for name, e in entries.items():
        status = "control" if e["control"] else e.get("status", "failed")
        colour = {"trusted": "green", "not enough evidence": "yellow"}.get(status, "red")
        cells = [_cell(e.get(c.key), e.get("intervals", {}).get(c.key)) for c in cols]
        table.add_row(name, styled(status, "dim" if e["control"] else colour), *cells)
    return table


def _cell(value: float | None, span: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f"\n[{span[0]:.2f}, {span[1]:.2f}]" if span else "")
