"""``hf:PATH``: a Hugging Face ``transformers`` image classifier saved on this machine.

``PATH`` is a folder written by ``save_pretrained`` (``config.json``, the weights and the image
processor's ``preprocessor_config.json``), or a hub name such as ``google/vit-base-patch16-224``
that an earlier download left in the local Hugging Face cache; nothing is downloaded. Weights
load with ``weights_only=True`` (safetensors, or ``pytorch_model.bin`` as tensors only) and
no custom code runs (``trust_remote_code=False``). The module returns the logits tensor; the
preprocessing comes from the image processor config (resize, crop, resample, rescale,
mean/std), the class names from ``id2label``; CAM and attention layers are found as for any
model, except that a ViT-style model's CAM layer is the first norm of its last block.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from salience.errors import SalienceError, SalienceWarning
from salience.models.attention import find_attention
from salience.models.layers import module_name
from salience.models.preprocess import Preprocess
from salience.models.sources import BuiltModel, _missing_package, register_source

PREFIX = "hf:"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes the image processors save
_CROP_PCT_LIMIT = 384  # ConvNeXt's processor: below this, resize to size / crop_pct and crop


class HFClassifier(nn.Module):
    """A ``transformers`` image classifier whose forward returns the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(pixel_values=x).logits
        return logits


@register_source(
    "huggingface", "hf:FOLDER|hf:ORG/NAME (local only)", lambda s: s.startswith(PREFIX)
)
def _huggingface(spec: str, weights: Path | None) -> BuiltModel:
    try:
        import transformers
    except ImportError:
        raise _missing_package("hf:PATH", "transformers", "hf") from None
    if weights is not None:
        raise SalienceError("an hf: folder carries its own weights; drop --weights")
    folder = _folder(spec[len(PREFIX) :])
    config = _read_json(folder / "config.json")
    try:
        model = _from_pretrained(transformers, folder)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            kind = config.get("model_type", "unknown")
            raise SalienceError(
                f"{folder} holds a {kind!r} model, not an image classifier; save one from "
                "AutoModelForImageClassification"
            ) from None
        raise _unreadable(folder, exc) from None
    except Exception as exc:  # damaged files raise OSError, SafetensorError, KeyError, ...
        raise _unreadable(folder, exc) from None
    module = HFClassifier(model.eval())
    labels = getattr(model.config, "id2label", None) or {}
    names = [str(labels[i]) for i in sorted(labels)] if labels else None
    weights_path = next((folder / n for n in _WEIGHTS if (folder / n).is_file()), None)
    arch = str((config.get("architectures") or [type(model).__name__])[0])
    return BuiltModel(
        module,
        arch,
        _preprocess(folder),
        names,
        cam_layer=_vit_cam_layer(module),
        weights_path=weights_path,
        weights_origin="archive",
    )


def _from_pretrained(transformers: Any, folder: Path) -> nn.Module:
    """Weights only, local only, no custom code, no progress bar."""
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        model: nn.Module = transformers.AutoModelForImageClassification.from_pretrained(
            folder, local_files_only=True, weights_only=True, trust_remote_code=False
        )
    finally:
        if shown:
            bars.enable_progress_bar()
    return model


def _folder(where: str) -> Path:
    """The model folder: a path on disk, else a hub name's snapshot in the local cache."""
    path = Path(where).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SalienceError(f"{path} has no config.json; save the model with save_pretrained")
        return path
    if path.exists():
        raise SalienceError(f"hf: needs a folder written by save_pretrained, not the file {path}")
    from huggingface_hub import constants, try_to_load_from_cache

    found = try_to_load_from_cache(where, "config.json") if where.count("/") == 1 else None
    if isinstance(found, str):
        return Path(found).parent
    raise SalienceError(
        f"model folder not found: {where} (no such folder, and no {where!r} in the Hugging Face "
        f"cache {constants.HF_HUB_CACHE}); salience never downloads models"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise SalienceError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SalienceError(f"{path} is not a JSON object")
    return data


def _unreadable(folder: Path, exc: Exception) -> SalienceError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return SalienceError(f"cannot load the model in {folder} ({type(exc).__name__}: {first})")


def _preprocess(folder: Path) -> Preprocess:
    """The image processor config as a :class:`Preprocess` (ViT: resize to height x width;
    ConvNeXt: shorter side to size / crop_pct below 384 px, then crop; others: shorter side to
    ``size``, then ``crop_size``)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        warnings.warn(
            SalienceWarning(f"{folder} has no preprocessor_config.json; using ImageNet defaults"),
            stacklevel=4,
        )
        return Preprocess()
    cfg = _read_json(path)
    size = cfg.get("size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    crop = cfg.get("crop_size") or {}
    if cfg.get("do_center_crop") and crop:
        side, resize = _square(crop, path), size.get("shortest_edge") or _square(size, path)
    elif "shortest_edge" in size and "crop_pct" in cfg:
        side = int(size["shortest_edge"])
        resize = int(side / float(cfg["crop_pct"])) if side < _CROP_PCT_LIMIT else None
    elif "shortest_edge" in size:
        side, resize = int(size["shortest_edge"]), int(size["shortest_edge"])
    else:
        side, resize = _square(size, path), None
    if not cfg.get("do_resize", True):
        resize = side
    resample = int(cfg.get("resample", 2))
    if resample not in _RESAMPLE:
        warnings.warn(
            SalienceWarning(f"{path}: resample {resample} is read as bicubic"), stacklevel=4
        )
    normalize = cfg.get("do_normalize", True)
    scale = float(cfg.get("rescale_factor", 1 / 255)) * 255 if cfg.get("do_rescale", True) else 255
    if not math.isclose(scale, 1.0, rel_tol=1e-6):
        raise SalienceError(f"{path}: rescale_factor other than 1/255 is not supported")
    return Preprocess(
        size=side,
        resize=resize,
        mean=tuple(float(m) for m in cfg.get("image_mean", (0.0,) * 3))
        if normalize
        else (0.0,) * 3,
        std=tuple(float(s) for s in cfg.get("image_std", (1.0,) * 3)) if normalize else (1.0,) * 3,
        interpolation=_RESAMPLE.get(resample, "bicubic"),
    )


def _square(size: dict[str, Any], path: Path) -> int:
    height, width = size.get("height"), size.get("width")
    if height is None or height != width:
        raise SalienceError(
            f"{path}: size {size} is not a square crop; pass --preprocess with the size to use"
        )
    return int(height)


def _vit_cam_layer(module: nn.Module) -> str | None:
    """The first norm of the block holding the last attention (ViT, DeiT), else None (auto)."""
    blocks = find_attention(module)
    if blocks is None:
        return None
    name = module_name(module, blocks.modules[-1])
    parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
    norm = getattr(parent, "layernorm_before", None)
    return module_name(module, norm) if isinstance(norm, nn.Module) else None
