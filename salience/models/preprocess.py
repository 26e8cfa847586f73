"""Image preprocessing as plain, recordable data: resize, center crop, scale, normalise.

A :class:`Preprocess` maps an RGB ``PIL.Image`` to a float tensor ``[3, H, W]``. Its geometric
part (:meth:`Preprocess.view`) is also what overlays are drawn on, so a saliency map and the
picture under it always line up. Presets are named on the command line as
``NAME[:key=value,...]``, e.g. ``imagenet:size=160``.

Resizing is capped: an image whose resized longer side would exceed ``max_side`` (default
16384, which a 64:1 image reaches at ``resize=256``) is refused with
:class:`~salience.errors.ImageTooLargeError` before anything is allocated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from salience.errors import ImageTooLargeError, SalienceError
from salience.images import to_rgb
from salience.specs import parse_params

DEFAULT_MAX_SIDE = 16384
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` (``squash``: both sides; ``None``: straight to
    ``size x size``), center-crop ``size``, scale pixels to 0..1 and normalise with
    ``mean``/``std`` (given on the 0..1 scale). A resized side above ``max_side`` is refused."""

    size: int = 224
    resize: int | None = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    squash: bool = False  # resize to resize x resize ignoring the aspect ratio
    max_side: int = DEFAULT_MAX_SIDE  # longest resized side accepted (memory cap)

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATION:
            raise SalienceError(
                f"unknown interpolation {self.interpolation!r}; use {', '.join(_INTERPOLATION)}"
            )
        if self.size <= 0 or (self.resize is not None and self.resize < self.size):
            raise SalienceError(
                f"preprocess needs 0 < size <= resize, got {self.size}, {self.resize}"
            )
        if self.max_side < max(self.size, self.resize or 0):
            raise SalienceError(
                f"preprocess max_side={self.max_side} is below its resize/size; raise max_side"
            )
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise SalienceError("preprocess mean and std need the same length and std > 0")

    def view(self, img: Image.Image) -> Image.Image:
        """The RGB crop the model sees, before scaling and normalisation."""
        new = self.resized_size(img.size)
        img = to_rgb(img)
        w, h = img.size
        if new != (w, h):
            img = img.resize(new, _INTERPOLATION[self.interpolation])
        left = round((new[0] - self.size) / 2.0)
        top = round((new[1] - self.size) / 2.0)
        return img.crop((left, top, left + self.size, top + self.size))

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` after the resize step; :class:`ImageTooLargeError` above
        ``max_side``."""
        w, h = size
        if w < 1 or h < 1:
            raise SalienceError(f"the image has no pixels ({w}x{h})")
        if self.resize is None:
            return (self.size, self.size)
        if self.squash:
            return (self.resize, self.resize)
        # shorter side to ``resize``, as torchvision does (truncating the other)
        new = (
            (self.resize, int(self.resize * h / w))
            if w <= h
            else (int(self.resize * w / h), self.resize)
        )
        if max(new) > self.max_side:
            raise ImageTooLargeError(
                f"a {w}x{h} image resized to a shorter side of {self.resize} would be "
                f"{new[0]}x{new[1]}, above the limit of {self.max_side} pixels a side "
                "(aspect ratio too large); crop or pad it first"
            )
        return new

    def normalize(self, img: Image.Image) -> torch.Tensor:
        """An already cropped RGB image -> normalised ``[3, H, W]`` float32."""
        arr = np.asarray(img, dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (x - mean) / std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.normalize(self.view(img))

    def unnormalize(self, x: torch.Tensor) -> np.ndarray:
        """A preprocessed ``[3, H, W]`` tensor back to an ``H x W x 3`` uint8 picture."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        pixels = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(1, 2, 0).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS: dict[str, Preprocess] = {
    "imagenet": Preprocess(),
    # EfficientNet-Lite (TF reference): (pixel - 127) / 128 on 0..255 pixels.
    "efficientnet_lite": Preprocess(mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
    "half": Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3),  # x in -1..1 (Inception, many ViTs)
    "unit": Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3),  # x in 0..1
}


_OPTIONS = ("size", "resize", "mean", "std", "interpolation", "squash", "max_side")


def _bad_option(item: str) -> str:
    return (
        f"bad preprocessing option {item!r}; write size=224,resize=256,"
        "mean=(0.5,0.5,0.5),std=(0.5,0.5,0.5),interpolation=bicubic"
    )


def parse_preprocess(spec: str | Preprocess | None) -> Preprocess:
    """``"imagenet"``, ``"unit:size=64,resize=64"``... -> :class:`Preprocess`."""
    if spec is None:
        return PRESETS["imagenet"]
    if isinstance(spec, Preprocess):
        return spec
    name, _, rest = spec.partition(":")
    base = PRESETS.get(name.strip())
    if base is None:
        raise SalienceError(
            f"unknown preprocessing {name!r}; use one of {', '.join(PRESETS)}, optionally "
            "with :size=,resize=,mean=,std=,interpolation=,squash=,max_side="
        )
    fields = parse_params(rest, _bad_option, _OPTIONS)
    for key in ("mean", "std"):
        value = fields.get(key)
        if key in fields:
            fields[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3
    try:
        return replace(base, **fields)
    except TypeError:
        raise SalienceError(f"bad preprocessing values in {spec!r}; sizes are integers") from None
