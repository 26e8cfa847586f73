"""The one table of ``salience check``: which registered metrics it runs on each method, with
which settings, and the numbers it reports. Measuring, the summary, the verdict's intervals,
the CLI table and the HTML page all read it; adding a metric to the check is one row here.

A :class:`CheckStep` runs one registered metric; the registry says which data it takes (the
model, the images, the method's maps, the method itself, the explained classes). A :class:`Number`
is one figure of ``report.json``: its per-image values (bootstrap intervals come from them),
its column label, which way is better and a one-sentence plain meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from salience.check.config import CheckConfig
from salience.metrics import MetricResult, metric_info
from salience.metrics._result import Direction

Results = dict[str, MetricResult]


@dataclass(frozen=True)
class CheckStep:
    """One measurement: the metric ``metric`` stored under ``name`` (also its progress stage)."""

    name: str
    metric: str
    settings: Callable[[CheckConfig], dict[str, Any]]
    stage: str = ""  # the progress stage it belongs to (default: its name)
    explains: Callable[[CheckConfig], float] = lambda c: 0.0  # method calls per image
    forwards: Callable[[CheckConfig], float] = lambda c: 0.0  # forward passes per image
    curve: str = ""  # the report's key for the x values of its mean curve; none when empty


@dataclass(frozen=True)
class Number:
    """One figure of a method's report entry."""

    key: str
    label: str
    meaning: str
    direction: Direction
    per_image: Callable[[Results], torch.Tensor]
    column: bool = True  # shown in the HTML table
    short: str = ""  # its header in the CLI table, which shows it when set
    panel: str = ""  # its bar chart's title in the HTML overview, which shows it when set
    note: str = ""  # its phrase ("{}": the value) in the HTML page's note under each method


STEPS: tuple[CheckStep, ...] = (
    CheckStep(
        "randomization",
        "model_randomization",
        lambda c: {
            "layers": c.layers,
            "extra_similarities": ("spearman", "ssim", "hog"),
            "seed": c.seed,
        },
        explains=lambda c: float(c.layers or 16),
    ),
    CheckStep(
        "deletion",
        "deletion",
        lambda c: {"steps": c.steps, "batch_size": c.batch_size, "seed": c.seed},
        forwards=lambda c: c.steps + 1.0,
        curve="fraction",
    ),
    CheckStep(
        "insertion",
        "insertion",
        lambda c: {"steps": c.steps, "batch_size": c.batch_size, "seed": c.seed},
        forwards=lambda c: c.steps + 1.0,
        curve="fraction",
    ),
    CheckStep(
        "road_morf",
        "road_morf",
        lambda c: {"percentages": c.road_percentages, "batch_size": c.batch_size, "seed": c.seed},
        forwards=lambda c: 2.0 * len(c.road_percentages),  # imputation costs about a forward
        stage="road",
        curve="road_fraction",
    ),
    CheckStep(
        "road_lerf",
        "road_lerf",
        lambda c: {"percentages": c.road_percentages, "batch_size": c.batch_size, "seed": c.seed},
        forwards=lambda c: 2.0 * len(c.road_percentages),
        stage="road",
        curve="road_fraction",
    ),
    CheckStep(
        "max_sensitivity",
        "max_sensitivity",
        lambda c: {"radius": c.radius, "samples": c.sensitivity_samples, "seed": c.seed},
        explains=lambda c: float(c.sensitivity_samples),
        stage="sensitivity",
    ),
    CheckStep("sparseness", "sparseness", lambda c: {}, stage="complexity"),
    CheckStep("complexity", "complexity", lambda c: {}),
)


def _scores(step: str) -> Callable[[Results], torch.Tensor]:
    return lambda r: r[step].scores


def _similarity(
    reduce: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[Results], torch.Tensor]:
    return lambda r: reduce(r["randomization"].curves["similarity"].double())


def _gap(high: str, low: str) -> Callable[[Results], torch.Tensor]:
    return lambda r: r[high].scores - r[low].scores


def _direction(step: str) -> Direction:
    return metric_info(next(s.metric for s in STEPS if s.name == step)).direction


NUMBERS: tuple[Number, ...] = (
    Number(
        "randomization_mean",
        "randomization: cascade mean",
        "How much the map still looks like itself, on average, while the model's layers are "
        "randomized from the top down; low means the map depends on what the model learned.",
        "lower",
        _similarity(lambda s: s.mean(1)),
        short="rand. mean",
    ),
    Number(
        "randomization_similarity",
        "randomization: fully random",
        "How much the map of the fully randomized model looks like the trained model's map "
        "(Spearman of |map|); low means the map depends on the learned weights.",
        _direction("randomization"),
        _scores("randomization"),
        short="rand. full",
        note="randomization similarity after full randomization {}",
    ),
    Number(
        "randomization_top",
        "randomization: top stage",
        "Similarity once only the top layers are random.",
        "lower",
        _similarity(lambda s: s[:, 0]),
        column=False,
    ),
    Number(
        "insertion_minus_deletion",
        "insertion - deletion",
        "How much faster the class probability rises when the top-ranked pixels are put back "
        "than it falls when they are deleted.",
        "higher",
        _gap("insertion", "deletion"),
        column=False,
        note="insertion minus deletion {}",
    ),
    Number(
        "road_lerf_minus_morf",
        "ROAD LeRF - MoRF",
        "How much more the probability drops when the top-ranked pixels are imputed away than "
        "when the bottom-ranked ones are.",
        "higher",
        _gap("road_lerf", "road_morf"),
        column=False,
        note="ROAD LeRF minus MoRF {}",
    ),
    Number(
        "deletion_auc",
        "deletion AUC",
        "Class probability, on average, as the top-ranked pixels are deleted.",
        _direction("deletion"),
        _scores("deletion"),
        column=False,
    ),
    Number(
        "insertion_auc",
        "insertion AUC",
        "Class probability, on average, as the top-ranked pixels are put into a blurred copy.",
        _direction("insertion"),
        _scores("insertion"),
        column=False,
    ),
    Number(
        "road_morf",
        "ROAD MoRF",
        "Class probability with the top-ranked pixels imputed away.",
        _direction("road_morf"),
        _scores("road_morf"),
        column=False,
    ),
    Number(
        "road_lerf",
        "ROAD LeRF",
        "Class probability with the bottom-ranked pixels imputed away.",
        _direction("road_lerf"),
        _scores("road_lerf"),
        column=False,
    ),
    Number(
        "max_sensitivity",
        "max-sensitivity",
        "How much the map changes, relative to its size, under small input noise; above 1 it "
        "changes more than its own size.",
        _direction("max_sensitivity"),
        _scores("max_sensitivity"),
        short="max-sens.",
        panel="robustness: max-sensitivity (lower is better)",
        note="max-sensitivity {}",
    ),
    Number(
        "sparseness",
        "sparseness",
        "How concentrated the map is (Gini index: 0 flat, 1 a single pixel).",
        _direction("sparseness"),
        _scores("sparseness"),
        panel="complexity: sparseness, Gini (higher is sparser)",
        note="sparseness {}",
    ),
    Number(
        "complexity",
        "complexity",
        "Entropy of the map seen as a distribution; lower is simpler.",
        _direction("complexity"),
        _scores("complexity"),
        column=False,
        note="complexity {}",
    ),
)
# Numbers measured against the random control, image by image: the verdict's faithfulness.
OVER_RANDOM: tuple[Number, ...] = (
    Number(
        "insertion_minus_deletion_over_random",
        "ins. - del. over random",
        "How much better than a random ranking the map ranks pixels by deletion and insertion "
        "(insertion minus deletion, minus the random control's).",
        "higher",
        _gap("insertion", "deletion"),
    ),
    Number(
        "road_over_random",
        "ROAD over random",
        "How much better than a random ranking the map ranks pixels by ROAD (LeRF minus MoRF, "
        "minus the random control's); imputation leaks no mask shape.",
        "higher",
        _gap("road_lerf", "road_morf"),
    ),
)
FAITHFULNESS = Number(
    "faithfulness_over_random",
    "faithfulness over random",
    "The mean of the two margins over random: how much better than chance the map ranks the "
    "pixels that drive the prediction.",
    "higher",
    lambda r: torch.zeros(0),  # computed from OVER_RANDOM
    short="over random",
)
COST = Number(
    "ms_per_image",
    "ms / image",
    "Milliseconds the method takes per image on this device.",
    "lower",
    lambda r: torch.zeros(0),  # timed, not per image
    short="ms/img",
    panel="cost: ms per image",
    note="{} ms per image",
)


def entry_numbers() -> list[Number]:
    """Every number a method's report entry holds (the over-random ones once the random
    control is measured; all of them, as None, in the entry of a method that failed)."""
    return [*NUMBERS, *OVER_RANDOM, FAITHFULNESS, COST]


def columns(short: bool = False) -> list[Number]:
    """The numbers the HTML table (or, ``short``, the CLI table) shows, in order: those the
    verdict uses first."""
    first = [n for n in NUMBERS if n.key.startswith("randomization") and n.column]
    rest = [n for n in NUMBERS if n.column and n not in first]
    every = [*first, *OVER_RANDOM, FAITHFULNESS, *rest, COST]
    return [n for n in every if n.short] if short else every


def stage(step: CheckStep) -> str:
    return step.stage or step.name


STAGES = ("explain", *dict.fromkeys(stage(s) for s in STEPS))
