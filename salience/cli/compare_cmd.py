"""``salience compare RUN_A RUN_B``: what changed between two models on the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    console,
    err_console,
    print_json,
    styled,
    user_errors,
)
from salience.store.layout import COMPARE, write_json


@app.command()
@user_errors
def compare(
    run_a: Annotated[Path, typer.Argument(help="The old model's run.")],
    run_b: Annotated[Path, typer.Argument(help="The new model's run, on the same images.")],
    method: Annotated[
        str | None, typer.Option("--method", "-m", help="Maps to compare (default: gradcam).")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="A run of A's model retrained with another seed (or re-audited with a "
            "stochastic method): its difference from A is the noise floor.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file to write.")] = Path(COMPARE),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Accuracy per class, fixed and broken images, map similarity and the region shift, each
    against a noise floor; "silent changes" keep their prediction but moved their evidence."""
    from salience.audit.compare import compare_runs
    from salience.store import Run

    ref = Run.open(reference) if reference is not None else None
    result = compare_runs(Run.open(run_a), Run.open(run_b), method, ref)
    write_json(out, result)
    if json_out:
        print_json(result)
        return
    show(result)
    err_console.print(f"wrote {out}", highlight=False)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def show(result: dict[str, Any]) -> None:
    """Accuracy, per-class change, region shift against its floor, silent changes."""
    acc = result["accuracy"]
    head = Table(
        title=f"compare ({result['method']}, {result['matched']} images)", show_header=False
    )
    head.add_row("accuracy", f"{_pct(acc['a'])} -> {_pct(acc['b'])}")
    bal = result["balanced_accuracy"]
    head.add_row("balanced accuracy", f"{_pct(bal['a'])} -> {_pct(bal['b'])}")
    head.add_row("fixed / broken", f"{result['fixed']['count']} / {result['broken']['count']}")
    silent = result["silent_changes"]
    floor_known = result["noise_floor"]["similarity"].get("spearman") is not None
    head.add_row(
        "silent changes",
        f"{silent['count']} ({_pct(silent['share'])}): same prediction, evidence moved"
        if floor_known
        else "not measured: " + result["noise_floor"]["kind"],
    )
    sim = result["similarity"]
    head.add_row(
        "map similarity (mean)",
        ", ".join(f"{k} {v['mean']:.2f}" for k, v in sim.items() if v and v["mean"] is not None),
    )
    console.print(head)
    classes = Table(title="per class")
    for col in ("class", "images", "accuracy A", "accuracy B", "change"):
        classes.add_column(col, justify="left" if col == "class" else "right")
    for c in result["per_class"]:
        classes.add_row(
            c["class"],
            str(c["support"]),
            _pct(c["accuracy_a"]),
            _pct(c["accuracy_b"]),
            f"{100 * c['change']:+.1f}",
        )
    console.print(classes)
    if result["region_shift"]:
        floor = result["noise_floor"]["region_shift"]
        shift = Table(
            title=f"where the saliency went (B - A; floor: {result['noise_floor']['kind']})"
        )
        for col in ("region", "share shift", "noise floor", "real"):
            shift.add_column(col, justify="left" if col == "region" else "right")
        for r, v in result["region_shift"].items():
            real = result["region_shift_real"][r]
            shift.add_row(
                r,
                "-" if v is None else f"{100 * v:+.1f} pts",
                "-" if floor.get(r) is None else f"{100 * floor[r]:.1f} pts",
                styled("yes", "bold") if real else "no",
            )
        console.print(shift)
