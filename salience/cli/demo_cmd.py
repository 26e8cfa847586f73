"""``salience demo``: the profession case study end to end, on data generated locally."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import TaskID
from rich.table import Table

from salience.cli import app
from salience.cli._common import console, print_json, progress, user_errors
from salience.store.layout import COMPARE, SHORTCUTS

SIZES = ("small", "full")


@app.command()
@user_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for data, models, runs and reports.")
    ] = Path("salience-demo"),
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Open the explorer on both runs at the end.")
    ] = True,
    size: Annotated[
        str, typer.Option(help="full (64 px, ~1 min per model) or small (48 px, quicker).")
    ] = "full",
    port: Annotated[int, typer.Option(help="Explorer port.")] = 8765,
    adversarial: Annotated[
        bool,
        typer.Option(
            "--adversarial",
            help="Also train v3: v2 fine-tuned with PGD adversarial training (needs "
            "torchattacks); report accuracy under attack and gradient maps for v1/v2/v3.",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print demo.json.")] = False,
) -> None:
    """Generate profession images, train v1 (biased data: the hat gives the class away) and v2
    (balanced data), audit both, find shortcuts, compare them, write reports, explore."""
    from salience.demo.pipeline import SIZES as CONFIGS
    from salience.demo.pipeline import run_demo
    from salience.errors import SalienceError

    if size not in CONFIGS:
        raise SalienceError(f"unknown --size {size!r}; use one of: {', '.join(CONFIGS)}")
    config = CONFIGS[size]
    if adversarial:
        from dataclasses import replace

        from salience.attack import require_torchattacks

        require_torchattacks()
        config = replace(config, adversarial=True)
    with progress() as bar:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, rate="")
            bar.update(tasks[stage], completed=done, total=total)

        payload = run_demo(out, config, report)
    if json_out:
        print_json(payload)
    else:
        show(payload, out)
    if serve:
        from salience.cli.serve_cmd import serve as serve_runs

        serve_runs(
            [Path(payload["v1"]["run"]), Path(payload["v2"]["run"])], port=port, open_browser=True
        )


def _row(version: str, summary: dict[str, Any], flagged: list[str]) -> list[str]:
    d = summary["region_density"]
    return [
        version,
        f"{100 * summary['balanced_accuracy']:.1f}%",
        f"{d['head']:.1f}",
        f"{d['uniform']:.1f}",
        f"{d['background']:.1f}",
        ", ".join(flagged) or "none",
    ]


def _looks(version: str, summary: dict[str, Any]) -> str:
    d = summary["region_density"]
    where, other = ("head", "uniform") if d["head"] > d["uniform"] else ("uniform", "head")
    verdict = ": it learned the hat, not the uniform" if where == "head" else ", as it should"
    return (
        f"{version} scores {100 * summary['balanced_accuracy']:.0f}% on balanced data and looks "
        f"at the {where} (density {d[where]:.1f} vs {other} {d[other]:.1f}){verdict}."
    )


def show(payload: dict[str, Any], out: Path) -> None:
    """What to look at: accuracy on the balanced test split and where the saliency lies."""
    method = payload["method"]
    table = Table(
        title=f"balanced test split: {method} saliency density (share of saliency / share of area)"
    )
    for col in ("model", "balanced accuracy", "head", "uniform", "background", "shortcuts flagged"):
        table.add_column(col, justify="left" if col in ("model", "shortcuts flagged") else "right")
    table.add_row(*_row("v1 (biased data)", payload["v1"], payload["flagged_v1"]))
    table.add_row(*_row("v2 (balanced data)", payload["v2"], payload["flagged_v2"]))
    console.print(table)
    per_class = Table(title="per class: density head / uniform")
    per_class.add_column("class")
    per_class.add_column("v1", justify="right")
    per_class.add_column("v2", justify="right")
    for name, v1 in payload["v1"]["per_class"].items():
        v2 = payload["v2"]["per_class"][name]
        per_class.add_row(
            name,
            f"{v1['region_density']['head']:.1f} / {v1['region_density']['uniform']:.1f}",
            f"{v2['region_density']['head']:.1f} / {v2['region_density']['uniform']:.1f}",
        )
    console.print(per_class)
    cmp = payload["compare"]
    shift = cmp["region_shift"]
    floor = cmp["noise_floor"]["region_shift"]
    lines = [_looks(v, payload[v]) for v in ("v1", "v2")]
    lines.append(
        f"From v1 to v2 the head's share of the saliency moved {100 * shift['head']:+.0f} points "
        f"and the uniform's {100 * shift['uniform']:+.0f} (noise floor "
        f"{100 * floor['head']:.1f} and {100 * floor['uniform']:.1f}); "
        f"{cmp['silent_changes']} images kept their prediction while their evidence moved."
    )
    console.print("\n".join(lines), highlight=False)
    if "robustness" in payload:
        show_robustness(payload["robustness"])
    console.print(
        f"look at: {payload['report_v1']}, {payload['report_v2']}, "
        f"{out / COMPARE}, {Path(payload['v1']['run']) / SHORTCUTS}; "
        f"explore with: salience serve {out / 'runs' / 'v1'} {out / 'runs' / 'v2'}",
        highlight=False,
    )


def show_robustness(robust: dict[str, Any]) -> None:
    """Accuracy clean and under PGD, and where each version's plain gradient maps fall."""
    budgets = list(next(iter(robust.values()))["attacked_accuracy"])
    table = Table(title="robustness (L-inf PGD, pixel space) and plain gradient density")
    for col in ("model", "clean", *(f"PGD {b}" for b in budgets), "head", "uniform"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for version, r in robust.items():
        acc = [f"{100 * r['attacked_accuracy'][b]:.0f}%" for b in budgets]
        d = r["gradient_density"]
        table.add_row(
            version,
            f"{100 * r['clean_accuracy']:.0f}%",
            *acc,
            f"{d['head']:.2f}",
            f"{d['uniform']:.2f}",
        )
    console.print(table)
