"""The case study end to end: generate data, train v1 and v2, audit, find shortcuts, compare.

v1 is trained on a biased split where the hat gives the profession away in 95% of images;
v2 on a balanced, larger split where the hat says nothing. Both are audited on a balanced test
split: v1 loses accuracy there and its saliency sits on the head; v2 looks at the uniform.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salience.audit import audit
from salience.audit.compare import compare_runs
from salience.audit.shortcuts import find_shortcuts
from salience.data.demo import DemoSet, generate, write
from salience.demo.model import PREPROCESS, ProfessionNet
from salience.demo.train import TrainConfig, train
from salience.errors import SalienceError
from salience.models import LoadedModel, load_model
from salience.report import write_report
from salience.store import Run
from salience.store.layout import COMPARE, SHORTCUTS, write_json

FACTORY = "salience.demo.model:profession_net"
REGIONS = ("head", "uniform", "background")
# Everything the demo writes into its folder; a rerun replaces exactly these. The marker is
# written first, so that a demo interrupted before demo.json can be rerun into the same folder.
MARKER = ".salience-demo"
SUMMARY = "demo.json"


def report_page(version: str) -> str:
    """The file name of a version's run report: ``report-v1.html``."""
    return f"report-{version}.html"


OUTPUTS = (
    "data",
    "models",
    "runs",
    SUMMARY,
    COMPARE,
    *(report_page(v) for v in ("v1", "v2", "v3")),
)

# (stage, done, total): "data", "train v1", "train v2", "audit v1", "audit v2", "analyse"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoConfig:
    size: int = 64  # image side in pixels
    train_v1: int = 2000  # biased training images
    train_v2: int = 3000  # balanced and enriched: more images, every hat with every profession
    test: int = 1000  # balanced test images
    epochs: int = 8
    hat_bias: float = 0.95
    contrast: float = 0.2
    seed: int = 0
    methods: tuple[str, ...] = ("gradcam", "gradient")  # the first is analysed
    adversarial: bool = False  # also v3: v2 fine-tuned with PGD adversarial training


SIZES: dict[str, DemoConfig] = {
    "full": DemoConfig(),
    "small": DemoConfig(size=48, train_v1=1500, train_v2=1500, test=400),
}


def prepare_out(out: Path) -> None:
    """Create ``out``, or clear the outputs of an earlier demo in it; refuse other folders."""
    if out.exists() and not out.is_dir():
        raise SalienceError(f"{out} is a file; give --out a folder")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SalienceError(
            f"{out} is not empty and holds no earlier demo; choose a new folder with --out"
        )
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by salience demo; rerunning the demo replaces its outputs\n")


def make_data(
    out: Path, config: DemoConfig, progress: Progress | None = None
) -> dict[str, DemoSet]:
    """The three splits, in memory and written to ``out/data`` (folders + manifests + masks)."""
    c = config
    splits = {
        "train": generate(
            c.train_v1, seed=c.seed * 10 + 1, size=c.size, hat_bias=c.hat_bias, contrast=c.contrast
        ),
        "train_balanced": generate(
            c.train_v2, seed=c.seed * 10 + 2, size=c.size, contrast=c.contrast
        ),
        "test": generate(c.test, seed=c.seed * 10 + 3, size=c.size, contrast=c.contrast),
    }
    for i, (name, data) in enumerate(splits.items()):
        write(data, out / "data", name)
        if progress is not None:
            progress("data", i + 1, len(splits))
    return splits


def train_model(
    data: DemoSet, config: DemoConfig, path: Path, stage: str, progress: Progress | None = None
) -> ProfessionNet:
    """Train a fresh :class:`ProfessionNet` on ``data`` and save its state dict to ``path``."""
    torch.manual_seed(config.seed)
    model = ProfessionNet(len(data.class_names))
    report = None if progress is None else (lambda step, total, _acc: progress(stage, step, total))
    train(
        model, data.images, data.labels, TrainConfig(epochs=config.epochs, seed=config.seed), report
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def robust_model(
    v2: Path, data: DemoSet, config: DemoConfig, path: Path, progress: Progress | None = None
) -> ProfessionNet:
    """v3: a copy of v2 fine-tuned with PGD adversarial training, saved to ``path``."""
    from salience.demo.robust import RobustConfig, adversarial_finetune

    model = ProfessionNet(len(data.class_names))
    model.load_state_dict(torch.load(v2, weights_only=True))
    report = None if progress is None else (lambda step, total: progress("train v3", step, total))
    adversarial_finetune(model, data.images, data.labels, RobustConfig(seed=config.seed), report)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def load_demo_model(weights: Path, size: int, class_names: Sequence[str]) -> LoadedModel:
    """A trained demo model as the audit loads it (recordable spec, weights and preprocessing)."""
    return load_model(
        FACTORY, weights=weights, preprocess=PREPROCESS.format(size=size), class_names=class_names
    )


def region_summary(run: Run, method: str) -> dict[str, Any]:
    """Balanced accuracy and mean share/density per region over the run's images, overall and
    per class (the numbers ``demo.json`` and the printed summary show)."""
    metrics = run.class_metrics()
    samples = run.samples(["sample_id", "label"])
    stats = run.stats(method).merge(samples, on="sample_id")
    cols = run.region_columns

    def means(frame: Any, kind: str) -> dict[str, float]:
        return {r: round(float(frame[f"{kind}_{cols[r]}"].mean()), 4) for r in REGIONS}

    per_class = {
        str(name): {"region_share": means(g, "share"), "region_density": means(g, "density")}
        for name, g in stats.groupby("label", sort=True)
    }
    return {
        "balanced_accuracy": round(float(np.nanmean(metrics["recall"])), 4),
        "region_share": means(stats, "share"),
        "region_density": means(stats, "density"),
        "per_class": per_class,
    }


def run_demo(
    out: str | Path, config: DemoConfig = SIZES["full"], progress: Progress | None = None
) -> dict[str, Any]:
    """Run the whole case study into ``out``; returns (and writes) the ``demo.json`` payload."""
    out = Path(out).expanduser()
    prepare_out(out)
    splits = make_data(out, config, progress)
    names = splits["test"].class_names
    runs: dict[str, Path] = {}
    robust: dict[str, Any] = {}
    versions = [("v1", "train"), ("v2", "train_balanced")]
    if config.adversarial:
        versions.append(("v3", "train_balanced"))
    for version, split in versions:
        weights = out / "models" / f"{version}.pt"
        if version == "v3":
            robust_model(out / "models" / "v2.pt", splits[split], config, weights, progress)
        else:
            train_model(splits[split], config, weights, f"train {version}", progress)
        model = load_demo_model(weights, config.size, names)
        if config.adversarial:
            from salience.demo.robust import RobustConfig, robustness

            test = splits["test"]
            robust[version] = robustness(
                model.module, test.images, test.labels, RobustConfig(seed=config.seed)
            )
        runs[version] = out / "runs" / version
        total = len(splits["test"])

        def report(p: Any, stage: str = f"audit {version}", total: int = total) -> None:
            if progress is not None:
                progress(stage, p.done, total)

        audit(
            model,
            out / "data" / "test.csv",
            runs[version],
            config.methods,
            map_size=config.size,
            progress=report,
        )
    method = config.methods[0]
    payload: dict[str, Any] = {"config": asdict(config), "method": method}
    n_steps = 2 * len(runs) + 1
    steps = iter(range(1, n_steps + 1))

    def step() -> None:
        if progress is not None:
            progress("analyse", next(steps), n_steps)

    for version, path in runs.items():
        run = Run.open(path)
        found = find_shortcuts(run, method)
        write_json(path / SHORTCUTS, found)
        payload[version] = {"run": str(path), **region_summary(run, method)}
        payload[f"flagged_{version}"] = found["flagged"]
        step()
    comparison = compare_runs(Run.open(runs["v1"]), Run.open(runs["v2"]), method)
    write_json(out / COMPARE, comparison)
    payload["compare"] = {
        "accuracy": comparison["accuracy"],
        "balanced_accuracy": comparison["balanced_accuracy"],
        "region_shift": comparison["region_shift"],
        "region_shift_real": comparison["region_shift_real"],
        "noise_floor": comparison["noise_floor"],
        "silent_changes": comparison["silent_changes"]["count"],
        "fixed": comparison["fixed"]["count"],
        "broken": comparison["broken"]["count"],
    }
    step()
    for version, path in runs.items():
        write_report(path, out / report_page(version))
        payload[f"report_{version}"] = str(out / report_page(version))
        step()
    if robust:
        for version, path in runs.items():
            gradient = region_summary(Run.open(path), "gradient")["region_density"]
            robust[version]["gradient_density"] = gradient
        payload["robustness"] = robust
    write_json(out / SUMMARY, payload)
    return payload
