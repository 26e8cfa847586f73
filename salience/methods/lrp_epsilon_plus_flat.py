"""LRP EpsilonPlusFlat composite (Montavon et al., 2019, LNCS 11700; Kohlbrenner et al., 2020,
IJCNN, arXiv:1910.09840), zennit's ``EpsilonPlusFlat``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from salience.methods._lrp import LrpMethod
from salience.methods._registry import register_method

if TYPE_CHECKING:
    from zennit.core import Composite


@register_method
class LrpEpsilonPlusFlat(LrpMethod):
    """LRP with the flat rule in the first layer, z-plus in the other convolutions and epsilon
    in the dense layers."""

    name = "lrp_epsilon_plus_flat"

    def composite(self, x: torch.Tensor) -> Composite:
        from zennit.composites import EpsilonPlusFlat

        return EpsilonPlusFlat(epsilon=self.epsilon)
