"""Guided backpropagation (Springenberg et al., 2015, ICLR workshop, arXiv:1412.6806)."""

from __future__ import annotations

from salience.methods._activations import RectifiedGradient
from salience.methods._registry import register_method


@register_method
class GuidedBackprop(RectifiedGradient):
    """Gradient where each ReLU passes only positive gradients, and only where it was active."""

    name = "guided_backprop"
    rule = "guided"
