"""Attack cost and the acceptance figures of ``salience attack`` on EfficientNet-Lite0.

- **cost**: one batched forward+backward pass over ``--images`` images at 224 px, and a
  ``--steps``-step L-inf PGD (torchattacks, batched) on the same batch; target: PGD costs about
  ``steps`` x one pass (min over ``--repeat`` side-by-side runs, wall clock and CPU time,
  because the machine is shared);
- **acceptance** (``--acceptance``): on the shared ImageNet photos, PGD success at the default
  budgets on correctly classified images, and the fragility attack vs random sign noise of the
  same budget (top-1000 intersection, Spearman, labels kept) for gradient, gradcam and
  integrated_gradients.

    python benchmarks/attack.py                      # cost only, 16 images
    python benchmarks/attack.py --acceptance --json attack-bench.json
    python benchmarks/attack.py --smoke              # seconds: random weights, 4 images, 64 px
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from _data import IMAGENET_SAMPLES

from salience._guard import model_guard
from salience.attack import (
    AttackConfig,
    AttackRun,
    FragilityConfig,
    ManipulationConfig,
    PixelModel,
    run_attack,
)
from salience.attack.load import load_attack_batch, pixel_model
from salience.attack.prediction import get_attack
from salience.models import load_model

DATA = IMAGENET_SAMPLES / "labels.csv"


def timed(fn: Any) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call (CPU time is less sensitive to the
    other processes on a shared machine)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def cost(pm: PixelModel, pixels: torch.Tensor, steps: int, repeat: int) -> dict[str, float]:
    labels = pm.predict(pixels).argmax(1)

    def one_pass() -> None:
        p = pixels.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(pm(p), labels)
        torch.autograd.grad(loss, p)

    def pgd() -> None:
        run_attack(pm, pixels, labels, get_attack("pgd"), 2 / 255, steps=steps)

    passes, pgds = [], []
    with model_guard(pm.model):
        one_pass()  # warm-up
        for _ in range(repeat):  # side by side, so that both see the same load
            passes.append(timed(one_pass))
            pgds.append(timed(pgd))
    t_pass, t_pgd = min(w for w, _ in passes), min(w for w, _ in pgds)
    c_pass, c_pgd = min(c for _, c in passes), min(c for _, c in pgds)
    return {
        "images": len(pixels),
        "pass_s": t_pass,
        "pgd_s": t_pgd,
        "pgd_over_pass": t_pgd / t_pass,
        "pgd_over_pass_cpu": c_pgd / c_pass,
        "steps": steps,
    }


def save(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--acceptance", action="store_true")
    ap.add_argument("--fragility-steps", type=int, default=10)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--bisection", type=int, default=4)
    ap.add_argument("--no-cost", action="store_true", help="skip the cost measurement")
    ap.add_argument("--no-prediction", action="store_true", help="skip the PGD success rates")
    ap.add_argument(
        "--methods",
        default="gradient,gradcam,integrated_gradients:steps=16",
        help="comma-separated method specs for the acceptance run",
    )
    ap.add_argument(
        "--no-fragility", action="store_true", help="skip the fragility attack (acceptance)"
    )
    ap.add_argument(
        "--findings",
        action="store_true",
        help="also concentration vs vulnerability, detection, and the manipulation of gradient",
    )
    ap.add_argument("--manipulation-steps", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result: dict[str, Any] = {}
    if args.smoke:
        from salience.demo.model import ProfessionNet

        pm = PixelModel(ProfessionNet().eval(), (0.5,) * 3, (0.5,) * 3)
        result["cost"] = cost(pm, torch.rand(4, 3, 64, 64), 3, 1)
    else:
        loaded = load_model("efficientnet_lite0")
        pm = pixel_model(loaded)
        batch, paths = load_attack_batch(loaded, pm, DATA, args.images, None)
        if not args.no_cost:
            result["cost"] = cost(pm, batch.pixels, args.steps, args.repeat)
            print(json.dumps(result["cost"]), flush=True)
        if args.acceptance:
            config = AttackConfig(
                attacks=("pgd",),
                bisection=args.bisection,
                fragility=FragilityConfig(steps=args.fragility_steps),
                manipulation=ManipulationConfig(steps=args.manipulation_steps),
                manipulate=False,
                batch=args.images,
            )
            methods = [m for m in args.methods.split(",") if m]
            stage = {"t": time.perf_counter()}

            def tick(name: str, n: int) -> None:
                now = time.perf_counter()
                print(f"{name} +{n} ({now - stage['t']:.0f} s)", flush=True)

            run = AttackRun(pm, batch, methods, config, cam_layer=loaded.cam_layer, progress=tick)
            run.report.update({"model": "efficientnet_lite0", "images": paths})
            result["acceptance"] = run.report
            with model_guard(pm.model):  # stage by stage, saving after each (long on a CPU)
                if not args.no_prediction:
                    run.predictions()
                    save(args.json, result)
                for method in run.specs:
                    if not args.no_fragility:
                        run.fragility(method)
                        save(args.json, result)
                    if args.findings and not args.no_prediction:
                        run.concentration(method)
                        run.detect(method)
                        save(args.json, result)
                if args.findings and "gradient" in run.specs:
                    run.manipulation("gradient")
                    save(args.json, result)
    save(args.json, result)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
