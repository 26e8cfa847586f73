"""Cost and fidelity of attribution methods under cheaper settings (``salience cost``)."""

from __future__ import annotations

from salience.cost.pipeline import CostConfig, measure_cost
from salience.cost.recommend import frontier, recommend
from salience.cost.variants import KINDS, Variant, cost_knob, forward_only, variants

__all__ = [
    "KINDS",
    "CostConfig",
    "Variant",
    "cost_knob",
    "forward_only",
    "frontier",
    "measure_cost",
    "recommend",
    "variants",
]
