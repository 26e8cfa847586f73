"""``salience audit --model SPEC --data PATH --out RUN``: audit a model on a labelled image set.

Writes the run folder (see DESIGN.md, "Run directory") and ``RUN/summary.json``; rerunning
the same command resumes an interrupted run.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    ChannelsLast,
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
    progress,
    user_errors,
)


class Executor(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
@user_errors
def audit(
    model: ModelSpec,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Image folder (one sub-folder per class) or a "
            "CSV/Parquet manifest with path and label columns.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder; rerun to resume.", show_default=False)
    ],
    root: DataRoot = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="NAME[:key=value,...]; repeat for several "
            "(default: gradcam). See `salience methods`.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 32,
    device: Device = "auto",
    channels_last: ChannelsLast = False,
    precision: PrecisionOption = PrecisionChoice.fp32,
    compile_model: CompileOption = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Image-decoding processes. Default: on a GPU, CPU count - 1 (at most 4); "
            "on the CPU, none below 8 cores (the model already uses them all), else one per 4 "
            "cores (at most 4).",
            min=0,
            show_default=False,
        ),
    ] = None,
    map_size: Annotated[
        str, typer.Option("--map-size", help="Stored map size: S or HxW (float16).")
    ] = "64",
    classes: Annotated[
        Path | None,
        typer.Option(
            help="Class names in output order: .txt (one per line), .json or .csv "
            "(class_name column). Default: the model's, else the data's."
        ),
    ] = None,
    weights: Weights = None,
    preprocess: PreprocessSpec = None,
    ground_truth: Annotated[
        list[str] | None,
        typer.Option(
            "--ground-truth",
            help="Mask region(s) that are the object, for Shared "
            "Interest and 'outside the mask' (default: every annotated region).",
        ),
    ] = None,
    shard_size: Annotated[
        int, typer.Option("--shard-size", min=1, help="Images per stored shard.")
    ] = 1024,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Top classes kept per image.")] = 5,
    executor: Annotated[
        Executor,
        typer.Option(
            help="local: this process (decoding in --workers processes). ray: one Ray task "
            "per shard, on the cluster at --ray-address or a local one; use --shard-size "
            "to make several shards per worker.",
        ),
    ] = Executor.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster address (default: RAY_ADDRESS, else a local cluster). The run "
            "folder and the images must be on storage every node sees.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    log_to: LogTo = None,
) -> None:
    """Run a model over labelled images: predictions, saliency maps and their statistics."""
    from salience.audit import Progress
    from salience.audit import audit as run_audit
    from salience.data.manifest import read_class_names
    from salience.export.mlflow import log_audit, require_mlflow

    if log_to:
        require_mlflow()  # before the work, not after it

    names = read_class_names(classes) if classes is not None else None
    loaded = load_cli_model(
        model, weights, device, preprocess, channels_last, precision, compile_model
    )
    with progress() as bar:
        tid = bar.add_task("audit", total=None, rate="")
        first = True

        def report(p: Progress) -> None:
            nonlocal first
            if first:  # images resumed from disk do not count towards the speed
                bar.reset(tid, total=p.total, completed=p.done)
                first = False
            else:
                bar.update(tid, completed=p.done)
            rate = p.computed / p.elapsed if p.elapsed > 0 else 0.0
            bar.update(tid, rate=f"{rate:.1f} images/s")

        summary = run_audit(
            loaded,
            data,
            out,
            method or ["gradcam"],
            batch_size=batch_size,
            device=device,
            workers=workers,
            map_size=map_size,
            shard_size=shard_size,
            class_names=names,
            top_k=top_k,
            ground_truth=ground_truth,
            progress=report,
            root=root,
            executor=executor.value,
            ray_address=ray_address,
        )
    if log_to:
        err_console.print(f"logged to MLflow run {log_audit(out)}")
    if json_out:
        print_json(summary)
    else:
        show(summary)
        err_console.print(f"wrote {out} (summary.json)")
        err_console.print(
            f"next: salience serve {out}  (the explorer) · salience shortcuts {out} · "
            f"salience report {out}",
            soft_wrap=True,
        )


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def show(summary: dict[str, Any]) -> None:
    """The end-of-run summary as rich tables."""
    head = Table(title="audit", show_header=False)
    head.add_row("images", str(summary["images"]))
    head.add_row("predicted", str(summary["predicted"]))
    head.add_row("accuracy", _pct(summary["accuracy"]))
    head.add_row("balanced accuracy", _pct(summary["balanced_accuracy"]))
    skipped = summary["skipped"]
    reasons = ", ".join(f"{k}: {n}" for k, n in skipped["reasons"].items())
    head.add_row("skipped", f"{skipped['total']}" + (f" ({reasons})" if reasons else ""))
    if summary["warnings"]:
        head.add_row("warnings", ", ".join(f"{k}: {n}" for k, n in summary["warnings"].items()))
    for method, errors in summary["map_errors"].items():
        if errors:
            head.add_row(f"{method} map issues", ", ".join(f"{k}: {n}" for k, n in errors.items()))
    console.print(head)
    if summary["confused_pairs"]:
        pairs = Table(title="most confused")
        for col in ("true", "predicted", "images"):
            pairs.add_column(col)
        for p in summary["confused_pairs"]:
            pairs.add_row(p["true"], p["pred"], str(p["count"]))
        console.print(pairs)
    for method, rows in summary["outside_masks"].items():
        if not rows:
            continue
        table = Table(title=f"saliency outside the masks ({method})")
        for col in ("class", "share outside", "images"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["class"], _pct(r["share_outside"]), str(r["images"]))
        console.print(table)
