"""Audit performance (issue 4's acceptance numbers, and issue 11's shared passes), four parts:

- **throughput**: ``salience audit`` end to end with Grad-CAM (decode in workers, model,
  statistics and writes in a writer thread) against the engine alone, ``salience.explain`` on
  the same images already decoded and preprocessed in memory, timed before and after the
  audit with the faster of the two counting (target: >= 90%);
- **rss**: peak resident memory (VmHWM) of audits of 2,000 and 20,000 generated images with a
  small CNN, each in a fresh process (target: the larger within 1.1x of the smaller);
- **store**: on a generated 100,000-image run written through the shard writer, random
  access to one map (target: < 20 ms) and the confusion matrix (target: < 200 ms), measured
  in a fresh process.

    python benchmarks/audit.py                         # the full benchmark
    python benchmarks/audit.py --quick                 # a smoke run (small sizes)
    python benchmarks/audit.py --parts store --store-images 100000 --json

Timings are wall clock on this machine, one run each (after a warm-up where it matters).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from _data import IMAGENET_SAMPLES
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- generated data


def make_images(folder: Path, n: int, size: int, classes: list[str], seed: int = 0) -> Path:
    """``n`` JPEG photos-like images (smooth colour fields plus noise), round-robin classes,
    and ``manifest.csv`` listing them."""
    rng = np.random.default_rng(seed)
    rows = ["path,label"]
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        cls = classes[i % len(classes)]
        (folder / f"c{i % len(classes):03d}").mkdir(parents=True, exist_ok=True)
        a, b, c = rng.random(3)
        base = np.stack([a * yy + (1 - a) * xx, b * xx, c * yy], -1) * 200
        img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        rel = f"c{i % len(classes):03d}/{i:06d}.jpg"
        Image.fromarray(img).save(folder / rel, quality=90)
        rows.append(f"{rel},{json.dumps(cls)}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def subset_manifest(manifest: Path, n: int) -> Path:
    lines = manifest.read_text().splitlines()
    out = manifest.with_name(f"manifest-{n}.csv")
    out.write_text("\n".join(lines[: n + 1]) + "\n")
    return out


# ----------------------------------------------------------------------------- throughput


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    import salience
    from salience.audit import audit
    from salience.audit.session import default_workers
    from salience.images import load_image

    cpu = torch.device("cpu")
    model = salience.load_model(args.model, device="cpu")
    classes = model.class_names[:10] or [f"class {i}" for i in range(10)]
    manifest = make_images(work / "tp", args.images, args.image_size, classes)
    paths = [work / "tp" / line.split(",")[0] for line in manifest.read_text().splitlines()[1:]]
    x = torch.stack([model.preprocess(load_image(p)) for p in paths])
    module = model.module

    def engine() -> float:
        t0 = time.perf_counter()
        for a in range(0, len(x), args.batch):
            salience.explain(module, x[a : a + args.batch], None, "gradcam")
        return len(x) / (time.perf_counter() - t0)

    salience.explain(module, x[: args.batch], None, "gradcam")  # warm-up (layer probe, caches)
    before = engine()
    t0 = time.perf_counter()
    audit(
        model,
        manifest,
        work / "tp-run",
        ["gradcam"],
        batch_size=args.batch,
        workers=args.workers,
        map_size=args.map_size,
        device="cpu",
    )
    end_to_end = args.images / (time.perf_counter() - t0)
    after = engine()  # the engine is timed before and after; the faster one counts
    best = max(before, after)
    return {
        "model": args.model,
        "images": args.images,
        "image_size": args.image_size,
        "batch": args.batch,
        "workers": args.workers if args.workers is not None else default_workers(cpu),
        "threads": torch.get_num_threads(),
        "engine_images_per_s": round(best, 2),
        "engine_runs_images_per_s": [round(before, 2), round(after, 2)],
        "audit_images_per_s": round(end_to_end, 2),
        "ratio": round(end_to_end / best, 3),
        "target": ">= 0.9",
    }


# ----------------------------------------------------------------------------- peak RSS


CHILD_RSS = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
from audit import rss_child
print(json.dumps(rss_child({manifest!r}, {out!r}, {workers})))
"""


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). ``ru_maxrss`` would do, except that Linux
    carries the parent's peak over a fork + exec, which would hide the child's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(manifest: str, out: str, workers: int) -> dict[str, Any]:
    """One audit of a tiny CNN at 64 px, in this (fresh) process; its peak memory."""
    import torch
    from torch import nn

    from salience.audit import audit
    from salience.models.preprocess import Preprocess

    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()

    model: Any = SimpleNamespace(
        module=module,
        preprocess=Preprocess(size=64, resize=64, mean=(0.5,) * 3, std=(0.5,) * 3),
        class_names=[f"class {i}" for i in range(10)],
        cam_layer=None,
        spec="benchmark:tiny-cnn",
    )
    t0 = time.perf_counter()
    summary = audit(
        model,
        manifest,
        out,
        ["gradcam"],
        batch_size=64,
        workers=workers,
        map_size=32,
        device="cpu",
    )
    self_kb = peak_rss_kb()
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "images": summary["images"],
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(self_kb / 1024, 1),
        "worker_peak_rss_mb": round(child_kb / 1024, 1),
    }


def rss(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sizes = sorted(args.rss_sizes)
    classes = [f"class {i}" for i in range(10)]
    manifest = make_images(work / "rss", sizes[-1], 64, classes, seed=1)
    results = {}
    for n in sizes:
        code = CHILD_RSS.format(
            bench=str(Path(__file__).parent),
            manifest=str(subset_manifest(manifest, n)),
            out=str(work / f"rss-run-{n}"),
            workers=1 if args.workers is None else args.workers,  # a decoding process's memory too
        )
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
        )
        if done.returncode:
            raise RuntimeError(done.stderr)
        results[str(n)] = json.loads(done.stdout.strip().splitlines()[-1])
    small, large = results[str(sizes[0])], results[str(sizes[-1])]
    return {
        **results,
        "ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "target": "<= 1.1",
    }


# ----------------------------------------------------------------------------- store timing


def generate_run(
    path: Path, n: int, classes: int, map_size: int, shard: int = 1024, seed: int = 0
) -> None:
    """A complete run of ``n`` synthetic images written through :class:`ShardWriter`."""
    import salience
    from salience.audit.stats import region_columns, stat_columns
    from salience.store import ShardWriter
    from salience.store.layout import write_json

    rng = np.random.default_rng(seed)
    regions = ["background", "head", "uniform"]
    cols = stat_columns(regions)
    names = [f"class {k:03d}" for k in range(classes)]
    manifest = {
        "salience": salience.__version__,
        "methods": {"gradcam": {}},
        "class_names": names,
        "regions": regions,
        "region_columns": region_columns(regions),
        "ground_truth": regions[1:],
        "meta_columns": [],
        "stat_columns": cols,
        "map_size": [map_size, map_size],
        "status": "complete",
        "shard_size": shard,
        "dataset": {"root": str(path / "data"), "count": n, "source": "synthetic"},
        "model": {"spec": "synthetic"},
    }
    write_json(path / "run.json", manifest)
    writer = ShardWriter(path, [], cols, pattern=True)
    for s, start in enumerate(range(0, n, shard)):
        m = min(shard, n - start)
        label = rng.integers(0, classes, m)
        pred = np.where(rng.random(m) < 0.7, label, rng.integers(0, classes, m))
        conf = rng.uniform(0.1, 1.0, m)
        ids = [f"{i:08d}" for i in range(start, start + m)]
        samples = {
            "sample_id": ids,
            "path": [f"c/{i}.jpg" for i in ids],
            "label": [names[k] for k in label],
            "label_index": label.tolist(),
            "pred": [names[k] for k in pred],
            "pred_index": pred.tolist(),
            "confidence": conf.tolist(),
            "correct": (label == pred).tolist(),
            "loss": (-np.log(conf)).tolist(),
            "topk_index": [[int(p)] for p in pred],
            "topk_prob": [[float(c)] for c in conf],
            "shard": [s] * m,
            "row": list(range(m)),
        }
        stats: dict[str, list[Any]] = {c: rng.random(m).tolist() for c in cols}
        stats.update(
            sample_id=ids, shard=[s] * m, row=list(range(m)), si_pattern=["distractor"] * m
        )
        maps = rng.standard_normal((m, map_size, map_size), dtype=np.float32)
        writer.write_shard(s, samples, {"gradcam": stats}, {"gradcam": maps})
    writer.write_index()  # as an audit does when it finishes


CHILD_STORE = """
import json, sys
sys.path.insert(0, {bench!r})
from audit import store_child
print(json.dumps(store_child({run!r}, {n}, {accesses})))
"""


def store_child(run_path: str, n: int, accesses: int) -> dict[str, Any]:
    from salience.store import Run

    rng = np.random.default_rng(1)

    def ms(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000

    t_open = ms(lambda: Run.open(run_path))
    run = Run.open(run_path)
    cm = [ms(run.confusion_matrix) for _ in range(5)]
    ids = [f"{int(i):08d}" for i in rng.integers(0, n, accesses + 1)]
    first = ms(lambda: run.saliency(ids[0], "gradcam"))  # builds the sample index
    times = np.array([ms(lambda i=i: run.saliency(i, "gradcam")) for i in ids[1:]])
    fresh = Run.open(run_path)
    metrics = ms(fresh.class_metrics)
    return {
        "images": n,
        "open_ms": round(t_open, 2),
        "confusion_matrix_ms": {
            "first": round(cm[0], 1),
            "median": round(float(np.median(cm)), 1),
            "max": round(max(cm), 1),
        },
        "class_metrics_ms": round(metrics, 1),
        "saliency_ms": {
            "first": round(first, 1),
            "p50": round(float(np.percentile(times, 50)), 3),
            "p99": round(float(np.percentile(times, 99)), 3),
            "max": round(float(times.max()), 3),
            "accesses": accesses,
        },
        "targets": {"saliency_ms": "< 20", "confusion_matrix_ms": "< 200"},
    }


def store(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    path = work / "store-run"
    t0 = time.perf_counter()
    generate_run(path, args.store_images, args.classes, args.store_map_size)
    seconds = time.perf_counter() - t0
    code = CHILD_STORE.format(
        bench=str(Path(__file__).parent), run=str(path), n=args.store_images, accesses=args.accesses
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {
        **out,
        "classes": args.classes,
        "map_size": args.store_map_size,
        "generate_s": round(seconds, 1),
        "run_mb": round(size / 2**20, 1),
    }


# ----------------------------------------------------------------------------- shared passes

SAMPLES = IMAGENET_SAMPLES


def backward_sharing() -> list[str]:
    """The methods that share one backward pass: the gradient CAMs, gradient, input x gradient."""
    from salience.methods import get_method, list_methods
    from salience.methods._shared import Sharing

    classes = {n: get_method(n) for n in list_methods()}
    return [n for n, c in classes.items() if issubclass(c, Sharing) and c.needs_grad]


@contextmanager
def sharing(on: bool) -> Iterator[None]:
    from salience.methods._shared import SHARE_ENV

    before = os.environ.get(SHARE_ENV)
    os.environ[SHARE_ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[SHARE_ENV]
        else:
            os.environ[SHARE_ENV] = before


def shared(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    import salience
    from salience.audit import audit
    from salience.audit.attribute import attribute
    from salience.audit.runner import build_methods
    from salience.images import load_image
    from salience.methods import explain_many

    if not (SAMPLES / "labels.csv").exists():
        return {"skipped": f"no photos at {SAMPLES}"}
    seven = backward_sharing()
    model = salience.load_model(args.shared_model, device="cpu")
    rows = (SAMPLES / "labels.csv").read_text().splitlines()[1 : args.shared_images + 1]
    files = [line.split(",")[0] for line in rows]
    manifest = work / "shared-manifest.csv"
    manifest.write_text("path\n" + "\n".join(str(SAMPLES / f) for f in files) + "\n")
    x = torch.stack([model.preprocess(load_image(SAMPLES / f)) for f in files])
    methods, _ = build_methods(seven, model.cam_layer)
    size = (args.map_size, args.map_size)
    batch = args.shared_batch

    last: dict[bool, list[Any]] = {}

    def engine(on: bool) -> None:
        with sharing(on):
            last[on] = [
                attribute(model.module, x[a : a + batch], methods, size)
                for a in range(0, len(x), batch)
            ]

    def end_to_end(on: bool, rep: int) -> None:
        with sharing(on):
            out = work / f"shared-{on}-{rep}"
            audit(
                model,
                manifest,
                out,
                seven,
                batch_size=batch,
                map_size=args.map_size,
                device="cpu",
                workers=0,
            )

    def alone(names: list[str]) -> None:
        for a in range(0, len(x), batch):
            explain_many(model.module, x[a : a + batch], {n: methods[n] for n in names})

    engine(True)  # warm-up: layer probe, chunk sizes, allocator
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def timed(key: str, fn: Any, *a: Any) -> None:
        """Wall and CPU (this process) ms per image; CPU time is what the load hides least."""
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*a)
        wall.setdefault(key, []).append(round((time.perf_counter() - t0) * 1000 / len(x), 1))
        cpu.setdefault(key, []).append(round((time.process_time() - c0) * 1000 / len(x), 1))

    loads = [os.getloadavg()[0]]
    for rep in range(args.repeat):
        for on in (True, False) if rep % 2 == 0 else (False, True):
            timed("engine_shared" if on else "engine_alone", engine, on)
        if args.shared_audit:
            for on in (True, False) if rep % 2 == 0 else (False, True):
                timed("audit_shared" if on else "audit_alone", end_to_end, on, rep)
        loads.append(os.getloadavg()[0])
    # equal where both modes chunked the batch alike (chunk sizes follow the free memory)
    same = all(
        torch.equal(s.maps[n], a.maps[n])
        for s, a in zip(last[True], last[False], strict=True)
        for n in seven
    )
    for name in ("gradcam", "gradient"):
        timed(f"{name} alone", alone, [name])
    timed("seven shared", alone, seven)

    def ratios(times: dict[str, list[float]], part: str) -> dict[str, Any]:
        pairs = zip(times[f"{part}_shared"], times[f"{part}_alone"], strict=True)
        each = [round(a / s, 2) for s, a in pairs]
        med = np.median(times[f"{part}_alone"]) / np.median(times[f"{part}_shared"])
        return {"median": round(float(med), 2), "each": each}

    parts = ["engine", "audit"] if args.shared_audit else ["engine"]
    return {
        "model": args.shared_model,
        "images": len(x),
        "batch": batch,
        "threads": torch.get_num_threads(),
        "wall_ms_per_image": wall,
        "cpu_ms_per_image": cpu,
        "wall_ratio": {p: ratios(wall, p) for p in parts},
        "cpu_ratio": {p: ratios(cpu, p) for p in parts},
        "maps_identical": same,
        "load_1min": [round(v, 1) for v in loads],
        "target": ">= 3",
    }


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="throughput,rss,store")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--model", default="torchvision:resnet18")
    p.add_argument("--images", type=int, default=512, help="throughput images")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: the audit's)"
    )
    p.add_argument("--map-size", type=int, default=64)
    p.add_argument(
        "--rss-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2000, 20000]
    )
    p.add_argument("--store-images", type=int, default=100_000)
    p.add_argument("--store-map-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--accesses", type=int, default=1000)
    p.add_argument("--keep", type=Path, help="keep generated data here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--shared-model", default="efficientnet_lite0")
    p.add_argument("--shared-images", type=int, default=32)
    p.add_argument("--shared-batch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="interleaved repeats (shared part)")
    p.add_argument(
        "--no-shared-audit",
        dest="shared_audit",
        action="store_false",
        help="shared part: time only the model stage, not whole audits",
    )
    args = p.parse_args()
    if args.quick:
        args.images, args.image_size, args.batch = 32, 128, 16
        args.rss_sizes, args.store_images, args.accesses = [200, 1000], 5000, 200
        args.shared_images, args.shared_batch, args.repeat = 8, 8, 1
    parts = {"throughput": throughput, "rss": rss, "store": store, "shared": shared}
    with tempfile.TemporaryDirectory(prefix="salience-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        for name in args.parts.split(","):
            t0 = time.perf_counter()
            results[name] = parts[name](args, work)
            results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
            if not args.json:
                print(f"{name}: {json.dumps(results[name], indent=2)}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
