"""LRP speed: salience's three LRP methods vs. zennit's own attributor and Captum's LRP.

ResNet-18, random weights (seed 0), random inputs (seed 1), ``--size`` px, one process.
For each method every side computes the same thing with the same composite:

- salience: ``salience.explain(model, x, t, method, batch_size=k)`` (canonizers chosen
  automatically, model guarded);
- zennit: ``zennit.attribution.Gradient`` with the matching composite and zennit's
  ``ResNetCanonizer``, output relevance ``one_hot * logits``; zennit has no batch knob, so the
  caller's chunk size ``k`` is swept (default: the whole batch in one call);
- Captum: ``captum.attr.LRP`` (epsilon rule everywhere, only next to ``lrp_epsilon``); its batch
  knob is likewise the caller's chunk. Captum keeps batch norms as layers and sends the
  residual sums through the plain gradient, so its maps differ (same passes, other rules).

``benchmarks/_work.py`` counts the forward/backward rows through the model on every side and
flags any difference; sides run in turns, ``--repeat`` rounds, medians. The load is printed.

    python benchmarks/lrp.py                        # 8 images, 224 px
    python benchmarks/lrp.py --quick                # smoke run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _work import Timed, Work, compare, grid, load, print_table, sweep_line

import salience

METHODS = ["lrp_epsilon", "lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box"]
Call = Callable[[], object]


def build(size: int, images: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        t = model(x).argmax(1)
    return model, x, t


def chunked(step: int | None, x: torch.Tensor, run: Callable[[slice], object]) -> Call:
    """A call that runs ``run`` on chunks of ``step`` rows (all rows at once for None)."""
    size = step or x.shape[0]
    return lambda: [run(slice(a, a + size)) for a in range(0, x.shape[0], size)]


def zennit_composite(name: str, x: torch.Tensor) -> Any:
    from zennit.composites import (
        EpsilonGammaBox,
        EpsilonPlusFlat,
        LayerMapComposite,
        layer_map_base,
    )
    from zennit.rules import Epsilon
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Linear

    canonizers = [ResNetCanonizer()]
    if name == "lrp_epsilon":
        layer_map = [*layer_map_base(1e-6), (Linear, Epsilon(1e-6))]
        return LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
    if name == "lrp_epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers)
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)  # salience's default
    return EpsilonGammaBox(low=low, high=high, canonizers=canonizers)


def zennit_call(
    name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor, step: int | None
) -> Call:
    from zennit.attribution import Gradient

    def run(rows: slice) -> object:
        xs, onehot = x[rows], nn.functional.one_hot(t[rows], 1000).float()
        with Gradient(model, zennit_composite(name, xs)) as attributor:
            return attributor(xs.clone().requires_grad_(True), lambda y: y * onehot)[1]

    return chunked(step, x, run)


def captum_call(model: nn.Module, x: torch.Tensor, t: torch.Tensor, step: int | None) -> Call:
    from captum.attr import LRP

    def run(rows: slice) -> object:
        return LRP(model).attribute(x[rows].clone().requires_grad_(True), target=t[rows])

    return chunked(step, x, run)


def captum_extra(ours: Work, theirs: Work) -> str:
    """Captum's ``LRP.attribute`` runs the model once before its hooked forward (by design)."""
    if theirs.forward == 2 * ours.forward and theirs.backward == ours.backward:
        return "Captum's LRP runs one extra forward per call before its hooked pass"
    return ""


def sides(
    name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor, steps: list[int | None]
) -> dict[str, dict[str, Call]]:
    def label(knob: str, k: int | None) -> str:
        return "default" if k is None else f"{knob}={k}"

    out: dict[str, dict[str, Call]] = {
        f"salience {name}": {
            label("batch_size", k): (
                lambda k=k: salience.explain(model, x, t, name, batch_size=k)  # type: ignore[misc]
            )
            for k in steps
        },
        "zennit Gradient": {label("chunk", k): zennit_call(name, model, x, t, k) for k in steps},
    }
    if name == "lrp_epsilon":
        out["captum LRP"] = {label("chunk", k): captum_call(model, x, t, k) for k in steps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grid", default="default,1,4,8", help="batch/chunk sizes to sweep")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="64 px, 2 images, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.size, args.images, args.repeat, args.grid = 64, 2, 1, "default,1"
    model, x, t = build(args.size, args.images)
    torch.set_grad_enabled(True)
    print(f"ResNet-18 random weights, {args.images} images at {args.size} px; {load()}")
    salience.explain(model, x[:1], t[:1], "gradient")  # salience measures its chunk size once
    results: dict[str, list[Timed]] = {}
    for name in args.methods.split(","):
        runs = sides(name, model, x, t, grid(args.grid))
        timed = compare(model, runs, args.repeat, {"captum LRP": captum_extra})
        print(f"{name}: sweep {sweep_line(timed)}", flush=True)
        results[name] = timed
    print_table(results, {k: args.images for k in results}, "img")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
