"""VarGrad (Adebayo et al., 2018, ICLR workshop, arXiv:1810.03307)."""

from __future__ import annotations

from salience.methods._registry import register_method
from salience.methods.smoothgrad import NoisyAverage


@register_method
class VarGrad(NoisyAverage):
    """Variance (over samples, divided by ``samples``) of a gradient method's attributions
    on noisy copies of the input; unsigned."""

    name = "vargrad"
    signed = False
    statistic = "var"
