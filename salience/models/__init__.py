"""Loading models to explain: one registry of model sources, preprocessing, CAM layers.

``load_model(spec, weights=None, device=None)`` accepts ``torchvision:NAME``, ``timm:NAME``, a
TorchScript file, ``package.module:factory`` (or ``FILE.py:factory``), ``efficientnet_lite0`` and
``hf:FOLDER`` (a saved Hugging Face image classifier).
"""

from __future__ import annotations

from salience.models import (  # noqa: F401  (imported to register their sources)
    efficientnet_lite,
    huggingface,
)
from salience.models.preprocess import PRESETS, Preprocess, parse_preprocess
from salience.models.settings import memory_format
from salience.models.sources import (
    LoadedModel,
    ModelSource,
    imagenet_classes,
    imagenet_wnids,
    list_sources,
    load_model,
    register_source,
)
from salience.models.weights import read_state_dict

__all__ = [
    "PRESETS",
    "LoadedModel",
    "ModelSource",
    "Preprocess",
    "imagenet_classes",
    "imagenet_wnids",
    "list_sources",
    "load_model",
    "memory_format",
    "parse_preprocess",
    "read_state_dict",
    "register_source",
]
