"""Cheaper ways to run a model: reduced precision, compilation and channels-last weights.

One :class:`ModelSettings` says how a model runs; :func:`apply_settings` returns a model that
runs that way without changing the user's module. Precision runs the forward pass under
``torch.autocast`` (bf16 on CPUs and CUDA, fp16 on CUDA only) and returns float32 outputs;
``compile`` wraps the forward pass in ``torch.compile``, whose first calls trace and compile
(the warm-up, reported apart from the timings by :func:`warm_up`).

The returned :class:`SettingsView` holds the user's submodules and parameters under their own
names, so CAM layers (``layer=...``), hooks and ``state_dict`` read the same as on the original.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from salience.errors import SalienceError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ModelSettings:
    """How to run a model; the defaults run it exactly as given."""

    precision: Precision = "fp32"
    compile: bool = False
    channels_last: bool = False
    compile_backend: str = "inductor"

    @property
    def is_default(self) -> bool:
        return self.precision == "fp32" and not self.compile and not self.channels_last

    def describe(self) -> dict[str, Any]:
        """What a run manifest records."""
        return asdict(self)


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None for fp32), or a one-line error."""
    if precision not in PRECISIONS:
        raise SalienceError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        raise SalienceError(f"fp16 needs a CUDA device (this runs on {device.type}); use bf16")
    if device.type not in ("cpu", "cuda"):
        raise SalienceError(f"{precision} runs on cpu or cuda, not {device.type}; use fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SalienceError("this GPU has no bf16; use --precision fp16")
    return _DTYPES[precision]


class SettingsView(nn.Module):
    """The user's model run under autocast; shares (never copies) its submodules and weights.

    ``torch.compile`` is applied to this view (``nn.Module.compile``), never to the user's
    module. Floating outputs come back as float32, so methods see the dtype they expect.
    """

    inner: nn.Module

    def __init__(self, inner: nn.Module, dtype: torch.dtype | None) -> None:
        super().__init__()
        object.__setattr__(self, "inner", inner)  # not a child: names stay the original's
        for name, child in inner.named_children():
            self.add_module(name, child)
        for name, p in inner.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in inner.named_buffers(recurse=False):
            self.register_buffer(name, b)
        self.autocast_dtype = dtype
        self.training = inner.training

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        mode, self.inner.training = self.inner.training, self.training  # the view's mode
        try:
            if self.autocast_dtype is None:
                return self.inner(*args, **kwargs)
            device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
            with torch.autocast(device_type=device, dtype=self.autocast_dtype):
                return _to_float32(self.inner(*args, **kwargs))
        finally:
            self.inner.training = mode


def _to_float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple | list):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, dict):
        for key in list(out):
            out[key] = _to_float32(out[key])
    return out


def device_of(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def apply_settings(module: nn.Module, settings: ModelSettings, *, owned: bool = False) -> nn.Module:
    """A model that runs ``module`` with ``settings``; ``module`` itself is left as it was.

    Channels-last converts the weights of a copy (of ``module`` itself when ``owned``: the
    caller built it, as :func:`~salience.models.load_model` does). Precision and compilation
    return a :class:`SettingsView` over it.
    """
    dtype = check_precision(settings.precision, device_of(module))
    if settings.channels_last and not _is_nhwc(module):
        module = module if owned else copy.deepcopy(module)
        module = module.to(memory_format=torch.channels_last)
    if dtype is None and not settings.compile:
        return module
    view = SettingsView(module, dtype)
    if settings.compile:
        try:
            view.compile(backend=settings.compile_backend)
        except Exception as exc:  # e.g. an unknown backend: one line, not a traceback
            raise SalienceError(
                f"torch.compile: {_first_line(exc)}; run without --compile"
            ) from None
    return view


def memory_format(module: nn.Module) -> str:
    """``"channels_last"`` when the model's 4-d weights are stored NHWC, else ``"contiguous"``."""
    for p in module.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            nhwc = p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            return "channels_last" if nhwc else "contiguous"
    return "contiguous"


def channels_last_pays(module: nn.Module, device: torch.device) -> bool:
    """Whether channels-last is the faster memory format for ``module`` on ``device``: on
    CPUs, whose oneDNN convolutions run faster on NHWC weights and activations, for a model
    with 2-d convolutions (``benchmarks/check.py --memory-format`` compares the two).
    TorchScript models keep their format."""
    if device.type != "cpu" or isinstance(module, torch.jit.ScriptModule):
        return False
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _is_nhwc(module: nn.Module) -> bool:
    return memory_format(module) == "channels_last"


def warm_up(model: nn.Module, x: torch.Tensor) -> float:
    """Seconds of one no-grad forward pass: for a compiled model, the trace and compilation.

    A missing compiler toolchain (or a model ``torch.compile`` cannot trace) is one line.
    """
    start = time.perf_counter()
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:
        if not _compiled(model) or not _is_compile_error(exc):
            raise
        raise SalienceError(
            f"torch.compile failed ({_first_line(exc)}); run without --compile"
        ) from None
    return time.perf_counter() - start


def _compiled(model: nn.Module) -> bool:
    return getattr(model, "_compiled_call_impl", None) is not None


def _is_compile_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(
        exc, RuntimeError | OSError | ImportError
    )


def _first_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
