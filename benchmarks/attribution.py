"""Attribution speed and memory: salience vs. Captum / pytorch-grad-cam vs. a plain loop.

One model (ResNet-18, random weights, seed 0), one input size, one machine, one run. Every
registered method is timed three ways, each in a fresh worker process (so peak RSS belongs to
that measurement alone):

- **salience**: ``salience.explain`` over the images in batches of ``--batch``;
- **peer**: the same method in Captum or pytorch-grad-cam at that library's best settings
  (batched, internal batch sizes set), where the method exists there;
- **floor**: a plain batched loop of only the passes the method needs, with frozen weights and
  no attribution bookkeeping (e.g. Integrated Gradients: 50 fwd+bwd rows per image, 16 rows
  per pass; perturbations: forward-only, 64 rows per pass); salience / floor shows overhead.

All three explain the same fixed target classes (the model's predictions, computed once).
A measurement shorter than 5 s is repeated until the runs add up to 5 s; the median is kept.
Methods with hundreds of passes per image (Score-CAM, Ablation-CAM, occlusion, RISE, Kernel
SHAP) run on ``--heavy-images`` images instead of ``--images``.

    python benchmarks/attribution.py                          # everything, ~ an hour on 2 cores
    python benchmarks/attribution.py --methods gradient,gradcam --size 64 --images 4 --batch 2
    python benchmarks/attribution.py --json > attribution.json

Peers are imported lazily (they are dev-only dependencies); a missing one shows as "-".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

HEAVY_PASSES = 100  # passes per image from which --heavy-images applies
FORWARD_ROWS = 64  # rows per forward pass for perturbation floors and peers
BACKWARD_ROWS = 16  # rows per fwd+bwd pass for multi-pass gradient floors
MIN_SECONDS = 5.0  # fast measurements are repeated until they add up to this; median reported
LAYER = "layer4"  # the CAM layer for every implementation (salience's automatic choice too)

Step = Callable[[nn.Module, torch.Tensor, torch.Tensor], None]
Impl = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], None]


@dataclass
class Setup:
    size: int
    batch: int
    images: int
    threads: int | None
    channels_last: bool = False


# ----------------------------------------------------------------------------- the workload


def build(setup: Setup) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    import torchvision

    if setup.threads:
        torch.set_num_threads(setup.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(
        setup.images, 3, setup.size, setup.size, generator=torch.Generator().manual_seed(1)
    )
    if setup.channels_last:  # every implementation gets the same NHWC model and inputs
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        target = torch.cat(
            [model(x[i : i + setup.batch]).argmax(1) for i in range(0, len(x), setup.batch)]
        )
    return model, x, target


def method_params(name: str) -> dict[str, Any]:
    """The parameters every implementation uses: each method's defaults, IG at 50 steps."""
    return {"steps": 50} if name == "integrated_gradients" else {}


def passes_per_image(name: str, model: nn.Module, size: int) -> int:
    """Model passes one image costs (forward or forward+backward), from the method's defaults."""
    from salience.methods import method_info

    params = {**method_info(name).params, **method_params(name)}
    if name == "integrated_gradients":
        return int(params["steps"])
    if name in ("smoothgrad", "vargrad"):
        return int(params["samples"])
    if name in ("scorecam", "ablationcam"):
        return 1 + _channels(model)
    if name == "occlusion":
        return _windows(size, params["window"], params["stride"])
    if name == "rise":
        return int(params["masks"])
    if name == "kernel_shap":
        return int(params["samples"])
    if name == "guided_gradcam":
        return 2
    return 1


def _channels(model: nn.Module) -> int:
    out: list[int] = []
    h = model.get_submodule(LAYER).register_forward_hook(lambda _m, _i, o: out.append(o.shape[1]))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
    finally:
        h.remove()
    return out[0]


def _windows(size: int, window: Any, stride: Any) -> int:
    w = window if isinstance(window, int) else window[0]
    s = stride if isinstance(stride, int) else stride[0]
    per_side = math.ceil(max(size - w, 0) / s) + 1
    return per_side * per_side


# ----------------------------------------------------------------------------- salience


def run_salience(name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch: int) -> None:
    import salience

    params = method_params(name)
    if "layer" in _accepted(name):
        params["layer"] = LAYER
    for i in range(0, len(x), batch):
        salience.explain(model, x[i : i + batch], t[i : i + batch], method=name, **params)


def _accepted(name: str) -> dict[str, Any]:
    from salience.methods import method_info

    return method_info(name).params


# ----------------------------------------------------------------------------- floors


def _grad_pass(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    inp = x.detach().requires_grad_(True)
    scores = model(inp).gather(1, t[:, None]).sum()
    torch.autograd.grad(scores, inp)


def _cam_pass(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    acts: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        leaf = out.detach().requires_grad_(True)
        acts.append(leaf)
        return leaf

    h = model.get_submodule(LAYER).register_forward_hook(hook)
    try:
        scores = model(x).gather(1, t[:, None]).sum()
    finally:
        h.remove()
    (g,) = torch.autograd.grad(scores, acts[0])
    (g.mean((2, 3), keepdim=True) * acts[0]).sum(1)


def _forward_pass(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def _batched(step: Step, repeats: int = 1) -> Impl:
    """Run ``step`` ``repeats`` times on every batch of ``b`` images."""

    def loop(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
        for i in range(0, len(x), b):
            for _ in range(repeats):
                step(m, x[i : i + b], t[i : i + b])

    return loop


def _perturbed_rows(rows: int) -> Impl:
    """``rows`` forward rows per image (perturbed copies), ``FORWARD_ROWS`` rows per pass."""

    def loop(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
        with torch.no_grad():
            for img in x:
                for start in range(0, rows, FORWARD_ROWS):
                    m(img.expand(min(FORWARD_ROWS, rows - start), *img.shape).clone())

    return loop


def _gradient_rows(rows: int) -> Impl:
    """``rows`` fwd+bwd rows per image (e.g. IG steps), ``BACKWARD_ROWS`` rows per pass."""

    def loop(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
        for i in range(0, len(x), b):
            xs = x[i : i + b].repeat_interleave(rows, 0)
            ts = t[i : i + b].repeat_interleave(rows, 0)
            for start in range(0, len(xs), BACKWARD_ROWS):
                _grad_pass(m, xs[start : start + BACKWARD_ROWS], ts[start : start + BACKWARD_ROWS])

    return loop


def floor(name: str, passes: int) -> Impl | None:
    """A plain loop of the passes ``name`` needs, or None when there is no fair one."""
    family = _family(name)
    if name == "eigencam":
        return _batched(_forward_pass)
    if family == "cam" and passes == 1:
        return _batched(_cam_pass)
    if family == "gradient":
        return _batched(_grad_pass, passes) if passes <= 2 else _gradient_rows(passes)
    if family == "perturbation" or passes >= HEAVY_PASSES:
        return _perturbed_rows(passes)
    return None


def _family(name: str) -> str:
    from salience.methods import get_method

    return get_method(name).family


# ----------------------------------------------------------------------------- peers


def _captum(cls_name: str, **kw: Any) -> Impl:
    def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
        import captum.attr as ca

        algo = getattr(ca, cls_name)(m)
        for i in range(0, len(x), b):
            algo.attribute(x[i : i + b], target=t[i : i + b], **kw)

    return run


def _captum_layer_gradcam(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    algo = LayerGradCam(m, m.get_submodule(LAYER))
    for i in range(0, len(x), b):
        cam = algo.attribute(x[i : i + b], target=t[i : i + b], relu_attributions=True)
        LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")


def _captum_guided_gradcam(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
    from captum.attr import GuidedGradCam

    algo = GuidedGradCam(m, m.get_submodule(LAYER))
    for i in range(0, len(x), b):
        algo.attribute(x[i : i + b], target=t[i : i + b])


def _captum_noise_tunnel(kind: str) -> Impl:
    def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
        from captum.attr import NoiseTunnel, Saliency

        samples = int(_accepted(kind)["samples"])
        algo = NoiseTunnel(Saliency(m))
        for i in range(0, len(x), b):
            algo.attribute(
                x[i : i + b],
                target=t[i : i + b],
                nt_type=kind,
                nt_samples=samples,
                nt_samples_batch_size=b,
                stdevs=0.15,
                abs=False,
            )

    return run


def _captum_occlusion(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
    from captum.attr import Occlusion

    p = _accepted("occlusion")
    w, s = p["window"], p["stride"]
    w = (w, w) if isinstance(w, int) else tuple(w)
    s = (s, s) if isinstance(s, int) else tuple(s)
    algo = Occlusion(m)
    for i in range(0, len(x), b):
        algo.attribute(
            x[i : i + b],
            sliding_window_shapes=(3, *w),
            strides=(3, *s),
            baselines=0.0,
            target=t[i : i + b],
            perturbations_per_eval=FORWARD_ROWS,
        )


def _gradcam_lib(cls_name: str, batch_size: int | None = None) -> Impl:
    def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor, b: int) -> None:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = getattr(pgc, cls_name)(model=m, target_layers=[m.get_submodule(LAYER)])
        if batch_size is not None:
            cam.batch_size = batch_size  # Score-CAM reads it as an attribute; Ablation-CAM too
        try:
            for i in range(0, len(x), b):
                cam(
                    input_tensor=x[i : i + b],
                    targets=[ClassifierOutputTarget(int(c)) for c in t[i : i + b]],
                )
        finally:
            cam.activations_and_grads.release()

    return run


PEERS: dict[str, list[tuple[str, Impl]]] = {
    "gradient": [("captum Saliency", _captum("Saliency", abs=False))],
    "input_x_gradient": [("captum InputXGradient", _captum("InputXGradient"))],
    "integrated_gradients": [
        ("captum IG", _captum("IntegratedGradients", n_steps=50)),
        (
            "captum IG internal_batch_size=64",
            _captum("IntegratedGradients", n_steps=50, internal_batch_size=64),
        ),
    ],
    "smoothgrad": [("captum NoiseTunnel", _captum_noise_tunnel("smoothgrad"))],
    "vargrad": [("captum NoiseTunnel", _captum_noise_tunnel("vargrad"))],
    "guided_backprop": [("captum GuidedBackprop", _captum("GuidedBackprop"))],
    "deconvnet": [("captum Deconvolution", _captum("Deconvolution"))],
    "guided_gradcam": [("captum GuidedGradCam", _captum_guided_gradcam)],
    "gradcam": [
        ("captum LayerGradCam+upsample", _captum_layer_gradcam),
        ("grad-cam GradCAM", _gradcam_lib("GradCAM")),
    ],
    "gradcam_pp": [("grad-cam GradCAMPlusPlus", _gradcam_lib("GradCAMPlusPlus"))],
    "xgradcam": [("grad-cam XGradCAM", _gradcam_lib("XGradCAM"))],
    "layercam": [("grad-cam LayerCAM", _gradcam_lib("LayerCAM"))],
    "hirescam": [("grad-cam HiResCAM", _gradcam_lib("HiResCAM"))],
    "eigencam": [("grad-cam EigenCAM", _gradcam_lib("EigenCAM"))],
    "scorecam": [
        (f"grad-cam ScoreCAM batch_size={FORWARD_ROWS}", _gradcam_lib("ScoreCAM", FORWARD_ROWS))
    ],
    "ablationcam": [
        (
            f"grad-cam AblationCAM batch_size={FORWARD_ROWS}",
            _gradcam_lib("AblationCAM", FORWARD_ROWS),
        )
    ],
    "occlusion": [(f"captum Occlusion ppe={FORWARD_ROWS}", _captum_occlusion)],
}


# ----------------------------------------------------------------------------- worker


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Time one implementation of one method in this (fresh) process."""
    limit = int(job["memory_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))  # allocations beyond fail cleanly
    setup = Setup(**job["setup"])
    model, x, t = build(setup)
    import psutil

    baseline_mb = psutil.Process().memory_info().rss / 2**20
    name, impl = job["method"], job["impl"]
    fn: Impl
    if impl == "salience":

        def fn(m: nn.Module, xx: torch.Tensor, tt: torch.Tensor, b: int) -> None:
            run_salience(name, m, xx, tt, b)

    elif impl == "floor":
        for param in model.parameters():  # as salience does: no weight gradients are needed
            param.requires_grad_(False)
        found = floor(name, passes_per_image(name, model, setup.size))
        assert found is not None
        fn = found
    else:
        fn = dict(PEERS[name])[impl]
    _grad_pass(model, x[: setup.batch], t[: setup.batch])  # warm up threads and the allocator
    if not job["heavy"]:
        fn(model, x[:1], t[:1], 1)
    times: list[float] = []
    while not times or (sum(times) < MIN_SECONDS and len(times) < 25):
        start = time.perf_counter()
        fn(model, x, t, setup.batch)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]  # median: one slow run on a shared machine
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "images": len(x),
        "peak_rss_mb": peak_kb / 1024,
        "baseline_rss_mb": baseline_mb,
    }


def _spawn(job: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        if "can't allocate memory" in last or "MemoryError" in last:
            return {"error": f"out of memory (over {job['memory_gb']:g} GB)"}
        return {"error": last[:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver


@dataclass
class Row:
    method: str
    passes: int
    images: int
    salience_ips: float | None
    peer: str
    peer_ips: float | None
    ratio: float | None
    floor_ips: float | None
    floor_ratio: float | None
    salience_rss_mb: float | None
    peer_rss_mb: float | None
    baseline_rss_mb: float | None  # the worker before any attribution: torch, model, inputs
    error: str | None = None


def _ips(result: dict[str, Any] | None) -> float | None:
    if not result or "error" in result:
        return None
    return result["images"] / result["seconds"]


def run(args: argparse.Namespace) -> list[Row]:
    import salience

    names = salience.list_methods() if not args.methods else args.methods.split(",")
    for n in names:
        salience.get_method(n)  # unknown names fail here, listing the known ones
    probe = Setup(args.size, args.batch, 1, args.threads, args.channels_last)
    model, _, _ = build(probe)
    rows: list[Row] = []
    for name in names:
        passes = passes_per_image(name, model, args.size)
        heavy = passes >= HEAVY_PASSES
        n_img = args.heavy_images if heavy else args.images
        setup = asdict(
            Setup(args.size, min(args.batch, n_img), n_img, args.threads, args.channels_last)
        )
        base = {"method": name, "setup": setup, "heavy": heavy, "memory_gb": args.memory_gb}
        ours = _spawn({**base, "impl": "salience"})
        low = _spawn({**base, "impl": "floor"}) if floor(name, passes) is not None else None
        peer_names = [] if args.no_peers else [peer for peer, _ in PEERS.get(name, [])]
        for peer_name in peer_names or ["-"]:
            theirs = _spawn({**base, "impl": peer_name}) if peer_name != "-" else None
            s, p, f = _ips(ours), _ips(theirs), _ips(low)
            error = next((r["error"] for r in (ours, theirs, low) if r and "error" in r), None)
            rows.append(
                Row(
                    method=name,
                    passes=passes,
                    images=n_img,
                    salience_ips=s,
                    peer=peer_name,
                    peer_ips=p,
                    ratio=s / p if s and p else None,
                    floor_ips=f,
                    floor_ratio=s / f if s and f else None,
                    salience_rss_mb=ours.get("peak_rss_mb"),
                    peer_rss_mb=theirs.get("peak_rss_mb") if theirs else None,
                    baseline_rss_mb=ours.get("baseline_rss_mb"),
                    error=error,
                )
            )
            if not args.json:
                print(f"  {name:22s} {peer_name:34s} done", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(v: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    title = (
        f"ResNet-18 (random weights), {args.size} px, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
        + (", channels-last" if args.channels_last else "")
    )
    table = Table(title=title, title_justify="left")
    for col, just in [
        ("method", "left"),
        ("passes/img", "right"),
        ("imgs", "right"),
        ("salience img/s", "right"),
        ("peer", "left"),
        ("peer img/s", "right"),
        ("ratio", "right"),
        ("floor ratio", "right"),
        ("peak RSS MB (salience/peer)", "right"),
        ("note", "left"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        rss = f"{num(r.salience_rss_mb, '{:.0f}')} / {num(r.peer_rss_mb, '{:.0f}')}"
        table.add_row(
            r.method,
            str(r.passes),
            str(r.images),
            num(r.salience_ips, "{:.2f}"),
            r.peer,
            num(r.peer_ips, "{:.2f}"),
            num(r.ratio, "{:.2f}x"),
            num(r.floor_ratio, "{:.2f}x"),
            rss,
            r.error or "",
        )
    Console(width=200).print(table)
    baselines = [r.baseline_rss_mb for r in rows if r.baseline_rss_mb]
    if baselines:
        print(
            f"peak RSS includes the worker's baseline of about {min(baselines):.0f} MB "
            "(torch, model and inputs loaded, before any attribution)."
        )
    print(
        "ratio = salience / peer throughput; floor ratio = salience / a plain batched loop of "
        "the passes the method needs (1.00x = no overhead)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", help="comma-separated method names (default: all registered)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="images per call")
    parser.add_argument("--images", type=int, default=16, help="images per measurement")
    parser.add_argument(
        "--heavy-images",
        type=int,
        default=2,
        help=f"images for methods with >= {HEAVY_PASSES} passes per image",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=8.0,
        help="memory limit per measurement; beyond it the row says out of memory",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC model and inputs for every implementation (compare with a run without)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip Captum / pytorch-grad-cam")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    rows = run(args)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
