"""The verdict of ``salience check`` on one method, and the ranking of the methods.

A method is trusted when its maps change as the weights are randomized (Spearman |map| below
``max_similarity`` both on average over the cascade, i.e. the area under Adebayo's curve, and
once fully random) and it ranks pixels better than the ``random`` control: its margin over
random in insertion-minus-deletion and in ROAD LeRF-minus-MoRF is at least ``margin`` on
average, and neither is below random by more than ``margin`` (the two protocols remove pixels
differently: a fixed colour leaks the mask's shape, imputation does not).

Each condition is decided on the bootstrap interval of its number over the images: passed when
the whole interval is on the right side of the threshold, failed when it is all on the wrong
side, and "not enough evidence" when it straddles the threshold or there are fewer than
``min_images`` images. These are necessary conditions, not proof (Binder et al., 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from salience.check.config import CheckConfig

State = Literal["pass", "fail", "unsure"]
STATUS_ORDER = ("trusted", "not enough evidence", "untrusted", "failed", "control")


@dataclass(frozen=True)
class Condition:
    """``key`` must be below (``below=True``) or at least ``threshold``."""

    key: str
    what: str
    below: bool

    def state(self, entry: dict[str, Any], threshold: float, points: bool) -> State:
        value = entry[self.key]
        span = entry.get("intervals", {}).get(self.key)
        if span is None:
            if not points:
                return "unsure"
            span = (value, value)
        lo, hi = span
        if self.below:
            return "pass" if hi < threshold else "fail" if lo >= threshold else "unsure"
        return "pass" if lo >= threshold else "fail" if hi < threshold else "unsure"


def _span(entry: dict[str, Any], key: str) -> str:
    span = entry.get("intervals", {}).get(key)
    return f" [{span[0]:.2f}, {span[1]:.2f}]" if span else ""


def _over_random(entry: dict[str, Any], random: dict[str, Any]) -> None:
    """Fill the margins over random from the means when there are no per-image numbers."""
    for key, base in (
        ("insertion_minus_deletion_over_random", "insertion_minus_deletion"),
        ("road_over_random", "road_lerf_minus_morf"),
    ):
        if entry.get(key) is None and entry[base] is not None and random[base] is not None:
            entry[key] = entry[base] - random[base]
    parts = [entry.get("insertion_minus_deletion_over_random"), entry.get("road_over_random")]
    if entry.get("faithfulness_over_random") is None and None not in parts:
        entry["faithfulness_over_random"] = sum(parts) / 2  # type: ignore[arg-type]


def judge(
    entry: dict[str, Any],
    name: str,
    random: dict[str, Any],
    config: CheckConfig,
    samples: int | None = None,
) -> None:
    """Set ``trusted``, ``status`` and a plain-words ``verdict`` from the method's and the
    random control's numbers and intervals (rules in the module docstring). An entry without
    ``intervals`` is judged on its means."""
    if entry["control"]:
        entry["status"] = "control"
        entry["verdict"] = f"{name}: a control, the reference line every method must beat"
        return
    entry["trusted"] = False
    _over_random(entry, random)
    keys = ("randomization_similarity", "randomization_mean", "randomization_top")
    faith = ("insertion_minus_deletion_over_random", "road_over_random")
    if any(entry.get(k) is None for k in (*keys, *faith, "faithfulness_over_random")):
        entry["status"] = "untrusted"
        entry["verdict"] = f"{name}: some checks gave no number (NaN maps?); do not rely on it"
        return
    on = f" on {samples} images" if samples is not None else ""
    points = "intervals" not in entry
    few = samples is not None and samples < config.min_images
    t, m = config.max_similarity, config.margin
    sensitivity = [
        (Condition("randomization_similarity", "similarity once fully random", True), t),
        (Condition("randomization_mean", "similarity on average over the cascade", True), t),
    ]
    faithfulness = [
        (Condition("faithfulness_over_random", "margin over a random ranking", False), m),
        *((Condition(k, k.replace("_", " "), False), -m) for k in faith),
    ]
    states = {c.key: c.state(entry, th, points) for c, th in [*sensitivity, *faithfulness]}
    full, mean, top = (entry[k] for k in keys)
    sensitive = all(states[c.key] == "pass" for c, _ in sensitivity)
    margin = entry["faithfulness_over_random"]
    evidence = (
        f"margin over a random ranking {margin:+.2f}{_span(entry, 'faithfulness_over_random')}, "
        f"at least {m:+.2f} needed: insertion minus deletion "
        f"{entry['insertion_minus_deletion_over_random']:+.2f}, ROAD LeRF minus MoRF "
        f"{entry['road_over_random']:+.2f} over random"
    )
    if any(states[c.key] == "fail" for c, _ in sensitivity):
        entry["status"] = "untrusted"
        entry["verdict"] = (
            f"{name}: its maps barely change when the model's weights are randomized "
            f"(similarity {top:.2f} with the top layers random, {mean:.2f}"
            f"{_span(entry, 'randomization_mean')} on average over the cascade, {full:.2f}"
            f"{_span(entry, 'randomization_similarity')} once fully random, {t:.2f} at most "
            f"allowed; the random control scores {random['randomization_similarity']:.2f})"
            f"{on}; do not use it to explain this model"
        )
    elif any(states[c.key] == "fail" for c, _ in faithfulness):
        entry["status"] = "untrusted"
        entry["verdict"] = (
            f"{name}: its maps depend on the learned weights, but the pixels it ranks highest "
            f"matter no more than a random ranking ({evidence}){on}; do not rely on it for "
            "this model"
        )
    elif few or any(s == "unsure" for s in states.values()):
        entry["status"] = "not enough evidence"
        if few:
            why = f"{samples} images are too few for an interval ({config.min_images} needed)"
        else:
            c, th = next(
                (c, th) for c, th in [*sensitivity, *faithfulness] if states[c.key] == "unsure"
            )
            why = (
                f"the {c.what} is {entry[c.key]:.2f}{_span(entry, c.key)} over {samples or '?'} "
                f"images, an interval that straddles the threshold {th:+.2f}"
            )
        entry["verdict"] = f"{name}: not enough evidence: {why}; check more images (--samples)"
    else:
        entry["status"] = "trusted"
        entry["trusted"] = sensitive
        entry["verdict"] = (
            f"{name}: its maps depend on the learned weights (similarity {mean:.2f}"
            f"{_span(entry, 'randomization_mean')} on average over the randomization cascade) "
            f"and pick out pixels that drive the prediction ({evidence}); usable for this "
            f"model{on}"
        )
    sens = entry.get("max_sensitivity")
    if sens is not None and sens > 1:
        entry["verdict"] += (
            f"; beware, its maps change more than their own size under small input noise "
            f"(max-sensitivity {sens:.2f})"
        )


def rank(methods: dict[str, dict[str, Any]]) -> tuple[list[str], str]:
    """Methods best first (trusted, then not enough evidence, untrusted, failed; within each by
    the margin over random), and a one-line recommendation."""

    def key(name: str) -> tuple[int, float]:
        e = methods[name]
        status = "failed" if "error" in e else e.get("status", "untrusted")
        margin = e.get("faithfulness_over_random")
        return STATUS_ORDER.index(status), -(margin if margin is not None else -1e9)

    order = sorted(methods, key=key)
    for k, name in enumerate(order, 1):
        methods[name]["rank"] = k
    trusted = [n for n in order if methods[n].get("status") == "trusted"]
    if trusted:
        others = f" (then {', '.join(trusted[1:])})" if len(trusted) > 1 else ""
        return order, f"for this model, use {trusted[0]}{others}"
    unsure = [n for n in order if methods[n].get("status") == "not enough evidence"]
    if unsure:
        return order, (
            f"no method passed on these images; {', '.join(unsure)} may with more images "
            "(--samples)"
        )
    return order, "no method passed every check: do not rely on these maps for this model"
