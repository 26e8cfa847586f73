"""Attribution speed: salience vs. Captum / pytorch-grad-cam at their best settings, equal work.

One model (ResNet-18, random weights, seed 0), one input size, one process. For every method:

1. **count and sweep**: each setting of each side runs once under the same row counter
   (``benchmarks/_work.py``): salience's ``batch_size`` and the peer's batch knob
   (``internal_batch_size``, ``nt_samples_batch_size``, ``perturbations_per_eval``, grad-cam's
   ``batch_size``; grad-cam's gradient CAMs: weights frozen by the caller or not) over
   ``--grid``. The fastest setting of each side is its *best*;
2. **time**: salience default and best, each peer's default and best, and the *floor* (a plain
   loop of just the passes the method needs) run in turns, ``--repeat`` rounds; medians.

Every line prints the forward/backward rows that side ran. A peer whose rows differ from
salience's is flagged UNEQUAL WORK: the comparison would be unfair, so it is a benchmark bug.
Methods with hundreds of passes per image run on ``--heavy-images`` images.

    python benchmarks/attribution.py                                  # all methods, 224 px
    python benchmarks/attribution.py --methods integrated_gradients,smoothgrad
    python benchmarks/attribution.py --quick                          # smoke run, seconds
    python benchmarks/attribution.py --json attribution.json

Peers are imported lazily (benchmark-only dependencies); a missing one is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _work import Timed, Work, compare, grid, load, print_table, sweep_line

from salience.errors import UnsupportedModelError

HEAVY_PASSES = 100  # passes per image from which --heavy-images applies
FORWARD_ROWS = 64  # rows per forward pass for perturbation floors
BACKWARD_ROWS = 16  # rows per fwd+bwd pass for multi-pass gradient floors
LAYER = "layer4"  # the CAM layer for every implementation (salience's automatic choice too)

Run = Callable[[nn.Module, torch.Tensor, torch.Tensor], None]
Setting = int | None
Variants = Callable[[list[Setting]], dict[str, Run]]


# ----------------------------------------------------------------------------- the workload


def build(
    size: int, images: int, tiny: bool = False, channels_last: bool = False
) -> tuple[nn.Module, torch.Tensor]:
    """ResNet-18 (or the tiny model) with random weights, seed 0, and random inputs, seed 1."""
    import torchvision

    torch.manual_seed(0)
    model = _tiny() if tiny else torchvision.models.resnet18()
    model.eval()
    x = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1))
    if channels_last:  # every implementation gets the same NHWC model and inputs
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def _tiny() -> nn.Module:
    """The smoke run's model: two small convolutions (the second named like ResNet's layer4)."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            relu1=nn.ReLU(),
            layer4=nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 10),
        )
    )


def targets(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def method_params(name: str) -> dict[str, Any]:
    """The parameters every implementation uses: each method's defaults, IG at 50 steps."""
    return {"steps": 50} if name == "integrated_gradients" else {}


def _accepted(name: str) -> dict[str, Any]:
    from salience.methods import method_info

    return method_info(name).params


def passes_per_image(name: str, model: nn.Module, size: int) -> int:
    """Model passes one image costs (forward or forward+backward), from the method's defaults."""
    params = {**_accepted(name), **method_params(name)}
    if name == "integrated_gradients":
        return int(params["steps"])
    if name in ("smoothgrad", "vargrad"):
        return int(params["samples"])
    if name == "kernel_shap":  # + the empty coalition and the image itself
        return int(params["samples"]) + 2
    if name in ("scorecam", "ablationcam"):
        return 1 + _channels(model)
    if name == "occlusion":
        return 1 + _windows(size, params["window"], params["stride"])  # + the image itself
    if name == "rise":
        return int(params["masks"])
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


def _label(knob: str, setting: Setting) -> str:
    return "default" if setting is None else f"{knob}={setting}"


# ----------------------------------------------------------------------------- salience


def salience_variants(name: str) -> Variants:
    def variants(settings: list[Setting]) -> dict[str, Run]:
        return {_label("batch_size", s): _salience(name, s) for s in settings}

    return variants


def _salience(name: str, batch_size: Setting) -> Run:
    def run(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        import salience

        params = {**method_params(name), "batch_size": batch_size}
        if "layer" in _accepted(name):
            params["layer"] = LAYER
        salience.explain(model, x, t, method=name, **params)

    return run


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


def _repeated(step: Run, repeats: int) -> Run:
    def loop(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        for _ in range(repeats):
            step(m, x, t)

    return loop


def _perturbed_rows(rows: int) -> Run:
    """``rows`` forward rows per image (perturbed copies), ``FORWARD_ROWS`` rows per pass."""

    def loop(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        with torch.no_grad():
            for img in x:
                for start in range(0, rows, FORWARD_ROWS):
                    m(img.expand(min(FORWARD_ROWS, rows - start), *img.shape).clone())

    return loop


def _gradient_rows(rows: int) -> Run:
    """``rows`` fwd+bwd rows per image (e.g. IG steps), ``BACKWARD_ROWS`` rows per pass."""

    def loop(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        xs, ts = x.repeat_interleave(rows, 0), t.repeat_interleave(rows, 0)
        for start in range(0, len(xs), BACKWARD_ROWS):
            _grad_pass(m, xs[start : start + BACKWARD_ROWS], ts[start : start + BACKWARD_ROWS])

    return loop


def floor(name: str, passes: int) -> Run | None:
    """A plain loop of the passes ``name`` needs (weights frozen), or None without a fair one."""
    from salience.methods import get_method

    family = get_method(name).family
    found: Run | None = None
    if name == "eigencam":
        found = _forward_pass
    elif family == "cam" and passes == 1:
        found = _cam_pass
    elif family == "gradient":
        found = _repeated(_grad_pass, passes) if passes <= 2 else _gradient_rows(passes)
    elif family == "perturbation" or passes >= HEAVY_PASSES:
        found = _perturbed_rows(passes)
    return _frozen(found) if found is not None else None


def _frozen(run: Run) -> Run:
    """``run`` with the model's weights frozen (as salience does), restored afterwards."""

    def wrapped(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        from salience._guard import model_guard

        with model_guard(m):
            run(m, x, t)

    return wrapped


# ----------------------------------------------------------------------------- peers


def _fixed(run: Run) -> Variants:
    """A peer without a batch knob: its default only."""
    return lambda _settings: {"default": run}


def _knob(knob: str, make: Callable[[Setting], Run]) -> Variants:
    return lambda settings: {_label(knob, s): make(s) for s in settings}


def _captum(cls_name: str, **kw: Any) -> Run:
    def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        import captum.attr as ca

        getattr(ca, cls_name)(m).attribute(x, target=t, **kw)

    return run


def _captum_ig(internal_batch_size: Setting) -> Run:
    return _captum("IntegratedGradients", n_steps=50, internal_batch_size=internal_batch_size)


def _captum_layer_gradcam(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(m, m.get_submodule(LAYER)).attribute(x, target=t, relu_attributions=True)
    LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")


def _captum_guided_gradcam(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
    from captum.attr import GuidedGradCam

    GuidedGradCam(m, m.get_submodule(LAYER)).attribute(x, target=t)


def _captum_noise_tunnel(kind: str) -> Callable[[Setting], Run]:
    def make(nt_samples_batch_size: Setting) -> Run:
        def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
            from captum.attr import NoiseTunnel, Saliency

            NoiseTunnel(Saliency(m)).attribute(
                x,
                target=t,
                nt_type=kind,
                nt_samples=int(_accepted(kind)["samples"]),
                nt_samples_batch_size=nt_samples_batch_size,
                stdevs=0.15,
                abs=False,
            )

        return run

    return make


def _captum_occlusion(perturbations_per_eval: Setting) -> Run:
    def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        from captum.attr import Occlusion

        p = _accepted("occlusion")
        w, s = p["window"], p["stride"]
        w = (w, w) if isinstance(w, int) else tuple(w)
        s = (s, s) if isinstance(s, int) else tuple(s)
        Occlusion(m).attribute(
            x,
            sliding_window_shapes=(3, *w),
            strides=(3, *s),
            baselines=0.0,
            target=t,
            perturbations_per_eval=perturbations_per_eval or 1,
        )

    return run


def _gradcam_lib(cls_name: str, batch_size: Setting = None, input_gradient: bool = False) -> Run:
    def run(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = getattr(pgc, cls_name)(model=m, target_layers=[m.get_submodule(LAYER)])
        cam.compute_input_gradient = input_gradient
        if batch_size is not None:
            cam.batch_size = batch_size  # Score-CAM and Ablation-CAM read it as an attribute
        try:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
        finally:
            cam.activations_and_grads.release()

    return run


def _gradcam_frozen(cls_name: str) -> Variants:
    """grad-cam's CAMs call ``loss.backward()``, which fills every weight's gradient.

    Its best setting freezes the weights and asks for the input's gradient instead, so that
    the backward pass still has a graph to follow but computes no weight gradients.
    """

    frozen = _frozen(_gradcam_lib(cls_name, input_gradient=True))
    return lambda _settings: {"default": _gradcam_lib(cls_name), "weights frozen": frozen}


def _gradcam_batched(cls_name: str) -> Variants:
    return _knob("batch_size", lambda s: _gradcam_lib(cls_name, s))


PEERS: dict[str, list[tuple[str, Variants]]] = {
    "gradient": [("captum Saliency", _fixed(_captum("Saliency", abs=False)))],
    "input_x_gradient": [("captum InputXGradient", _fixed(_captum("InputXGradient")))],
    "integrated_gradients": [("captum IG", _knob("internal_batch_size", _captum_ig))],
    "smoothgrad": [
        ("captum NoiseTunnel", _knob("nt_samples_batch_size", _captum_noise_tunnel("smoothgrad")))
    ],
    "vargrad": [
        ("captum NoiseTunnel", _knob("nt_samples_batch_size", _captum_noise_tunnel("vargrad")))
    ],
    "guided_backprop": [("captum GuidedBackprop", _fixed(_captum("GuidedBackprop")))],
    "deconvnet": [("captum Deconvolution", _fixed(_captum("Deconvolution")))],
    "guided_gradcam": [("captum GuidedGradCam", _fixed(_captum_guided_gradcam))],
    "gradcam": [
        ("captum LayerGradCam+upsample", _fixed(_captum_layer_gradcam)),
        ("grad-cam GradCAM", _gradcam_frozen("GradCAM")),
    ],
    "gradcam_pp": [("grad-cam GradCAMPlusPlus", _gradcam_frozen("GradCAMPlusPlus"))],
    "xgradcam": [("grad-cam XGradCAM", _gradcam_frozen("XGradCAM"))],
    "layercam": [("grad-cam LayerCAM", _gradcam_frozen("LayerCAM"))],
    "hirescam": [("grad-cam HiResCAM", _gradcam_frozen("HiResCAM"))],
    "eigencam": [("grad-cam EigenCAM", _gradcam_frozen("EigenCAM"))],
    "scorecam": [("grad-cam ScoreCAM", _gradcam_batched("ScoreCAM"))],
    "ablationcam": [("grad-cam AblationCAM", _gradcam_batched("AblationCAM"))],
    "occlusion": [("captum Occlusion", _knob("perturbations_per_eval", _captum_occlusion))],
}


# ----------------------------------------------------------------------------- driver


def explained(name: str, images: int) -> dict[str, Callable[[Work, Work], str]]:
    """Known differences in rows that no setting of the peer removes."""
    if name != "ablationcam":
        return {}

    def second_forward(ours: Work, theirs: Work) -> str:
        extra = theirs.forward - ours.forward
        if extra == images and theirs.backward == ours.backward:
            return "grad-cam scores the unablated input twice (+1 row per image)"
        return ""

    return {"grad-cam AblationCAM": second_forward}


def bench_method(name: str, args: argparse.Namespace, settings: list[Setting]) -> list[Timed]:
    size = args.size
    probe, _ = build(size, 1, args.tiny)
    passes = passes_per_image(name, probe, size)
    heavy = passes >= HEAVY_PASSES
    model, x = build(
        size, args.heavy_images if heavy else args.images, args.tiny, args.channels_last
    )
    t = targets(model, x)
    try:  # warm up (salience caches a memory probe) and check that the method applies
        _salience(name, None)(model, x[:1], t[:1])
    except UnsupportedModelError as exc:
        print(f"  {name}: skipped, {exc}", file=sys.stderr, flush=True)
        return []
    peers = [] if args.no_peers else [p for p in PEERS.get(name, []) if _importable(p[0])]
    variants = {"salience": salience_variants(name)(settings if peers else [None])}
    variants.update({peer: make(settings) for peer, make in peers})
    low = floor(name, passes) if not args.no_floor else None
    if low is not None:
        variants["floor"] = {"default": low}
    sides = {
        side: {k: (lambda run=run: run(model, x, t)) for k, run in runs.items()}
        for side, runs in variants.items()
    }
    timed = compare(model, sides, args.repeat, explained(name, len(x)))
    print(f"  {name}: {sweep_line(timed)}", file=sys.stderr, flush=True)
    return timed


def _importable(peer: str) -> bool:
    import importlib.util

    module = "captum" if peer.startswith("captum") else "pytorch_grad_cam"
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--methods", help="comma-separated method names (default: all registered)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--images", type=int, default=2, help="images per measurement")
    parser.add_argument(
        "--heavy-images",
        type=int,
        default=1,
        help=f"images for methods with >= {HEAVY_PASSES} passes per image",
    )
    parser.add_argument(
        "--grid",
        default="default,1,4,16,64,256",
        help="batch settings swept on both sides ('default' = the library's own)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC model and inputs for every implementation (compare with a run without)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip Captum / pytorch-grad-cam")
    parser.add_argument("--no-floor", action="store_true", help="skip the plain-loop floor")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the methods with a peer, a tiny two-convolution model at 32 px, "
        "1 round, grid default,4",
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the lines here")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.heavy_images, args.repeat = 32, 2, 1, 1
        args.grid, args.tiny = "default,4", True
    if args.threads:
        torch.set_num_threads(args.threads)
    import salience

    everything = list(PEERS) if args.quick else salience.list_methods()
    names = args.methods.split(",") if args.methods else everything
    for n in names:
        salience.get_method(n)  # unknown names fail here, listing the known ones
    header = (
        f"{'tiny CNN' if args.tiny else 'ResNet-18'}, random weights, {args.size} px, "
        f"{args.images} images ({args.heavy_images} for >= {HEAVY_PASSES} passes/image), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, medians of "
        f"{args.repeat} interleaved rounds{', channels-last' if args.channels_last else ''}; "
        f"{load()} at start"
    )
    results = {n: bench_method(n, args, grid(args.grid)) for n in names}
    print(header + f"; {load()} at end")
    print_table(results, {n: _images(n, args) for n in names}, "images")
    if args.json is not None:
        rows = {n: [asdict(r) for r in timed] for n, timed in results.items()}
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def _images(name: str, args: argparse.Namespace) -> int:
    probe, _ = build(args.size, 1, args.tiny)
    return (
        args.heavy_images
        if passes_per_image(name, probe, args.size) >= HEAVY_PASSES
        else args.images
    )


if __name__ == "__main__":
    main()
