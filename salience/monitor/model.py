"""The model a monitor explains: the baseline's (spec, weights, preprocessing and class names
recorded in its ``run.json``), or one given, checked against the baseline's parameters."""

from __future__ import annotations

from pathlib import Path

import torch

from salience.audit.plan import ModelLike, state_sha256
from salience.errors import SalienceError
from salience.models import load_model
from salience.store import Run


def baseline_model(
    run: Run,
    spec: str | None = None,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> ModelLike:
    """Load the baseline's model (or ``spec``/``weights``) with the baseline's preprocessing
    and class names; refuse a model whose parameters differ from the baseline's."""
    recorded = run.info.recorded_model
    spec = spec or recorded.spec
    weights = weights if weights is not None else recorded.weights
    if not spec:
        raise SalienceError(f"baseline {run.path} records no model spec; pass --model")
    try:
        loaded = load_model(
            spec, weights, device, preprocess=run.preprocess(), class_names=run.class_names
        )
    except SalienceError as exc:
        raise SalienceError(
            f"cannot load the baseline's model {spec!r} ({exc}); pass --model"
        ) from None
    check_same_model(run, loaded)
    return loaded


def check_same_model(run: Run, model: ModelLike) -> None:
    """A monitor compares data, not models: the model must be the baseline's."""
    expected = run.info.recorded_model.state_sha256
    if expected and state_sha256(model.module) != expected:
        raise SalienceError(
            f"the model's parameters differ from the baseline's ({run.path}); monitor with the "
            "baseline's model, or pass the new one as --candidate"
        )
