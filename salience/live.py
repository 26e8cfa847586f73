"""Explaining a run's images again with a loaded model: any class, any method, on demand.

The explorer's live mode (``salience serve RUN --model SPEC``) is built on these three:
:func:`mismatch` says in one line why a model is not the one a run was audited with,
:func:`for_run` gives the model the run's recorded preprocessing (so a live map lies on the
same picture as the stored ones), and :func:`explain_sample` computes one method's map of one
image of the run for any class, through :func:`salience.explaining.explain_picture`.
"""

from __future__ import annotations

from dataclasses import replace

from salience.audit.plan import state_sha256
from salience.errors import SalienceError
from salience.explaining import Explained, explain_picture
from salience.images import load_image
from salience.methods import build_method, get_method, with_model_layer
from salience.models import LoadedModel
from salience.store import Run


def mismatch(run: Run, loaded: LoadedModel) -> str | None:
    """Why ``loaded`` is not the model ``run`` was audited with (None when it is): its
    parameters' hash (or its weights file's) differs from the one ``run.json`` records, or it
    has fewer outputs than the run has classes."""
    recorded = run.info.recorded_model
    spec = recorded.spec or "an unrecorded model"
    where = f"run {run.path.name} was audited with {spec!r}"
    state = recorded.state_sha256
    if state and state_sha256(loaded.module) != state:
        return f"the model {loaded.spec!r} has other weights than the audited one ({where})"
    weights = recorded.weights_sha256
    if not state and weights and loaded.weights_sha256 and loaded.weights_sha256 != weights:
        return f"the weights of {loaded.spec!r} differ from the audited ones ({where})"
    outputs = loaded.num_classes
    if outputs is not None and len(run.class_names) > outputs:
        return (
            f"the model {loaded.spec!r} has {outputs} outputs but run {run.path.name} has "
            f"{len(run.class_names)} classes"
        )
    return None


def for_run(loaded: LoadedModel, run: Run) -> LoadedModel:
    """``loaded`` with the preprocessing the run recorded (the same module, not a copy)."""
    recorded = run.preprocess()
    return loaded if recorded is None else replace(loaded, preprocess=recorded)


def explain_sample(
    loaded: LoadedModel, run: Run, sample_id: str, method: str, target: int | None = None
) -> Explained:
    """``method``'s map of the image ``sample_id`` for class ``target`` (None: the predicted
    class), at the model's input resolution; ``loaded`` comes from :func:`for_run`. A method
    the run computed is built with the parameters it recorded, any other registered method
    with its defaults; the CAM layer is the one the audit used."""
    get_method(method)  # an unknown name lists the known ones
    layer = run.info.recorded_model.cam_layer or loaded.cam_layer
    params = run.info.params(method)
    try:
        built = build_method(method, **with_model_layer(method, params, layer))
    except (SalienceError, TypeError, ValueError):  # parameters of another salience version
        built = build_method(method, **with_model_layer(method, {}, layer))
    picture = load_image(run.image_path(sample_id))
    return explain_picture(loaded, picture, [(method, method, built)], target)
