"""Model sources: one registry mapping a model spec to a loaded, ready-to-explain model.

BuiltModel-in forms (first match wins, in registration order): ``torchvision:NAME``, ``timm:NAME``,
a TorchScript file (``*.pt``, ``*.ts``), ``package.module:factory`` or ``file.py:factory``,
and named models such as ``efficientnet_lite0`` (see :mod:`salience.models.efficientnet_lite`).
Weight files are always read with ``torch.load(weights_only=True)``: a checkpoint that pickles
Python objects is refused rather than executed.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import math
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from salience.device import resolve_device
from salience.errors import SalienceError
from salience.models.preprocess import Preprocess, parse_preprocess
from salience.models.pretrained import RandomWeightsWarning, cached_timm, cached_torchvision
from salience.models.settings import (
    ModelSettings,
    Precision,
    apply_settings,
    channels_last_pays,
    warm_up,
)
from salience.models.weights import (
    apply_state_dict,
    classifier_outputs,
    read_state_dict,
    read_weights_file,
    sha256_file,
)
from salience.outputs import select_output


@dataclass
class BuiltModel:
    """What a source returns; :func:`load_model` adds the device, hash and class count."""

    module: nn.Module
    architecture: str
    preprocess: Preprocess
    class_names: list[str] | None = None
    cam_layer: str | None = None
    weights_path: Path | None = None
    weights_origin: str = "given"  # given | builtin | cache | random | archive


BuildFn = Callable[[str, "Path | None"], BuiltModel]


@dataclass(frozen=True)
class ModelSource:
    name: str
    form: str  # how the spec is written, shown in errors and docs
    matches: Callable[[str], bool]
    build: BuildFn


_SOURCES: dict[str, ModelSource] = {}


def register_source(
    name: str, form: str, matches: Callable[[str], bool]
) -> Callable[[BuildFn], BuildFn]:
    """Decorator adding ``build(spec, weights) -> BuiltModel`` as the model source ``name``."""

    def deco(build: BuildFn) -> BuildFn:
        _SOURCES[name] = ModelSource(name, form, matches, build)
        return build

    return deco


def list_sources() -> list[ModelSource]:
    return list(_SOURCES.values())


def find_source(spec: str) -> ModelSource:
    for source in _SOURCES.values():
        if source.matches(spec):
            return source
    forms = ", ".join(s.form for s in _SOURCES.values())
    raise SalienceError(f"cannot load model {spec!r}; write one of: {forms}")


@dataclass
class LoadedModel:
    """A model ready to explain: eval-mode module, its preprocessing and its class names."""

    module: nn.Module
    preprocess: Preprocess  # PIL image -> [C, H, W] float tensor
    class_names: list[str]  # empty when the number of classes is unknown
    cam_layer: str | None  # dotted name, or None for the automatic choice
    spec: str
    source: str
    architecture: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    weights_path: Path | None = None
    weights_sha256: str | None = None
    num_classes: int | None = None  # model outputs, when a plain forward pass tells
    weights_origin: str = "given"  # given | builtin | cache | random | archive | factory
    settings: ModelSettings = field(default_factory=ModelSettings)
    compile_warmup_s: float | None = None  # the first (compiling) forward pass, when compiled

    def __repr__(self) -> str:
        classes = self.num_classes if self.num_classes is not None else len(self.class_names)
        weights = self.weights_path.name if self.weights_path else self.weights_origin
        return (
            f"LoadedModel({self.spec!r}, {self.architecture}, {classes} classes, "
            f"weights={weights}, device={self.device}, input={self.preprocess.size}px)"
        )

    @property
    def random_weights(self) -> bool:
        """True when the model runs with its random initialisation."""
        return self.weights_origin == "random"

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def class_index(self, target: str | int) -> int:
        """A class given as an index or a name (exact, then case-insensitive) -> its index."""
        if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
            index = int(target)
            count = self.num_classes or len(self.class_names)
            if count and not 0 <= index < count:
                raise SalienceError(
                    f"class index {index} is out of range; the model has {count} classes"
                )
            return index
        names = self.class_names
        if target in names:
            return names.index(target)
        lowered = [n.lower() for n in names]
        if target.lower() in lowered:
            return lowered.index(target.lower())
        if not names:
            raise SalienceError(
                f"the model has no class names; give the class {target!r} as an index"
            )
        close = difflib.get_close_matches(target.lower(), lowered, n=3, cutoff=0.6)
        hint = (
            f"; did you mean {', '.join(repr(names[lowered.index(c)]) for c in close)}?"
            if close
            else "; give a class index or an exact name"
        )
        raise SalienceError(f"unknown class {target!r}{hint}")

    def describe(self) -> dict[str, Any]:
        """What a run manifest records about the model."""
        return {
            "spec": self.spec,
            "source": self.source,
            "architecture": self.architecture,
            "weights": str(self.weights_path) if self.weights_path else None,
            "weights_sha256": self.weights_sha256,
            "weights_origin": self.weights_origin,
            "num_classes": self.num_classes,
            "cam_layer": self.cam_layer,
            "preprocess": self.preprocess.describe(),
            "device": str(self.device),
            "settings": self.settings.describe(),
            "compile_warmup_s": self.compile_warmup_s,
        }


def load_model(
    spec: str,
    weights: str | Path | None = None,
    device: str | torch.device | None = "auto",
    *,
    preprocess: str | Preprocess | None = None,
    class_names: Sequence[str] | None = None,
    channels_last: bool | None = False,
    precision: Precision = "fp32",
    compile: bool = False,
) -> LoadedModel:
    """Load ``spec`` (see the module docstring) in eval mode on ``device`` (``"auto"``, as on
    the command line: CUDA, then MPS, then the CPU).

    ``preprocess`` overrides the source's preprocessing (a :class:`Preprocess` or a preset
    spec such as ``"imagenet:size=160"``); ``class_names`` overrides its class names.
    ``channels_last`` stores the weights in NHWC order, which convolutions run faster on
    (benchmarks/attribution.py --channels-last); maps change only by float rounding. ``None``
    picks it where it pays (:func:`~salience.models.settings.channels_last_pays`).
    ``precision`` (bf16, or fp16 on CUDA) runs the forward pass under autocast and
    ``compile`` under ``torch.compile`` (see :mod:`salience.models.settings`; ``salience cost``
    measures what either changes in the maps).
    """
    source = find_source(spec)
    weights_path = _existing(weights, "weights file") if weights is not None else None
    built = source.build(spec, weights_path)
    target = resolve_device(device)
    if channels_last is None:
        channels_last = channels_last_pays(built.module, target)
    settings = ModelSettings(precision, compile, channels_last)
    module = apply_settings(built.module.to(target).eval(), settings, owned=True)
    prep = parse_preprocess(preprocess) if preprocess is not None else built.preprocess
    blank = torch.zeros(1, len(prep.mean), prep.size, prep.size, device=target)
    warmup = warm_up(module, blank) if compile else None
    classes = _probe_classes(module, prep, target, spec)
    names = list(class_names) if class_names is not None else built.class_names
    if names is None or (classes is not None and len(names) != classes):
        names = imagenet_classes() if classes == 1000 else []
    if class_names is not None and classes is not None and len(names) != classes:
        raise SalienceError(f"{len(names)} class names given but the model has {classes} outputs")
    path = built.weights_path
    return LoadedModel(
        module=module,
        preprocess=prep,
        class_names=names,
        cam_layer=built.cam_layer,
        spec=spec,
        source=source.name,
        architecture=built.architecture,
        device=target,
        weights_path=path,
        weights_sha256=sha256_file(path) if path is not None else None,
        num_classes=classes,
        weights_origin=built.weights_origin,
        settings=settings,
        compile_warmup_s=warmup,
    )


def _probe_classes(
    module: nn.Module, prep: Preprocess, device: torch.device, spec: str
) -> int | None:
    """Number of model outputs, from one forward pass on a blank preprocessed-size input."""
    x = torch.zeros(1, len(prep.mean), prep.size, prep.size, device=device)
    try:
        with torch.no_grad():
            raw = module(x)
    except Exception as exc:  # the user's model: any failure means the input does not fit it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SalienceError(
            f"model {spec!r} fails on a {tuple(x.shape)} input ({first}); pass the matching "
            "preprocessing, e.g. --preprocess imagenet:size=224"
        ) from None
    try:
        return int(select_output(raw).shape[1])
    except SalienceError:
        return None  # outputs need an explicit selector; class names stay unknown


@lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[str, ...]:
    text = resources.files("salience.models").joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(line for line in text.splitlines() if line)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision's unique spelling)."""
    return list(_imagenet_classes())


@lru_cache(maxsize=1)
def imagenet_wnids() -> dict[str, int]:
    """WordNet ids of the ImageNet-1k classes (``n01440764`` -> 0), as dataset folders name them."""
    text = resources.files("salience.models").joinpath("imagenet_wnids.txt").read_text("utf-8")
    return {wnid: i for i, wnid in enumerate(line for line in text.splitlines() if line)}


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise SalienceError(f"{what} not found: {p}")
    return p


def _warn_random(spec: str, why: str) -> None:
    warnings.warn(
        RandomWeightsWarning(
            f"{spec} runs with RANDOM weights ({why}): its predictions and maps mean nothing; "
            "pass --weights FILE, or place the pretrained file there"
        ),
        stacklevel=4,
    )


def _missing_package(form: str, package: str, extra: str) -> SalienceError:
    return SalienceError(f"{form} needs the {package} package; pip install salience[{extra}]")


# ----------------------------------------------------------------------------- built-ins


@register_source("torchvision", "torchvision:NAME", lambda s: s.startswith("torchvision:"))
def _torchvision(spec: str, weights: Path | None) -> BuiltModel:
    import torchvision.models as tvm

    name = spec.split(":", 1)[1]
    known = tvm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = (
            f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        )
        raise SalienceError(f"torchvision has no model {name!r}; {hint}")
    module = tvm.get_model(name, weights=None)
    prep, categories = _torchvision_meta(name)
    origin = "given"
    if weights is None:
        weights, where = cached_torchvision(name)
        origin = "cache" if weights is not None else "random"
        if weights is None:
            _warn_random(spec, f"no pretrained file in the torch hub cache ({where})")
    if weights is not None:
        state = read_state_dict(weights)
        classes = classifier_outputs(state, module)
        if classes is not None:
            module = tvm.get_model(name, weights=None, num_classes=classes)
        apply_state_dict(module, state, weights, name)
    return BuiltModel(module, name, prep, categories, weights_path=weights, weights_origin=origin)


def _torchvision_meta(name: str) -> tuple[Preprocess, list[str] | None]:
    """Preprocessing and categories of the model's default weights (metadata only, offline)."""
    import torchvision.models as tvm

    try:
        default = tvm.get_model_weights(name).DEFAULT  # type: ignore[attr-defined]
        t = default.transforms()
        prep = Preprocess(
            size=int(t.crop_size[0]),
            resize=int(t.resize_size[0]),
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=str(t.interpolation.value),
        )
    except (ValueError, AttributeError, TypeError, IndexError):
        return Preprocess(), None
    categories = default.meta.get("categories")
    return prep, list(categories) if categories else None


@register_source("timm", "timm:NAME", lambda s: s.startswith("timm:"))
def _timm(spec: str, weights: Path | None) -> BuiltModel:
    try:
        import timm
        import timm.data
    except ImportError:
        raise _missing_package("timm:NAME", "timm", "timm") from None
    name = spec.split(":", 1)[1]
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise SalienceError(f"timm has no model {name!r}; {hint}")
    module = timm.create_model(name, pretrained=False)
    origin = "given"
    if weights is None:
        weights, where = cached_timm(dict(getattr(module, "pretrained_cfg", {}) or {}))
        origin = "cache" if weights is not None else "random"
        if weights is None:
            _warn_random(spec, f"no pretrained file in {where}")
    if weights is not None:
        state = read_weights_file(weights)
        classes = classifier_outputs(state, module)
        if classes is not None:
            module = timm.create_model(name, pretrained=False, num_classes=classes)
        apply_state_dict(module, state, weights, name)
    cfg = timm.data.resolve_model_data_config(module)
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    prep = Preprocess(
        size=size,
        resize=max(size, math.floor(size / crop_pct)),
        mean=tuple(float(m) for m in cfg["mean"]),
        std=tuple(float(s) for s in cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic")
        if cfg.get("interpolation") in ("bilinear", "bicubic", "nearest")
        else "bicubic",
        squash=cfg.get("crop_mode") == "squash",
    )
    return BuiltModel(module, name, prep, None, weights_path=weights, weights_origin=origin)


@register_source(
    "torchscript", "FILE.pt|FILE.ts (TorchScript)", lambda s: s.lower().endswith((".pt", ".ts"))
)
def _torchscript(spec: str, weights: Path | None) -> BuiltModel:
    path = _existing(spec, "TorchScript file")
    _refuse_non_torchscript(path)
    if weights is not None:
        raise SalienceError("a TorchScript file carries its own weights; drop --weights")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or ["unreadable"])[0]
        raise SalienceError(
            f"{path} is not a TorchScript archive ({first}); for a state dict give the "
            "architecture as the model and this file as --weights"
        ) from None
    arch = str(getattr(module, "original_name", type(module).__name__))
    return BuiltModel(module, arch, Preprocess(), None, weights_path=path, weights_origin="archive")


def _refuse_non_torchscript(path: Path) -> None:
    """A ``.pt`` that is a state dict or a pickled whole model gets a message saying what to do.

    TorchScript archives hold compiled code (``code/`` and ``constants.pkl``); ``torch.save``
    archives hold only ``data.pkl`` and tensors.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip at all: torch.jit.load gives its own reason
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return
    try:
        read_state_dict(path)
    except SalienceError as exc:
        if "as unsafe" not in str(exc):
            return
        raise SalienceError(
            f"{path} is a whole pickled model (torch.save(model)), not TorchScript; loading it "
            "would run its pickled code. Save model.state_dict() and pass it as --weights with "
            "the architecture as --model (torchvision:NAME, timm:NAME or FILE.py:factory), or "
            "export it with torch.jit.script"
        ) from None
    raise SalienceError(
        f"{path} is a state dict, not TorchScript: give the architecture as --model "
        f"(torchvision:NAME, timm:NAME or FILE.py:factory) and --weights {path}"
    )


FILE_MODULE_PREFIX = "_salience_model_"  # modules of FILE.py:factory specs, named by path hash
_FACTORY = re.compile(r"^(?P<target>[\w.]+|.+\.py):(?P<factory>[A-Za-z_]\w*)$")


@register_source(
    "factory", "package.module:factory or FILE.py:factory", lambda s: bool(_FACTORY.match(s))
)
def _factory(spec: str, weights: Path | None) -> BuiltModel:
    match = _FACTORY.match(spec)
    assert match is not None
    target, name = match["target"], match["factory"]
    mod = _import_target(target)
    factory = getattr(mod, name, None)
    if not callable(factory):
        raise SalienceError(f"{target} has no callable {name!r}")
    module = factory()
    if not isinstance(module, nn.Module):
        raise SalienceError(f"{spec} returned {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        apply_state_dict(module, read_state_dict(weights), weights, f"{spec}()")
    origin = "given" if weights is not None else "factory"
    return BuiltModel(
        module, f"{target}.{name}", Preprocess(), None, weights_path=weights, weights_origin=origin
    )


def _import_target(target: str) -> Any:
    if target.endswith(".py"):
        path = _existing(target, "model file")
        mod_name = (
            f"{FILE_MODULE_PREFIX}{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        )
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise SalienceError(f"cannot import {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
        return mod
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise SalienceError(
            f"cannot import {exc.name!r} for model {target!r}; install it or write FILE.py:factory"
        ) from None
