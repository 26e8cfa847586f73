"""``salience cost --model SPEC --data DIR``: each method's cost under cheaper settings and how
much its maps change; a thin layer over :func:`salience.cost.measure_cost`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    DataRoot,
    Device,
    ModelSpec,
    PreprocessSpec,
    Weights,
    console,
    err_console,
    print_json,
    progress,
    user_errors,
)
from salience.errors import SalienceError
from salience.store.layout import write_json

DEFAULT_METHODS = ("gradcam", "integrated_gradients", "occlusion")
KIND_HELP = "precision, compile, int8, pruned or fewer (steps, samples, masks)"


@app.command()
@user_errors
def cost(
    model: ModelSpec,
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="Image folder or CSV/Parquet manifest; a few images suffice."
        ),
    ],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="NAME[:key=value,...] at full cost (the reference); repeat for several "
            f"(default: {', '.join(DEFAULT_METHODS)}).",
        ),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Images to measure on.")] = 4,
    min_spearman: Annotated[
        float,
        typer.Option(
            "--min-spearman",
            help="Recommend the cheapest setting whose maps keep at least this Spearman rank "
            "correlation with the reference maps.",
        ),
    ] = 0.9,
    min_topk_iou: Annotated[
        float,
        typer.Option("--min-topk-iou", help="... and at least this IoU of the top 10% pixels."),
    ] = 0.0,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            help=f"Leave out a kind of setting: {KIND_HELP}; repeatable. On a CPU, compile "
            "adds a warm-up of tens of seconds or more per method (not counted in ms/image).",
        ),
    ] = None,
    ratios: Annotated[
        str, typer.Option(help="Pruning ratios (channels removed), comma-separated.")
    ] = "0.1,0.25,0.5",
    compile_backend: Annotated[
        str, typer.Option("--compile-backend", help="torch.compile backend.")
    ] = "inductor",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "salience-cost"
    ),
    weights: Weights = None,
    device: Device = "auto",
    preprocess: PreprocessSpec = None,
    root: DataRoot = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print cost.json to stdout.")] = False,
) -> None:
    """Measure what each saliency method costs (ms per image, peak memory) under cheaper
    settings (bf16/fp16, torch.compile, int8 models for forward-only methods, pruned models,
    fewer steps/samples/masks) and how close their maps stay to the full-cost reference
    (Spearman, top-k IoU, change in deletion/insertion). Recommends the cheapest setting above
    --min-spearman; writes cost.json and cost.html."""
    from salience.checking import load_batch
    from salience.cost import KINDS, CostConfig, measure_cost
    from salience.cost.files import PAGE, REPORT
    from salience.cost.html import write_cost_html
    from salience.methods.spec import parse_method_spec
    from salience.models import load_model

    specs = dict(parse_method_spec(s) for s in (method or DEFAULT_METHODS))
    unknown = sorted(set(skip or []) - set(KINDS))
    if unknown:
        raise SalienceError(f"unknown --skip {', '.join(unknown)}; choose from {KIND_HELP}")
    config = CostConfig(
        kinds=tuple(k for k in KINDS if k not in (skip or [])),
        ratios=_ratios(ratios),
        min_spearman=min_spearman,
        min_topk_iou=min_topk_iou,
        compile_backend=compile_backend,
    )
    loaded = load_model(model, weights, device, preprocess=preprocess)
    x, paths = load_batch(data, loaded.preprocess, samples, loaded.device, root)
    err_console.print(f"timing the full-cost references of {', '.join(specs)} first")
    with progress() as bar:
        tid = bar.add_task("cost", total=len(specs), rate="")

        def plan(left: int, seconds: float) -> None:
            err_console.print(f"{left} cheaper settings to measure: about {seconds / 60:.1f} min")
            bar.update(tid, total=len(specs) + left)

        report = measure_cost(
            loaded.module,
            x,
            specs,
            config=config,
            cam_layer=loaded.cam_layer,
            on_step=lambda what: bar.update(tid, advance=1, rate=what),
            on_plan=plan,
        )
    report = {"model": model, **report, "images": paths}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / REPORT, report)
    write_cost_html(report, out / PAGE)
    if json_out:
        print_json(report)
        return
    console.print(_table(report))
    console.print(f"wrote {out / REPORT} and {out / PAGE}")


def _ratios(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SalienceError(f"--ratios takes numbers like 0.1,0.25, not {text!r}") from None
    if not values or not all(0 < v < 1 for v in values):
        raise SalienceError("--ratios must be between 0 and 1 (exclusive)")
    return values


def _table(report: dict[str, Any]) -> Table:
    table = Table(show_edge=False)
    for col in ("method", "setting", "ms/image", "peak MB", "Spearman", "top-k IoU", "Δ deletion"):
        table.add_column(col, justify="left" if col in ("method", "setting") else "right")
    for name, rows in report["methods"].items():
        best = report["recommended"].get(name)
        for setting, r in rows.items():
            mark = " ← recommended" if setting == best else ""
            if "error" in r:
                table.add_row(name, setting, "failed", "", "", "", r["error"][:40])
                continue
            table.add_row(
                name,
                setting + mark,
                f"{r['ms_per_image']:.1f}",
                f"{r['peak_mb']:.1f}",
                f"{r['spearman']:.3f}",
                f"{r['topk_iou']:.3f}",
                f"{r['deletion_delta']:+.3f}",
            )
    return table
