"""Pretrained weights that are already on this machine: the torch hub and Hugging Face caches.

salience never downloads weights. When a ``torchvision:NAME`` or ``timm:NAME`` model is given
without ``--weights``, the library's own pretrained file is used if an earlier download left
it in the local cache (``$TORCH_HOME/hub/checkpoints`` for torchvision and URL-hosted timm
weights, the Hugging Face hub cache for timm's ``hf_hub_id`` weights). Otherwise the model
keeps its random initialisation and :class:`RandomWeightsWarning` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from salience.errors import SalienceWarning

_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


class RandomWeightsWarning(SalienceWarning):
    """A model runs with randomly initialised weights: its predictions and maps mean nothing."""


def hub_checkpoint(url: str | None) -> Path:
    """Where ``torch.hub`` keeps the file downloaded from ``url``."""
    name = Path(urlparse(url or "").path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def cached_torchvision(name: str) -> tuple[Path | None, Path]:
    """The cached file of torchvision model ``name``'s default weights, and where it would be."""
    import torchvision.models as tvm

    try:
        url = tvm.get_model_weights(name).DEFAULT.url  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        return None, Path(torch.hub.get_dir()) / "checkpoints"
    where = hub_checkpoint(url)
    return (where if where.is_file() else None), where


def cached_timm(pretrained_cfg: dict[str, Any]) -> tuple[Path | None, str]:
    """The cached pretrained file of a timm model (its ``pretrained_cfg``), and where to put it."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        names = [pretrained_cfg.get("hf_hub_filename"), *_HF_FILES]
        for filename in filter(None, names):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return Path(found), hub_id
        return None, f"the Hugging Face cache ({constants.HF_HUB_CACHE}) as {hub_id}"
    url = pretrained_cfg.get("url")
    if url:
        where = hub_checkpoint(url)
        return (where if where.is_file() else None), str(where)
    return None, "nowhere (timm lists no pretrained weights for it)"
