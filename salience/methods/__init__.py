"""Attribution methods: one module per method, all registered in one registry.

Importing this package registers the built-in methods (explicitly, below).
"""

from __future__ import annotations

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
    random_control,
    sobel,
    constant,
)

# isort: on
from salience.methods._base import Attribution, Problem, Reduce
from salience.methods._registry import MethodInfo, get_method, list_methods, method_info
from salience.outputs import OutputSelector
from salience.targets import TargetLike

__all__ = [
    "Attribution",
    "MethodInfo",
    "Problem",
    "build_method",
    "explain",
    "get_method",
    "list_methods",
    "method_info",
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


def explain(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetLike = None,
    method: str = "gradcam",
    *,
    reduce: Reduce = "sum",
    output: OutputSelector = None,
    **params: Any,
) -> torch.Tensor:
    """Saliency maps ``[N, H, W]`` (``[N, C, H, W]`` with ``reduce="none"``) for batch ``x``.

    ``target``: None (predicted class), an int, one int per image, or a callable on the logits.
    ``params`` are the method's keyword parameters (see ``salience methods``).
    """
    return build_method(method, **params).explain(model, x, target, reduce=reduce, output=output)
