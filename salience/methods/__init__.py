"""Attribution methods: one module per method, all registered in one registry.

Importing this package registers the built-in methods (explicitly, below).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from salience.errors import SalienceError

# isort: off
from salience.methods import (  # noqa: F401  (imported to register, in this order)
    gradient,
    input_x_gradient,
    smoothgrad,
    vargrad,
    integrated_gradients,
    guided_backprop,
    deconvnet,
    guided_gradcam,
    gradcam,
    gradcam_pp,
    hirescam,
    xgradcam,
    layercam,
    scorecam,
    ablationcam,
    eigencam,
    occlusion,
    rise,
    kernel_shap,
    attention_rollout,
    chefer,
    lrp_epsilon,
    lrp_epsilon_plus_flat,
    lrp_epsilon_gamma_box,
    random_control,
    sobel,
    constant,
)

# isort: on
from salience.methods._base import Attribution, ExplainJob, Reduce
from salience.methods._registry import MethodInfo, get_method, list_methods, method_info
from salience.methods._shared import explain_many, share_groups
from salience.methods.spec import parse_method_spec
from salience.outputs import OutputSelector
from salience.targets import TargetLike

__all__ = [
    "Attribution",
    "ExplainJob",
    "MethodInfo",
    "build_method",
    "explain",
    "explain_many",
    "from_spec",
    "get_method",
    "list_methods",
    "method_info",
    "share_groups",
    "with_model_layer",
]


def build_method(name: str, **params: Any) -> Attribution:
    """Instantiate method ``name``; unknown parameters get an error listing the accepted ones."""
    cls = get_method(name)
    accepted = method_info(name).params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise SalienceError(
            f"{name} has no parameter {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    return cls(**params)


def from_spec(spec: str, cam_layer: str | None = None) -> Attribution:
    """The method a spec ``NAME[:key=value,...]`` names, with the model's CAM layer filled in
    when it takes a layer and the spec gives none; unknown names and parameters raise."""
    name, params = parse_method_spec(spec)
    return build_method(name, **with_model_layer(name, params, cam_layer))


def with_model_layer(
    name: str, params: dict[str, Any], cam_layer: str | Callable[[], str] | None
) -> dict[str, Any]:
    """``params`` with the model's CAM layer filled in when method ``name`` takes a layer;
    ``cam_layer`` may be a function finding it, called only then."""
    if cam_layer is not None and "layer" in method_info(name).params and "layer" not in params:
        return {**params, "layer": cam_layer if isinstance(cam_layer, str) else cam_layer()}
    return params


def explain(
    model: nn.Module | Any,
    x: torch.Tensor,
    target: TargetLike | str | Sequence[str] = None,
    method: str = "gradcam",
    *,
    reduce: Reduce = "sum",
    output: OutputSelector = None,
    **params: Any,
) -> torch.Tensor:
    """Saliency maps ``[N, H, W]`` (``[N, C, H, W]`` with ``reduce="none"``) for batch ``x``.

    ``model`` is an ``nn.Module`` or the :class:`~salience.LoadedModel` from ``load_model``
    (then targets may be class names, CAMs use its layer, and ``x`` is moved to its device
    for the computation; the maps come back on ``x``'s device). ``target``: None (predicted
    class), an int or class name, one per image, or a callable on the logits that returns
    one score per row (or one class index per row). ``params`` are the method's keyword
    parameters (see ``salience methods``).
    """
    module, target, cam_layer = _unwrap(model, target)
    params = with_model_layer(method, params, cam_layer)
    device = getattr(model, "device", None) if module is not model else None
    runs_on = x if device is None else x.to(device)  # a LoadedModel runs where it was loaded
    maps = build_method(method, **params).explain(
        module, runs_on, target, reduce=reduce, output=output
    )
    return maps.to(x.device)


def _unwrap(model: Any, target: Any) -> tuple[nn.Module, TargetLike, str | None]:
    """The module, the target with class names turned into indices, and the CAM layer."""
    class_index = getattr(model, "class_index", None)
    module = model.module if class_index is not None else model
    if not isinstance(module, nn.Module):
        raise SalienceError(
            f"model must be a torch.nn.Module or a LoadedModel, not {type(model).__name__}"
        )
    names: list[str] | None = None
    if isinstance(target, str):
        names = [target]
    elif isinstance(target, list | tuple) and target and all(isinstance(t, str) for t in target):
        names = list(target)
    if names is not None:
        if class_index is None:
            raise SalienceError(
                f"target {names[0]!r} is a class name, but a bare nn.Module has no class names; "
                "pass the LoadedModel from salience.load_model, or give class indices"
            )
        indices = [class_index(n) for n in names]
        target = indices[0] if isinstance(target, str) else indices
    return module, target, getattr(model, "cam_layer", None) if class_index else None
