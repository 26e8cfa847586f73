"""Perturbation-metric speed: salience vs. the forward floor, Quantus and pytorch-grad-cam.

Deletion/insertion and ROAD evaluate many perturbed copies of every image. salience builds the
copies chunk by chunk on the device and runs them forward only (no autograd graph). Every side
runs under the same row counter (``benchmarks/_work.py``); each side's batch knob is swept over
``--grid`` once, then its default and fastest setting run in turns, ``--repeat`` rounds, medians:

- **floor**: the same rows, prebuilt, through the model in salience's default chunks under
  ``torch.inference_mode``;
- **deletion / insertion** vs. **Quantus PixelFlipping** (its closest equivalent; Quantus has no
  insertion). Quantus counts each channel value as a feature and skips the untouched image, so
  its ``features_in_step`` is set to run the same rows per image (``steps + 1``); its knob is
  ``batch_size`` (images per pass);
- **ROAD MoRF** vs. **pytorch-grad-cam** ``ROADMostRelevantFirst`` per percentage (as its
  ``...Average`` does, but with ``return_diff=False``: the default scores the untouched images
  again for every percentage, twice the rows) and **Quantus** ``ROAD``;
- **imputation alone**: salience's batched multigrid-CG solve vs. pytorch-grad-cam's
  ``NoisyLinearImputer`` (one scipy spsolve per image and fraction, as in the ROAD reference).

    python benchmarks/metrics.py                      # ResNet-18 (random weights), 4 images
    python benchmarks/metrics.py --model efficientnet_lite0 --images 4
    python benchmarks/metrics.py --quick              # smoke run: 2 images, 32 px
    python benchmarks/metrics.py --json metrics.json

Quantus and pytorch-grad-cam are benchmark-only dependencies (``pip install .[bench,dev]``);
a missing one is left out. A peer that fails on this configuration shows its error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import salience.metrics as M
from salience.methods.batching import chunk_size, spans
from salience.metrics._common import descending_order, ranks
from salience.metrics._imputation import impute

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import IMAGENET_SAMPLES
from _work import Timed, compare, grid, load, print_table

SAMPLES = IMAGENET_SAMPLES


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


def quantus_features_in_step(shape: tuple[int, ...], steps: int) -> int:
    """Quantus' ``features_in_step`` that runs as many rows as salience's ``steps``.

    Quantus counts every channel value as a feature (the map is broadcast over the C channels),
    runs ``C*H*W / features_in_step`` steps, does not score the untouched image, and requires
    ``features_in_step`` to divide ``H*W``. Salience runs ``steps + 1`` rows per image, so the
    two agree when ``steps + 1 = C*k`` and ``k`` divides ``H*W``.
    """
    c, pixels = shape[0], math.prod(shape[1:])
    k, rest = divmod(steps + 1, c)
    if rest or pixels % k:
        raise ValueError(
            f"--steps {steps}: Quantus can run steps + 1 = {steps + 1} rows per image only if "
            f"it is {c} x a divisor of H*W = {pixels} (e.g. --steps {c * 8 - 1})"
        )
    return pixels // k


def quantus_pixel_flipping(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    steps: int,
    batch_size: int | None,
) -> Callable[[], Any]:
    import quantus

    # curves, not AUCs: Quantus 0.6's AUC calls np.trapz, which numpy 2 removed
    metric = quantus.PixelFlipping(
        features_in_step=quantus_features_in_step(x.shape[1:], steps),
        perturb_baseline="black",
        disable_warnings=True,
    )
    xb, yb, ab = x.numpy(), classes.numpy(), maps[:, None].numpy()
    return lambda: metric(
        model=model,
        x_batch=xb,
        y_batch=yb,
        a_batch=ab,
        device="cpu",
        softmax=True,
        batch_size=batch_size or 64,  # Quantus' default: 64 images per batch
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
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    # ROADMostRelevantFirstAverage, without its default return_diff=True: that scores the
    # untouched images once per percentile (2x the rows); salience scores the imputed rows only.
    # grad-cam's MoRF at percentile q imputes the top (100 - q)% of the map.
    metrics = [ROADMostRelevantFirst(round(100 * (1 - p))) for p in percentages]
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    cams = maps.numpy()
    return lambda: np.mean([m(x, cams, targets, model, return_diff=False) for m in metrics], 0)


def gradcam_imputation(x: torch.Tensor, removed: torch.Tensor) -> Callable[[], Any]:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    imputer = NoisyLinearImputer(noise=0.01)
    keep = (~removed).float()  # grad-cam's mask: 1 = keep
    return lambda: [imputer(x[i], keep[i]) for i in range(x.shape[0])]


def optional(make: Callable[[], dict[str, Callable[[], Any]]]) -> dict[str, Callable[[], Any]]:
    """A peer's settings, or none when the peer is not installed."""
    try:
        return make()
    except ImportError:
        return {}


def label(setting: int | None) -> str:
    return "default" if setting is None else f"batch_size={setting}"


def run(args: argparse.Namespace) -> dict[str, list[Timed]]:
    torch.set_num_threads(args.threads)
    model, x, maps = workload(args.model, args.images, args.size)
    n, _, h, w = x.shape
    pcts = [float(p) for p in args.percentages.split(",")]
    with torch.inference_mode():
        classes = model(x).argmax(1)
    chunk = chunk_size(model, x, "forward", None)
    settings = grid(args.grid)
    steps = args.steps

    def ours(metric: Callable[..., Any], **kw: Any) -> dict[str, Callable[[], Any]]:
        def call(s: int | None) -> Callable[[], Any]:
            return lambda: metric(model, x, maps, classes, batch_size=s, **kw)

        return {label(s): call(s) for s in settings}

    prebuilt = deletion_rows(x, maps, steps)
    road_rows = x.repeat_interleave(len(pcts), 0)
    results: dict[str, list[Timed]] = {}
    quiet = warnings.catch_warnings()
    with quiet:
        warnings.simplefilter("ignore")
        results["deletion"] = compare(
            model,
            {
                "salience deletion": ours(M.deletion, steps=steps),
                "salience insertion": {
                    "default": lambda: M.insertion(model, x, maps, classes, steps=steps)
                },
                "Quantus PixelFlipping": optional(
                    lambda: {
                        label(s): quantus_pixel_flipping(model, x, maps, classes, steps, s)
                        for s in settings
                    }
                ),
                "floor": {"default": lambda: floor(model, prebuilt, chunk)},
            },
            args.repeat,
        )
        results["ROAD MoRF"] = compare(
            model,
            {
                "salience road_morf": ours(M.road_morf, percentages=pcts),
                "grad-cam ROADMostRelevantFirst": optional(
                    lambda: {"default": gradcam_road(model, x, maps, classes, pcts)}
                ),
                "Quantus ROAD": optional(
                    lambda: {"default": quantus_road(model, x, maps, classes, pcts)}
                ),
                "floor": {"default": lambda: floor(model, road_rows, chunk)},
            },
            args.repeat,
        )
        rank = ranks(descending_order(maps.flatten(1), torch.Generator().manual_seed(0)))
        counts = torch.tensor([round(p * h * w) for p in pcts])
        removed = (rank[:, None] < counts[None, :, None]).view(n * len(pcts), h, w)
        results["imputation"] = compare(
            model,
            {
                "salience batched": {"default": lambda: impute(road_rows, removed, noise=0.01)},
                "grad-cam NoisyLinearImputer": optional(
                    lambda: {"default": gradcam_imputation(road_rows, removed)}
                ),
            },
            args.repeat,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--model", default="torchvision:resnet18", help="a salience.load_model spec")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument(
        "--steps", type=int, default=23, help="deletion steps; steps + 1 = 3 x a divisor of H*W"
    )
    p.add_argument("--percentages", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    p.add_argument(
        "--grid",
        default="default,1,4,16,64",
        help="batch_size settings swept on both sides ('default' = the library's own)",
    )
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--quick", "--smoke", action="store_true", help="smoke run: seconds")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.size, args.steps, args.repeat = 2, 32, 11, 1
        args.percentages, args.grid = "0.2,0.6", "default,4"
    header = (
        f"{args.model}: {args.images} images {args.size}x{args.size}, {args.steps} deletion "
        f"steps, ROAD at {args.percentages}, {args.threads} threads, medians of {args.repeat} "
        f"interleaved rounds; {load()} at start"
    )
    results = run(args)
    print(header + f"; {load()} at end")
    items = {"deletion": args.images, "ROAD MoRF": args.images}
    items["imputation"] = args.images * len(args.percentages.split(","))
    print_table(results, items, "images")
    print("imputation: images/s counts imputed rows (images x percentages); no model rows.")
    if args.json is not None:
        rows = {k: [asdict(r) for r in timed] for k, timed in results.items()}
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
