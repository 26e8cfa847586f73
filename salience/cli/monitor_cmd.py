"""``salience monitor BASELINE --data PATH --out DIR``: test windows of incoming images against a
reference run; exit code 3 when an alert fired (a CI or cron gate)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import (
    DataRoot,
    Device,
    Weights,
    console,
    err_console,
    print_json,
    progress,
    styled,
    user_errors,
)

GATE = 3


class Gate(str, Enum):
    saliency = "saliency"
    bbsd = "bbsd"
    any = "any"


# Which alerts make exit code 3; a held candidate (--candidate) fires with every choice.
GATES = {
    "saliency": {"saliency", "class", "candidate"},
    "bbsd": {"bbsd", "candidate"},
    "any": {"saliency", "class", "bbsd", "candidate"},
}


def _wait() -> None:
    """Keep the Prometheus listener up until Ctrl-C."""
    while True:
        time.sleep(3600)


@app.command()
@user_errors
def monitor(
    baseline: Annotated[
        Path, typer.Argument(help="Reference run (from `salience audit`).", show_default=False)
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Incoming images: an image folder or a CSV/Parquet manifest (labels optional).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Monitor folder; rerun to resume or to add batches.",
            show_default=False,
        ),
    ],
    window: Annotated[
        str | None,
        typer.Option(
            help="Images per window (windows follow the rows), or with --time-column a "
            "duration such as 1h or 15min. Default: the monitor folder's, else 200.",
            show_default=False,
        ),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time-column", help="Manifest column with each image's time.", show_default=False
        ),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            help="False-alarm rate per window (verified by splitting the baseline against itself).",
            min=0.0001,
            max=0.5,
        ),
    ] = 0.05,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model spec (default: the baseline's; must have its parameters)."
        ),
    ] = None,
    weights: Weights = None,
    candidate: Annotated[
        str | None,
        typer.Option(
            help="Shadow-run this new model version (spec or weights file of the baseline's "
            "architecture) on every window: agreement and silent map changes.",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option("--method", help="Baseline method(s) to monitor (default: all of them)."),
    ] = None,
    root: DataRoot = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 32,
    device: Device = "auto",
    workers: Annotated[int | None, typer.Option(min=0, help="Image-decoding processes.")] = None,
    calibration_splits: Annotated[
        int, typer.Option("--calibration-splits", min=10, help="Baseline self-splits.")
    ] = 100,
    prometheus: Annotated[
        str | None,
        typer.Option(
            help="Serve the latest window's scores for Prometheus at [HOST]:PORT (HOST "
            "defaults to 127.0.0.1) and keep serving after the windows until Ctrl-C.",
            show_default=False,
        ),
    ] = None,
    gate: Annotated[
        Gate,
        typer.Option(
            help="Which alerts make exit code 3: the saliency test, BBSD on the softmax "
            "outputs, or any of them. Each fires at about the false-alarm rate (--alpha) on "
            "unshifted windows, so `any` can fire at up to about twice that rate.",
        ),
    ] = Gate.any,
    json_out: Annotated[bool, typer.Option("--json", help="Print monitor.json to stdout.")] = False,
) -> None:
    """Compare each window of incoming images with the baseline run.

    Per window: KS tests on each saliency statistic (Holm-corrected), MMD on 8x8 map
    embeddings (permutation p-value) and, side by side, BBSD on the softmax outputs (Rabanser
    et al. 2019). Writes DIR/monitor.json; exit code 0 without alert, 3 when one fired.
    """
    from salience.audit import Progress
    from salience.monitor import monitor_data
    from salience.monitor.layout import SUMMARY
    from salience.monitor.prometheus import serve_metrics
    from salience.store import Run

    server = serve_metrics([out.expanduser().resolve()], prometheus) if prometheus else None
    loaded = cand = None
    if model is not None or weights is not None or candidate is not None:
        from salience.monitor.model import baseline_model

        run = Run.open(baseline)
        if model is not None or weights is not None:
            loaded = baseline_model(run, model, weights, device)
        if candidate is not None:
            cand = _candidate(run, candidate, device)
    with progress() as bar:
        tid = bar.add_task("monitor", total=None, rate="")

        def report(number: int, windows: int, p: Progress) -> None:
            bar.update(
                tid, description=f"window {number + 1}/{windows}", total=p.total, completed=p.done
            )
            rate = p.computed / p.elapsed if p.elapsed > 0 else 0.0
            bar.update(tid, rate=f"{rate:.1f} images/s")

        summary = monitor_data(
            baseline,
            data,
            out,
            window=window,
            time_column=time_column,
            model=loaded,
            candidate=cand,
            alpha=alpha,
            methods=method,
            root=root,
            batch_size=batch_size,
            device=device,
            workers=workers,
            calibration_splits=calibration_splits,
            progress=report,
        )
    if json_out:
        print_json(summary)
    else:
        show(summary)
        err_console.print(f"wrote {out / SUMMARY}")
    if server is not None:
        host, port = server[0].server_address[:2]
        err_console.print(f"serving metrics on http://{host}:{port}/metrics; Ctrl-C to stop")
        try:
            _wait()
        except KeyboardInterrupt:
            pass
        finally:
            server[0].shutdown()
    if gate_fired(summary, gate.value):
        raise typer.Exit(GATE)


def gate_fired(summary: dict[str, Any], gate: str = "any") -> bool:
    """Whether an alert of the ``gate``'s detectors fired on a window of this invocation's
    data (``data_windows``)."""
    mine = set(summary.get("data_windows", []))
    detectors = GATES[gate]
    return any(a["window"] in mine and a["detector"] in detectors for a in summary["alerts"])


def _candidate(run: Any, candidate: str, device: str) -> Any:
    """``--candidate``: a weights file for the baseline's architecture, or a model spec."""
    from salience.models import load_model

    spec, weights = candidate, None
    if (
        Path(candidate).suffix in (".pth", ".pt", ".bin", ".safetensors")
        and Path(candidate).is_file()
    ):
        recorded = run.info.recorded_model
        if recorded.weights and recorded.spec:  # a state dict for the baseline's architecture
            spec, weights = recorded.spec, candidate
    return load_model(
        spec, weights, device, preprocess=run.preprocess(), class_names=run.class_names
    )


def _p(value: float) -> str:
    return f"{value:.3g}"


def show(summary: dict[str, Any]) -> None:
    """The windows as a table, the alarms in red, and the measured false-alarm rate."""
    table = Table(title=f"monitor against {summary['baseline']}")
    for col in ("window", "start", "end", "images", "saliency p", "BBSD p", "moved"):
        table.add_column(col)
    for w in summary["windows"]:
        sal = styled(_p(w["p_value"]), "bold red") if w["alert"] else _p(w["p_value"])
        b = w["bbsd"]
        bb = styled(_p(b["p_value"]), "bold red") if b["alert"] else _p(b["p_value"])
        moved = ", ".join(c["class"] for c in w.get("classes", []) if c["moved"])
        table.add_row(str(w["index"]), str(w["start"]), str(w["end"]), str(w["n"]), sal, bb, moved)
    console.print(table)
    far = summary.get("false_alarm_rate")
    if far and far.get("measured") is not None:
        line = (
            f"false-alarm rate: set to {100 * far['target']:.1f}% per window; measured "
            f"{100 * far['measured']:.1f}% (BBSD {100 * far['bbsd']:.1f}%) on {far['splits']} "
            f"splits of the baseline against itself ({far['window']} images each)"
        )
        console.print(
            line if far.get("verified") else styled(line + ": above the set level", "yellow")
        )
    for a in summary["alerts"]:
        if a["detector"] == "candidate":
            console.print(styled(f"window {a['window']}: {a['reason']}", "bold red"))
        elif a["detector"] == "class":
            console.print(
                styled(
                    f"window {a['window']}: maps of {a['class']} moved (p {_p(a['p_value'])})",
                    "red",
                )
            )
        else:
            fired = ", ".join(a.get("tests", []))
            console.print(
                styled(
                    f"window {a['window']}: {a['detector']} alert (p {_p(a['p_value'])}) {fired}",
                    "bold red",
                )
            )
    if not summary["alerts"]:
        console.print(styled("no alert", "green"))
