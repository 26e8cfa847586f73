"""Saliency metrics: faithfulness, randomization, localization, robustness, complexity.

Every metric is a function ``salience.metrics.<name>(...)`` returning a :class:`MetricResult`
(per-image scores, their mean, the direction in which it is better, the paper, and every
parameter it ran with). They are registered in one registry: :func:`list_metrics`,
:func:`metric_info`, :func:`get_metric`.
"""

from __future__ import annotations

from salience.metrics._registry import (
    CATEGORIES,
    MetricInfo,
    get_metric,
    list_metrics,
    metric_info,
)
from salience.metrics._result import MetricResult
from salience.metrics._similarity import SIMILARITIES, similarity
from salience.metrics.complexity import complexity, sparseness
from salience.metrics.deletion import deletion, insertion
from salience.metrics.infidelity import infidelity
from salience.metrics.localization import (
    energy_pointing_game,
    pointing_game,
    relevance_mass,
    relevance_rank,
    top_k_iou,
)
from salience.metrics.pixel_flipping import aopc, pixel_flipping
from salience.metrics.randomization import data_randomization, model_randomization, random_logit
from salience.metrics.road import road_lerf, road_morf
from salience.metrics.robustness import avg_sensitivity, local_lipschitz, max_sensitivity
from salience.metrics.shared_interest import shared_interest

__all__ = [
    "CATEGORIES",
    "SIMILARITIES",
    "MetricInfo",
    "MetricResult",
    "aopc",
    "avg_sensitivity",
    "complexity",
    "data_randomization",
    "deletion",
    "energy_pointing_game",
    "get_metric",
    "infidelity",
    "insertion",
    "list_metrics",
    "local_lipschitz",
    "max_sensitivity",
    "metric_info",
    "model_randomization",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "relevance_mass",
    "relevance_rank",
    "road_lerf",
    "road_morf",
    "shared_interest",
    "similarity",
    "sparseness",
    "top_k_iou",
]
