"""Saliency maps that stay differentiable with respect to the pixels, for attacks on them.

The registry methods detach their inputs (explanations are read, not optimised); an attack on
an explanation needs the map's own gradient, so these few maps are recomputed here with
``create_graph=True``. They follow the registry's definitions (gradient with respect to the
model's normalised input, channels summed; Grad-CAM with its ReLU, upsampled bilinearly), and
are meant to run under :class:`~salience.attack._surrogate.SoftplusSurrogate`. Maps of other
methods are attacked through the gradient map and evaluated with the real method.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from salience._guard import Hooks
from salience.attack._pixel import PixelModel
from salience.models.layers import CamLayer

MapFn = Callable[[PixelModel, torch.Tensor, torch.Tensor, "CamLayer | None"], torch.Tensor]


def _leaf(pixels: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``pixels`` and whether the caller differentiates through them (then graphs are kept)."""
    if pixels.requires_grad:
        return pixels, True
    return pixels.detach().requires_grad_(True), False


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, labels[:, None]).sum()


def _input_gradient(
    pm: PixelModel, pixels: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model input for ``pixels`` and the labels' score gradient with respect to it
    (differentiable again when ``pixels`` requires grad)."""
    pixels, create = _leaf(pixels)
    with torch.enable_grad():
        x = pm.to_input(pixels)
        (g,) = torch.autograd.grad(_scores(pm.logits(x), labels), x, create_graph=create)
    return x, g


def gradient_map(
    pm: PixelModel, pixels: torch.Tensor, labels: torch.Tensor, layer: CamLayer | None = None
) -> torch.Tensor:
    """Input gradient (Simonyan et al., 2014), summed over channels, ``[N, H, W]``."""
    return _input_gradient(pm, pixels, labels)[1].sum(1)


def input_x_gradient_map(
    pm: PixelModel, pixels: torch.Tensor, labels: torch.Tensor, layer: CamLayer | None = None
) -> torch.Tensor:
    """Input times gradient (Shrikumar et al., 2016), summed over channels."""
    x, g = _input_gradient(pm, pixels, labels)
    return (x * g).sum(1)


def integrated_gradients_map(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    layer: CamLayer | None = None,
    steps: int = 4,
) -> torch.Tensor:
    """Integrated gradients from a zero input (Sundararajan et al., ICML 2017), midpoint rule
    with few ``steps``: a cheap differentiable stand-in; the real map is evaluated with 50."""
    pixels, create = _leaf(pixels)
    with torch.enable_grad():
        x = pm.to_input(pixels)
        total = torch.zeros_like(x)
        for k in range(steps):
            point = x * ((k + 0.5) / steps)
            (g,) = torch.autograd.grad(
                _scores(pm.logits(point), labels), point, create_graph=create
            )
            total = total + g
    return (x * total / steps).sum(1)


def gradcam_map(
    pm: PixelModel, pixels: torch.Tensor, labels: torch.Tensor, layer: CamLayer | None = None
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) at ``layer``, ReLU'd and upsampled bilinearly."""
    if layer is None:
        raise ValueError("gradcam_map needs the CAM layer")
    pixels, create = _leaf(pixels)
    store: list[torch.Tensor] = []

    def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        store.append(out)
        return out.clone()  # a later in-place op must not hit the stored activation

    h, w = pixels.shape[-2:]
    with Hooks() as hooks, torch.enable_grad():
        hooks.add(layer.module.register_forward_hook(hook))
        logits = pm(pixels)
        hooks.remove()
        (g,) = torch.autograd.grad(_scores(logits, labels), store[0], create_graph=create)
    acts, grads = layer.maps(store[0], h, w), layer.maps(g, h, w)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1))
    return F.interpolate(cam[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]


DIFFERENTIABLE: dict[str, MapFn] = {
    "gradient": gradient_map,
    "input_x_gradient": input_x_gradient_map,
    "integrated_gradients": integrated_gradients_map,
    "gradcam": gradcam_map,
}


def surrogate_for(method: str) -> str:
    """The differentiable map an attack on ``method`` optimises (its own, else the gradient)."""
    return method if method in DIFFERENTIABLE else "gradient"
