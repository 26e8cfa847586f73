"""salience: explain image classifiers with saliency maps and evaluate models with them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salience import metrics
from salience.errors import SalienceError
from salience.methods import explain, get_method, list_methods
from salience.models import LoadedModel, load_model
from salience.store import Run

if TYPE_CHECKING:
    from salience.monitor import Monitor
    from salience.notebook import show
    from salience.server.notebook import open_explorer

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # imported on first use, to keep `import salience` light
    if name == "Monitor":
        from salience.monitor import Monitor

        return Monitor
    if name == "show":
        from salience.notebook import show

        return show
    if name == "open_explorer":  # the one door from the library's namespace to the server
        from salience.server.notebook import open_explorer

        return open_explorer
    raise AttributeError(f"module 'salience' has no attribute {name!r}")


__all__ = [
    "LoadedModel",
    "Monitor",
    "Run",
    "SalienceError",
    "__version__",
    "explain",
    "get_method",
    "list_methods",
    "load_model",
    "metrics",
    "open_explorer",
    "show",
]
