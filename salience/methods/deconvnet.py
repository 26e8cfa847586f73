"""DeconvNet (Zeiler & Fergus, 2014, ECCV, arXiv:1311.2901), as a gradient rule."""

from __future__ import annotations

from salience.methods._activations import RectifiedGradient
from salience.methods._registry import register_method


@register_method
class Deconvnet(RectifiedGradient):
    """Gradient where each ReLU passes only positive gradients, whatever its forward input.

    ReLU6 and hardtanh(0, x) get the same backward: the rectified gradient, unmasked.
    """

    name = "deconvnet"
    rule = "deconv"
