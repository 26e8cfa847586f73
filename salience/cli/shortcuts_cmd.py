"""``salience shortcuts RUN``: recurring saliency strategies per class, flagged shortcuts.

Writes ``RUN/shortcuts.json`` (or ``--out``), which the explorer and the report show.
Class-wide findings are tested on the run's model (``run.json``) or on ``--model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    Device,
    PreprocessSpec,
    Weights,
    console,
    err_console,
    print_json,
    styled,
    user_errors,
)
from salience.store.layout import write_json


@app.command()
@user_errors
def shortcuts(
    run: Annotated[Path, typer.Argument(help="Run folder written by `salience audit`.")],
    method: Annotated[
        str | None, typer.Option("--method", "-m", help="Maps to analyse (default: gradcam).")
    ] = None,
    region: Annotated[
        str, typer.Option(help="With masks: the region that should decide the class.")
    ] = "uniform",
    min_inside: Annotated[
        float,
        typer.Option(
            "--min-inside",
            min=0.0,
            max=1.0,
            help="Flag a class when correctly classified images put less than this share "
            "of their saliency in --region.",
        ),
    ] = 0.5,
    grid: Annotated[int, typer.Option(min=2, help="SpRAy: maps are downsampled to GxG.")] = 16,
    neighbors: Annotated[int, typer.Option(min=1, help="SpRAy: kNN graph degree.")] = 10,
    max_clusters: Annotated[
        int, typer.Option("--max-clusters", min=1, help="SpRAy: most clusters per class.")
    ] = 8,
    max_area: Annotated[
        float,
        typer.Option(
            "--max-area",
            min=0.0,
            max=1.0,
            help="Class-wide: the largest box (share of the image) that counts as one place.",
        ),
    ] = 0.15,
    min_share: Annotated[
        float,
        typer.Option(
            "--min-share",
            min=0.0,
            max=1.0,
            help="Class-wide: flag when at least this share of a class's images peak in it.",
        ),
    ] = 0.6,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model to test class-wide findings on (default: the run's own, when it "
            "loads); same forms as `salience audit --model`.",
            show_default=False,
        ),
    ] = None,
    weights: Weights = None,
    device: Device = "auto",
    preprocess: PreprocessSpec = None,
    no_model: Annotated[
        bool, typer.Option("--no-model", help="Report class-wide findings from the maps only.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON file (default: RUN/shortcuts.json).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Find classes decided from the wrong evidence: region shares with masks, SpRAy clusters
    (Lapuschkin et al. 2019) always, and class-wide places where every image of a class is
    decided, tested by masking them when a model is at hand."""
    from salience.audit.class_shortcuts import ClassWideParams
    from salience.audit.shortcuts import ShortcutParams, find_shortcuts
    from salience.store import Run
    from salience.store.layout import SHORTCUTS

    params = ShortcutParams(
        region=region,
        min_inside=min_inside,
        grid=grid,
        neighbors=neighbors,
        max_clusters=max_clusters,
        class_wide=ClassWideParams(max_area=max_area, min_share=min_share),
    )
    opened = Run.open(run)
    loaded, why = _model(opened, model, weights, device, preprocess, no_model)
    result = find_shortcuts(opened, method, params, loaded, why)
    target = out if out is not None else opened.path / SHORTCUTS
    write_json(target, result)
    if json_out:
        print_json(result)
        return
    show(result)
    err_console.print(f"wrote {target}", highlight=False)


def _model(
    run: Any,
    spec: str | None,
    weights: Path | None,
    device: str,
    preprocess: str | None,
    skip: bool,
) -> tuple[Any, str]:
    """The model that tests class-wide findings and, when there is none, why."""
    from salience.audit.intervention import run_model
    from salience.audit.shortcuts import NO_MODEL

    if skip:
        return None, f"--no-model was given; {NO_MODEL}"
    if spec is not None:
        from salience.models import load_model

        return load_model(spec, weights, device, preprocess=preprocess), ""
    loaded, why = run_model(run, device)
    return loaded, why if loaded is not None else f"{why}; {NO_MODEL}"


def show(result: dict[str, Any]) -> None:
    """One row per class: the verdict, the region shares and the clusters."""
    regions = [r for r in result["regions"] if r != "background"]
    table = Table(title=f"shortcuts ({result['method']})")
    table.add_column("class")
    table.add_column("flagged")
    table.add_column("kind")
    table.add_column("accuracy", justify="right")
    for r in regions:
        table.add_column(f"{r} share / density", justify="right")
    table.add_column("clusters (flagged)", justify="right")
    table.add_column("reason")
    for c in result["classes"]:
        cells = [_share(c["region_share"].get(r), c["region_density"].get(r)) for r in regions]
        flagged = sum(cl["flagged"] for cl in c["clusters"])
        accuracy = "-" if c["accuracy"] is None else f"{100 * c['accuracy']:.0f}%"
        table.add_row(
            c["class"],
            styled("yes", "bold red") if c["flagged"] else "no",
            c.get("kind") or "-",
            accuracy,
            *cells,
            f"{len(c['clusters'])} ({flagged})",
            c["reason"],
        )
    console.print(table)
    few = [c for c in result["classes"] if c.get("too_few")]
    if few:
        largest = max(c["count"] for c in result["classes"])
        console.print(
            styled(f"{len(few)} of {len(result['classes'])} classes", "yellow"),
            f"have too few images to find strategies (the largest has {largest}); audit more "
            "images per class",
            soft_wrap=True,
        )


def _share(share: float | None, density: float | None) -> str:
    """A region's share of the saliency and its density, or a dash when no image had one."""
    if share is None or density is None:
        return "-"
    return f"{100 * share:.0f}% / {density:.1f}"
