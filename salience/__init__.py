"""salience: explain image classifiers with saliency maps and evaluate models with them."""

from __future__ import annotations

from salience import metrics
from salience.errors import SalienceError
from salience.methods import explain, get_method, list_methods
from salience.models import LoadedModel, load_model
from salience.store import Run

__version__ = "0.1.0"

__all__ = [
    "LoadedModel",
    "Run",
    "SalienceError",
    "__version__",
    "explain",
    "get_method",
    "list_methods",
    "load_model",
    "metrics",
]
