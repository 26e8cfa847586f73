"""int8 copies of a model for forward-only methods (``torch.ao.quantization``, CPU only).

Dynamic quantization converts the ``nn.Linear`` layers (weights int8, activations quantized
on the fly); static quantization (FX graph mode, x86 default qconfig) converts convolutions
too, calibrated on the images being measured. The CAM layer stays a float module, called as
one (FX may fuse a following ReLU into it), so CAM methods read float activations from it.
The user's model is never changed; torch's deprecation warnings about ``torch.ao`` are muted.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from salience.errors import SalienceError


def int8_dynamic(model: nn.Module) -> nn.Module:
    """A copy with int8 ``nn.Linear`` layers (dynamic quantization)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.ao's deprecation notices
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def int8_static(model: nn.Module, calibration: torch.Tensor, keep_float: str | None) -> nn.Module:
    """A statically quantized copy (FX graph mode), calibrated on ``calibration``;
    ``keep_float`` names a submodule kept in float and called as a module (the CAM layer)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig

    mapping = get_default_qconfig_mapping("x86")
    custom = PrepareCustomConfig()
    if keep_float:
        mapping.set_module_name(keep_float, None)
        custom.set_non_traceable_module_names([keep_float])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch.ao's deprecation notices
            return _quantize(model, mapping, custom, calibration)
    except Exception as exc:  # FX cannot trace every model: say so in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SalienceError(f"static int8 quantization failed: {first[:200]}") from None


def _quantize(model: nn.Module, mapping: Any, custom: Any, calibration: torch.Tensor) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    prepared = prepare_fx(
        copy.deepcopy(model).eval(),
        mapping,
        example_inputs=(calibration[:1],),
        prepare_custom_config=custom,
    )
    with torch.no_grad():
        prepared(calibration)
    return convert_fx(prepared)
