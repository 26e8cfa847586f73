"""The cheaper settings ``salience cost`` measures, read from the method registry.

A method's cost knob is the parameter its ``passes`` names (``"steps fwd+bwd"`` -> ``steps``);
forward-only methods (no backward pass in ``passes``) also run on int8 models, which have no
gradients. Published guidance the knobs are compared with: integrated gradients needs 20-300
steps for completeness within 5% (Sundararajan et al., 2017); RISE used 4000 masks on
ResNet-50 (Petsiuk et al., 2018); SmoothGrad about 50 samples at 10-20% noise (Smilkov et al.,
2017).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from salience.methods import get_method

PRUNE_RATIOS: tuple[float, ...] = (0.1, 0.25, 0.5)
KNOB_FRACTIONS: tuple[int, ...] = (2, 4, 8, 16)  # the knob divided by these
KINDS: tuple[str, ...] = ("precision", "compile", "int8", "pruned", "fewer")


@dataclass(frozen=True)
class Variant:
    """One cheaper setting: how the model is changed (``model``) and which parameters."""

    name: str
    kind: str  # "reference" or one of KINDS
    model: str = "reference"  # reference | bf16 | fp16 | compile | int8_dynamic | ...
    params: dict[str, Any] = field(default_factory=dict)


def cost_knob(method: str) -> str | None:
    """The parameter that scales a method's passes (e.g. ``steps``), or None."""
    cls = get_method(method)
    first = cls.passes.split()[0] if cls.passes else ""
    keyword = inspect.signature(cls.__init__).parameters
    return first if first in keyword and first != "self" else None


def forward_only(method: str) -> bool:
    """True when the registry says the method needs no backward pass (``passes``)."""
    passes = get_method(method).passes
    return "bwd" not in passes and passes != "none"


def knob_default(method: str) -> int | None:
    knob = cost_knob(method)
    if knob is None:
        return None
    default = inspect.signature(get_method(method).__init__).parameters[knob].default
    return int(default) if isinstance(default, int) else None


def variants(
    method: str,
    params: dict[str, Any],
    *,
    kinds: tuple[str, ...] = KINDS,
    device_type: str = "cpu",
    ratios: tuple[float, ...] = PRUNE_RATIOS,
) -> list[Variant]:
    """The reference (``params`` as given) and every cheaper setting that applies to it."""
    out = [Variant("reference", "reference", params=params)]
    if "precision" in kinds:
        out.append(Variant("bf16", "precision", "bf16", params))
        if device_type == "cuda":
            out.append(Variant("fp16", "precision", "fp16", params))
    if "compile" in kinds:
        out.append(Variant("compile", "compile", "compile", params))
    if "int8" in kinds and forward_only(method) and device_type == "cpu":
        out.append(Variant("int8_dynamic", "int8", "int8_dynamic", params))
        out.append(Variant("int8_static", "int8", "int8_static", params))
    if "pruned" in kinds:
        out += [Variant(f"pruned_{r:g}", "pruned", f"pruned_{r:g}", params) for r in ratios]
    knob = cost_knob(method)
    full = params.get(knob, knob_default(method)) if knob else None
    if "fewer" in kinds and knob is not None and isinstance(full, int):
        for d in KNOB_FRACTIONS:
            if full // d >= 1:
                out.append(
                    Variant(f"{knob}={full // d}", "fewer", params={**params, knob: full // d})
                )
    return out
