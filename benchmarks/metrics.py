"""Perturbation-metric speed: salience vs. the forward floor, Quantus and pytorch-grad-cam.

Deletion/insertion and ROAD evaluate many perturbed copies of every image. salience builds the
copies chunk by chunk on the device and runs them forward only (no autograd graph). This script
times, on one model and one batch (min over ``--repeat`` runs, because the machine is shared):

- **floor**: the same number of rows, prebuilt, through the model in the same chunks under
  ``torch.inference_mode`` (steps x one forward pass). Target: salience / floor <= 1.2;
- **deletion / insertion** (salience) vs. **Quantus PixelFlipping** with the same pixels per
  step (its closest equivalent; Quantus has no insertion);
- **ROAD MoRF** (salience, all percentages in one call) vs. **pytorch-grad-cam**
  ``ROADMostRelevantFirstAverage`` and **Quantus** ``ROAD`` on the same percentages; salience's
  time is split into the batched imputation and the forward passes, and the forward part is
  compared with its floor;
- **imputation alone**: salience's batched multigrid-CG solve vs. pytorch-grad-cam's
  ``NoisyLinearImputer`` (one scipy spsolve per image and fraction, as in the ROAD reference).

    python benchmarks/metrics.py                      # ResNet-18 (random weights), 8 images
    python benchmarks/metrics.py --model efficientnet_lite0 --images 16 --steps 32
    python benchmarks/metrics.py --smoke              # seconds: 2 images, 64 px, few steps
    python benchmarks/metrics.py --json metrics.json

Quantus and pytorch-grad-cam are benchmark-only dependencies (``pip install .[bench,dev]``);
a missing one shows as "-". A peer that fails on this configuration shows its error.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import salience.metrics as M
from salience.methods._batching import chunk_size, spans
from salience.metrics._common import descending_order, ranks
from salience.metrics._imputation import impute

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Minimum wall time of ``repeat`` calls, and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def workload(spec: str, images: int, size: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model, a batch (real photos when available) and smooth saliency maps."""
    from salience.checking import load_batch
    from salience.models import load_model

    torch.manual_seed(0)
    loaded = load_model(spec, preprocess=f"imagenet:size={size},resize={size}")
    if SAMPLES.is_dir():
        x, _ = load_batch(SAMPLES / "labels.csv", loaded.preprocess, images, torch.device("cpu"))
    else:
        x = torch.randn(images, 3, size, size)
    noise = torch.randn(images, 1, size + 16, size + 16)
    maps = F.avg_pool2d(noise, 17, 1)[:, 0] + 1e-3 * torch.randn(images, size, size)
    return loaded.module.eval(), x, maps


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Minimum wall time of each function, run in turns (fair under a fluctuating load)."""
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def floor(model: nn.Module, rows: torch.Tensor, chunk: int) -> None:
    with torch.inference_mode():
        for a, b in spans(rows.shape[0], chunk):
            model(rows[a:b])


def deletion_rows(x: torch.Tensor, maps: torch.Tensor, steps: int) -> torch.Tensor:
    """The same perturbed rows deletion evaluates, prebuilt (for the floor)."""
    n, _, h, w = x.shape
    rank = ranks(descending_order(maps.flatten(1), torch.Generator().manual_seed(0)))
    counts = torch.round(torch.arange(steps + 1) * h * w / steps).long()
    mask = (rank[:, None] < counts[None, :, None]).view(n, steps + 1, 1, h, w)
    return torch.where(mask, torch.zeros_like(x)[:, None], x[:, None]).flatten(0, 1)


def quantus_pixel_flipping(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, steps: int
) -> Callable[[], Any]:
    import quantus

    h, w = x.shape[-2:]
    # curves, not AUCs: Quantus 0.6's AUC calls np.trapz, which numpy 2 removed
    metric = quantus.PixelFlipping(
        features_in_step=h * w // steps, perturb_baseline="black", disable_warnings=True
    )
    xb, yb, ab = x.numpy(), classes.numpy(), maps[:, None].numpy()
    return lambda: metric(
        model=model,
        x_batch=xb,
        y_batch=yb,
        a_batch=ab,
        device="cpu",
        softmax=True,
        batch_size=x.shape[0],
    )


def quantus_road(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    percentages: list[float],
) -> Callable[[], Any]:
    import quantus

    metric = quantus.ROAD(
        percentages=[100 * p for p in percentages], noise=0.01, disable_warnings=True
    )
    xb, yb, ab = x.numpy(), classes.numpy(), maps[:, None].numpy()
    return lambda: metric(
        model=model, x_batch=xb, y_batch=yb, a_batch=ab, device="cpu", batch_size=x.shape[0]
    )


def gradcam_road(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    percentages: list[float],
) -> Callable[[], Any]:
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    # grad-cam's MoRF at percentile q imputes the top (100 - q)% of the map
    metric = ROADMostRelevantFirstAverage(percentiles=[round(100 * (1 - p)) for p in percentages])
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    cams = maps.numpy()
    return lambda: metric(x, cams, targets, model)


def gradcam_imputation(x: torch.Tensor, removed: torch.Tensor) -> Callable[[], Any]:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    imputer = NoisyLinearImputer(noise=0.01)
    keep = (~removed).float()  # grad-cam's mask: 1 = keep
    return lambda: [imputer(x[i], keep[i]) for i in range(x.shape[0])]


def peer(name: str, make: Callable[[], Callable[[], Any]], repeat: int) -> float | str:
    try:
        fn = make()
    except ImportError:
        return "-"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return best_of(fn, repeat)[0]
    except Exception as exc:  # a peer failing on this configuration is a result, not a crash
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    model, x, maps = workload(args.model, args.images, args.size)
    n, _, h, w = x.shape
    pcts = [float(p) for p in args.percentages.split(",")]
    with torch.inference_mode():
        classes = model(x).argmax(1)
    chunk = chunk_size(model, x, "forward", args.batch_size)
    r: dict[str, Any] = {
        "model": args.model,
        "images": n,
        "size": h,
        "steps": args.steps,
        "percentages": pcts,
        "chunk": chunk,
        "threads": args.threads,
    }
    kw = {"batch_size": args.batch_size, "steps": args.steps}

    prebuilt = deletion_rows(x, maps, args.steps)
    times = interleaved(
        {
            "floor_deletion": lambda: floor(model, prebuilt, chunk),
            "deletion": lambda: M.deletion(model, x, maps, classes, **kw),
            "insertion": lambda: M.insertion(model, x, maps, classes, **kw),
        },
        args.repeat,
    )
    r.update(times)
    r["deletion_vs_floor"] = r["deletion"] / r["floor_deletion"]
    r["insertion_vs_floor"] = r["insertion"] / r["floor_deletion"]
    r["quantus_pixel_flipping"] = peer(
        "quantus", lambda: quantus_pixel_flipping(model, x, maps, classes, args.steps), args.repeat
    )

    road_rows = x.repeat_interleave(len(pcts), 0)
    road: dict[str, float] = {}

    def ours_road() -> None:
        t0 = time.perf_counter()
        res = M.road_morf(model, x, maps, classes, percentages=pcts, batch_size=args.batch_size)
        total = time.perf_counter() - t0
        if total < road.get("road_morf", math.inf):
            road.update(
                road_morf=total,
                road_imputation=res.details["imputation_seconds"],
                road_forward=total - res.details["imputation_seconds"],
            )

    times = interleaved(
        {"floor_road": lambda: floor(model, road_rows, chunk), "ours": ours_road}, args.repeat
    )
    r["floor_road"] = times["floor_road"]
    r.update(road)
    r["road_forward_vs_floor"] = r["road_forward"] / r["floor_road"]
    r["gradcam_road_morf"] = peer(
        "grad-cam", lambda: gradcam_road(model, x, maps, classes, pcts), args.repeat
    )
    r["quantus_road"] = peer(
        "quantus", lambda: quantus_road(model, x, maps, classes, pcts), args.repeat
    )

    rank = ranks(descending_order(maps.flatten(1), torch.Generator().manual_seed(0)))
    counts = torch.tensor([round(p * h * w) for p in pcts])
    removed = (rank[:, None] < counts[None, :, None]).view(n * len(pcts), h, w)
    rows_x = x.repeat_interleave(len(pcts), 0)
    r["imputation_rows"] = int(rows_x.shape[0])
    r["imputation_batched"] = best_of(lambda: impute(rows_x, removed, noise=0.01), args.repeat)[0]
    r["imputation_gradcam_spsolve"] = peer(
        "grad-cam", lambda: gradcam_imputation(rows_x, removed), 1
    )
    return r


def show(r: dict[str, Any]) -> None:
    def fmt(v: Any) -> str:
        return f"{v:8.3f} s" if isinstance(v, float) else str(v)

    print(
        f"{r['model']}: {r['images']} images {r['size']}x{r['size']}, {r['steps']} steps, "
        f"ROAD at {r['percentages']}, {r['chunk']} rows per pass, {r['threads']} threads"
    )
    lines = [
        ("forward floor, (steps + 1) x images rows", r["floor_deletion"]),
        ("salience deletion", r["deletion"]),
        ("salience insertion", r["insertion"]),
        ("Quantus PixelFlipping (same pixels per step)", r["quantus_pixel_flipping"]),
        ("forward floor, percentages x images rows", r["floor_road"]),
        ("salience ROAD MoRF, total", r["road_morf"]),
        ("  of which batched imputation", r["road_imputation"]),
        ("  of which forward passes", r["road_forward"]),
        ("pytorch-grad-cam ROADMostRelevantFirstAverage", r["gradcam_road_morf"]),
        ("Quantus ROAD", r["quantus_road"]),
        (f"imputation of {r['imputation_rows']} rows: salience batched", r["imputation_batched"]),
        (
            "imputation: grad-cam NoisyLinearImputer (spsolve per row)",
            r["imputation_gradcam_spsolve"],
        ),
    ]
    for label, value in lines:
        print(f"  {label:62s} {fmt(value)}")
    for key in ("deletion_vs_floor", "insertion_vs_floor", "road_forward_vs_floor"):
        flag = "ok" if r[key] <= 1.2 else "ABOVE 1.2x"
        print(f"  {key:62s} {r[key]:8.2f} x  {flag}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="torchvision:resnet18")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=32, help="deletion steps (H*W divisible)")
    p.add_argument("--percentages", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--smoke", action="store_true", help="tiny configuration, seconds")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    if args.smoke:
        args.images, args.size, args.steps, args.repeat = 2, 64, 8, 1
        args.percentages = "0.2,0.6"
    results = run(args)
    show(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
