"""LRP-epsilon (Bach et al., 2015, PLoS ONE 10(7), e0130140), with zennit's ``Epsilon`` rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from salience.methods._lrp import LrpMethod
from salience.methods._registry import register_method

if TYPE_CHECKING:
    from zennit.core import Composite


@register_method
class LrpEpsilon(LrpMethod):
    """Relevance through every convolution, linear layer, sum and average pool by the epsilon
    rule; as epsilon -> 0 it becomes LRP-0 (input x gradient on ReLU networks).

    The default epsilon (zennit's) keeps relevance conserved but lets near-zero denominators
    explode on deep models whose residual adds have no canonizer (EfficientNet-Lite): pass
    e.g. ``epsilon=0.25`` there, or use ``lrp_epsilon_plus_flat``."""

    name = "lrp_epsilon"

    def composite(self, x: torch.Tensor) -> Composite:
        from zennit.composites import LayerMapComposite, layer_map_base
        from zennit.rules import Epsilon
        from zennit.types import Linear

        return LayerMapComposite(
            layer_map=[*layer_map_base(self.epsilon), (Linear, Epsilon(epsilon=self.epsilon))]
        )
