"""``salience attack --model SPEC --data DIR_OR_MANIFEST``: what adversarial perturbations do
to predictions and to saliency maps. Writes ``attack.json`` (see DESIGN.md), ``attack.html``
and example PNGs under ``--out``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import TaskID
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
    styled,
    user_errors,
)
from salience.store.layout import write_json

DEFAULT_METHODS = ("gradient", "gradcam", "integrated_gradients")


def parse_budget(text: str) -> float:
    """``"2/255"``, ``"0.0078"`` or ``"0.5"`` -> a float in pixel space (0..1)."""
    from salience.errors import SalienceError

    try:
        num, slash, den = text.partition("/")
        value = float(num) / float(den) if slash else float(num)
    except (ValueError, ZeroDivisionError):
        raise SalienceError(f"bad budget {text!r}; write e.g. 2/255 or 0.0078") from None
    if not 0 < value <= 1:
        raise SalienceError(f"budget {text!r} is outside (0, 1] in pixel space")
    return value


def _estimate(run: Any, units: dict[str, int]) -> float:
    """Seconds the run will take, from one timed forward+backward pass over the batch."""
    import torch

    from salience._guard import model_guard

    pixels = run.batch.pixels.detach().requires_grad_(True)
    t0 = time.perf_counter()
    with model_guard(run.pm.model), torch.enable_grad():
        torch.autograd.grad(run.pm(pixels).sum(), pixels)
    one = time.perf_counter() - t0
    steps = run.config.steps
    # prediction: ~steps passes per unit; maps: ~3 passes (double backward) per step and method
    chunks = -(-len(run.batch.pixels) // run.config.batch)
    return one * (
        units["prediction"] * steps
        + units["maps"] * 3 / chunks
        + units.get("manipulation", 0) * run.config.manipulation.steps * 4
    )


@app.command()
@user_errors
def attack(
    model: ModelSpec,
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Image folder (class sub-folders) or manifest.")
    ],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="NAME[:key=value]; repeat (default: gradient, gradcam, integrated_gradients).",
        ),
    ] = None,
    attack_name: Annotated[
        list[str] | None,
        typer.Option(
            "--attack",
            help="pgd, fgsm, pgd_l2 or fgsm_l2; repeat (default: pgd, "
            "fgsm). The first gets the bisection and the detector.",
        ),
    ] = None,
    eps: Annotated[
        list[str] | None,
        typer.Option(
            "--eps",
            help="Budget in pixel space (0..1), e.g. 2/255; repeat (default: "
            "0.5/255 1/255 2/255 4/255 for L-inf, 0.1 0.25 0.5 1 for L2).",
        ),
    ] = None,
    fragility_eps: Annotated[
        str, typer.Option(help="L-inf budget of the fragility attack and its random control.")
    ] = "2/255",
    manipulation_eps: Annotated[
        str, typer.Option(help="L-inf budget of the manipulation.")
    ] = "8/255",
    samples: Annotated[int, typer.Option(help="Images to attack, spread over the data.")] = 16,
    steps: Annotated[int, typer.Option(help="PGD steps.")] = 10,
    fragility_steps: Annotated[int, typer.Option(help="Fragility attack steps.")] = 20,
    beta: Annotated[float, typer.Option(help="Softplus surrogate beta.")] = 10.0,
    top_k: Annotated[int, typer.Option(help="k of the top-k intersection.")] = 1000,
    manipulation: Annotated[
        bool, typer.Option("--manipulation/--no-manipulation", help="Run the targeted attack.")
    ] = True,
    manipulation_method: Annotated[
        list[str] | None,
        typer.Option(
            help="Method the targeted attack runs on; repeat (default: each of gradient, "
            "input_x_gradient, integrated_gradients, gradcam among --method).",
        ),
    ] = None,
    manipulation_steps: Annotated[int, typer.Option(help="Targeted attack steps.")] = 30,
    examples: Annotated[int, typer.Option(help="Example images in the report.")] = 4,
    root: DataRoot = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("attack"),
    run_folder: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="A run from `salience audit`: write into RUN/attack instead of --out (the "
            "explorer's Attack tab shows it).",
        ),
    ] = None,
    weights: Weights = None,
    device: Device = "auto",
    preprocess: PreprocessSpec = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print attack.json to stdout.")] = False,
) -> None:
    """Attack predictions (PGD, FGSM from torchattacks) and explanations (fragility, targeted
    manipulation), relate vulnerability to saliency concentration, and test whether maps
    detect attacked images. Budgets are in pixel space and reported in input space too."""
    from salience.attack import (
        AttackConfig,
        AttackRun,
        FragilityConfig,
        ManipulationConfig,
        require_torchattacks,
        units,
    )
    from salience.attack.examples import write_examples
    from salience.attack.files import PAGE, REPORT, run_attack_folder
    from salience.attack.html import write_attack_html
    from salience.attack.load import load_attack_batch, pixel_model
    from salience.attack.prediction import get_attack
    from salience.models import load_model

    require_torchattacks()
    if run_folder is not None:
        out = run_attack_folder(run_folder)
    attacks = tuple(attack_name or ("pgd", "fgsm"))
    for a in attacks:
        get_attack(a)
    methods = list(method or DEFAULT_METHODS)
    config = AttackConfig(
        attacks=attacks,
        eps=tuple(parse_budget(e) for e in eps) if eps else None,
        steps=steps,
        fragility=FragilityConfig(parse_budget(fragility_eps), fragility_steps, beta, top_k, seed),
        manipulation=ManipulationConfig(
            eps=parse_budget(manipulation_eps), steps=manipulation_steps, beta=beta
        ),
        manipulate=manipulation,
        manipulation_methods=tuple(manipulation_method) if manipulation_method else None,
        examples=examples,
        seed=seed,
    )
    loaded = load_model(model, weights, device, preprocess=preprocess)
    pm = pixel_model(loaded)
    batch, paths = load_attack_batch(loaded, pm, data, samples, root)
    with progress() as bar:
        tasks: dict[str, TaskID] = {}
        totals = units(config, methods, len(batch.pixels))

        def advance(stage: str, n: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=totals.get(stage), rate="")
            bar.update(tasks[stage], advance=n)

        run = AttackRun(pm, batch, methods, config, cam_layer=loaded.cam_layer, progress=advance)
        seconds = _estimate(run, totals)
        err_console.print(f"estimated time: about {seconds:.0f} s on {loaded.device}")
        report = run.run(model)
    report["images"] = paths
    out.mkdir(parents=True, exist_ok=True)
    report["examples"] = write_examples(run, out, paths)
    write_json(out / REPORT, report)
    write_attack_html(report, out)
    if json_out:
        print_json(report)
        return
    show(report)
    console.print(f"wrote {out / REPORT} and {out / PAGE}")


def show(report: dict[str, Any]) -> None:
    p = report["prediction"]
    rates = ", ".join(
        f"{b['pixel_255']:.3g}/255: {r:.0%}" if r is not None else f"{b['pixel_255']:.3g}/255: n/a"
        for b, r in zip(p["budgets"], p["success_rate"], strict=True)
    )
    console.print(f"{p['attack']} success on {p['attacked']} correctly classified images: {rates}")
    table = Table(title="explanation fragility: attack vs random noise of the same budget")
    for col in (
        "method",
        "top-k attack",
        "top-k random",
        "Spearman attack",
        "Spearman random",
        "labels kept",
    ):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, m in report.get("methods", {}).items():
        cells = [
            m[k]
            for k in (
                "topk_intersection_attack",
                "topk_intersection_random",
                "spearman_attack",
                "spearman_random",
                "labels_kept",
            )
        ]
        table.add_row(name, *("n/a" if v is None else f"{v:.3f}" for v in cells))
    console.print(table)
    for name, d in report.get("detection", {}).items():
        s, f = d["saliency"]["auc"], d["softmax"]["auc"]
        if s is not None and f is not None:
            colour = "green" if s > f else "yellow"
            console.print(
                styled(f"{name}: detector AUC {s:.2f} (saliency) vs {f:.2f} (softmax)", colour)
            )
