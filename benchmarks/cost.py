"""Cost and fidelity of cheaper settings on EfficientNet-Lite0 (real weights, ImageNet photos).

Each method is measured against its own full-cost reference with the settings that matter
for it, and the figures are compared with the published guidance: integrated gradients needs
20-300 steps for completeness within 5% (Sundararajan et al., 2017), RISE used 4000 masks on
ResNet-50 (Petsiuk et al., 2018), SmoothGrad about 50 samples at 10-20% noise (Smilkov et al.,
2017). Timings share the machine with other work: the load average is printed with them.

    python benchmarks/cost.py                         # 2 photos, CPU-sized references
    python benchmarks/cost.py --images 4 --rise-masks 4000 --json cost-bench.json
    python benchmarks/cost.py --smoke                 # seconds: random weights, 64 px
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from _data import IMAGENET_SAMPLES

from salience.allocator import keep_freed_memory
from salience.checking import load_batch
from salience.cost import CostConfig, measure_cost
from salience.models import load_model

DATA = IMAGENET_SAMPLES


def plan(args: argparse.Namespace) -> list[tuple[str, dict[str, Any], CostConfig]]:
    """(method, full-cost parameters, the settings measured for it)."""
    ratios = (0.1, 0.25, 0.5)
    return [
        ("gradcam", {}, CostConfig(kinds=("precision", "pruned"), ratios=ratios)),
        (
            "integrated_gradients",
            {"steps": args.ig_steps},
            CostConfig(kinds=("fewer", "precision")),
        ),
        ("smoothgrad", {"samples": args.sg_samples, "noise": 0.15}, CostConfig(kinds=("fewer",))),
        ("rise", {"masks": args.rise_masks}, CostConfig(kinds=("fewer",))),
        (
            "occlusion",
            {"window": 32, "stride": args.occlusion_stride},
            CostConfig(kinds=("int8", "pruned", "precision"), ratios=ratios),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--ig-steps", type=int, default=128)
    parser.add_argument("--sg-samples", type=int, default=50)
    parser.add_argument("--rise-masks", type=int, default=1000)
    parser.add_argument("--occlusion-stride", type=int, default=16)
    parser.add_argument("--only", nargs="*", help="methods to run (default: all)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()  # as the salience command does
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.smoke:
        loaded = load_model("torchvision:resnet18", device="cpu", preprocess="imagenet:size=64")
        x = torch.rand(args.images, 3, 64, 64)
        args.ig_steps, args.sg_samples, args.rise_masks = 16, 8, 64
    else:
        loaded = load_model("efficientnet_lite0", device="cpu")
        x, _ = load_batch(DATA, loaded.preprocess, args.images, loaded.device)
    results: dict[str, Any] = {}
    for name, params, config in plan(args):
        if args.only and name not in args.only:
            continue
        load = os.getloadavg()[0]
        report = measure_cost(loaded.module, x, {name: params}, config=config)
        results[name] = {**report, "load_before": load, "load_after": os.getloadavg()[0]}
        print(f"\n{name} {params}  (load average {load:.1f} -> {os.getloadavg()[0]:.1f})")
        print(
            f"{'setting':<16}{'ms/img':>10}{'peak MB':>9}{'Spearman':>10}{'IoU10%':>8}{'Δdel':>8}"
        )
        for setting, r in report["methods"][name].items():
            if "error" in r:
                print(f"{setting:<16} failed: {r['error'][:60]}")
                continue
            print(
                f"{setting:<16}{r['ms_per_image']:>10.0f}{r['peak_mb']:>9.0f}"
                f"{r['spearman']:>10.3f}{r['topk_iou']:>8.3f}{r['deletion_delta']:>+8.3f}"
            )
        print(f"recommended (Spearman >= 0.9): {report['recommended'][name]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
