"""Time ``salience check`` on EfficientNet-Lite0 and print where the time goes.

Runs :func:`salience.checking.run_check` with the default methods on ``--samples`` photos of
``../shared/data/imagenet-samples`` and prints the seconds of every (method, stage) pair, as
reported by the check's own progress events, plus the total. ``--profile`` also prints the top
functions by cumulative time (cProfile); ``--json`` writes the report for a before/after
comparison (``--compare OLD.json`` prints the verdict numbers of both side by side).

    python benchmarks/check.py --samples 8
    python benchmarks/check.py --samples 8 --memory-format contiguous
    python benchmarks/check.py --samples 4 --profile --json /tmp/check.json
    python benchmarks/check.py --samples 8 --json new.json --compare old.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from _data import IMAGENET_SAMPLES

SAMPLES = IMAGENET_SAMPLES
NUMBERS = (
    "randomization_similarity",
    "randomization_mean",
    "insertion_minus_deletion",
    "road_lerf_minus_morf",
    "max_sensitivity",
    "sparseness",
)


class StageClock:
    """Seconds per (method, stage) from the check's progress events."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.last = time.perf_counter()

    def __call__(self, *event: Any) -> None:
        now = time.perf_counter()
        method, stage = _event(event)
        self.seconds[(method, stage)] += now - self.last
        self.last = now


def _event(event: tuple[Any, ...]) -> tuple[str, str]:
    if len(event) == 1 and hasattr(event[0], "method"):  # a CheckEvent
        return str(event[0].method), str(event[0].stage)
    if len(event) == 2:
        return str(event[0]), str(event[1])
    return "?", str(event[0])


def print_profile(clock: StageClock, total: float) -> None:
    methods = list(dict.fromkeys(m for m, _ in clock.seconds))
    stages = list(dict.fromkeys(s for _, s in clock.seconds))
    width = max(len(s) for s in stages) + 2
    print(f"{'method':24}" + "".join(f"{s:>{width}}" for s in stages) + f"{'total':>9}")
    for m in methods:
        row = [clock.seconds.get((m, s), 0.0) for s in stages]
        print(f"{m:24}" + "".join(f"{v:>{width}.1f}" for v in row) + f"{sum(row):>9.1f}")
    col = [sum(clock.seconds.get((m, s), 0.0) for m in methods) for s in stages]
    print(f"{'all':24}" + "".join(f"{v:>{width}.1f}" for v in col) + f"{sum(col):>9.1f}")
    print(f"wall time of the check: {total:.1f} s")


def compare(new: dict[str, Any], old: dict[str, Any]) -> None:
    print(f"\n{'method':24}{'number':28}{'before':>9}{'after':>9}  after's 95% interval")
    for section in ("methods", "controls"):
        for name, e in new[section].items():
            before = old.get(section, {}).get(name, {})
            for key in NUMBERS:
                a, b = before.get(key), e.get(key)
                ci = e.get("intervals", {}).get(key)
                span = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
                fa = "n/a" if a is None else f"{a:.3f}"
                fb = "n/a" if b is None else f"{b:.3f}"
                print(f"{name:24}{key:28}{fa:>9}{fb:>9}  {span}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--method", action="append", help="default: the check's defaults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory-format",
        choices=("auto", "contiguous", "channels-last"),
        default="auto",
        help="the model's weights; auto: as salience check (channels-last on a CPU)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions too")
    parser.add_argument("--json", type=Path, help="write report.json here")
    parser.add_argument("--compare", type=Path, help="an earlier --json to compare with")
    args = parser.parse_args()

    from salience import checking
    from salience.allocator import keep_freed_memory

    keep_freed_memory()  # as the salience command does
    from salience.checking import CheckConfig, load_batch, run_check
    from salience.models import load_model

    if not (SAMPLES / "labels.csv").exists():
        print(f"skipped: {SAMPLES} is absent")
        return
    nhwc = {"auto": None, "contiguous": False, "channels-last": True}[args.memory_format]
    loaded = load_model(args.model, device="cpu", channels_last=nhwc)
    x, _ = load_batch(SAMPLES / "labels.csv", loaded.preprocess, args.samples, loaded.device)
    methods = args.method or checking.default_methods(loaded.module, x, loaded.cam_layer)
    print(
        f"{args.model} ({'channels-last' if loaded.settings.channels_last else 'contiguous'}), "
        f"{x.shape[0]} images, methods {', '.join(methods)}; "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}"
    )
    clock = StageClock()
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    report = run_check(
        loaded.module,
        x,
        methods,
        config=CheckConfig(seed=args.seed),
        model_name=args.model,
        cam_layer=loaded.cam_layer,
        progress=clock,
    )
    total = time.perf_counter() - start
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    print_profile(clock, total)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.compare:
        compare(report, json.loads(args.compare.read_text()))


if __name__ == "__main__":
    main()
