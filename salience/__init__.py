"""salience: explain image classifiers with saliency maps and evaluate models with them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from salience.errors import SalienceError

if TYPE_CHECKING:
    from salience import metrics
    from salience.methods import explain, get_method, list_methods
    from salience.models import LoadedModel, load_model
    from salience.monitor import Monitor
    from salience.notebook import show
    from salience.server.notebook import open_explorer
    from salience.store import Run

__version__ = "0.1.0"


# Every public name is imported on first use, so that `import salience` (and every command's
# start) does not load torch's model zoo, the store's DuckDB and Arrow, or the server.
_LAZY = {
    "metrics": ("salience.metrics", None),
    "explain": ("salience.methods", "explain"),
    "get_method": ("salience.methods", "get_method"),
    "list_methods": ("salience.methods", "list_methods"),
    "LoadedModel": ("salience.models", "LoadedModel"),
    "load_model": ("salience.models", "load_model"),
    "Run": ("salience.store", "Run"),
    "Monitor": ("salience.monitor", "Monitor"),
    "show": ("salience.notebook", "show"),
    "open_explorer": ("salience.server.notebook", "open_explorer"),  # the one door to the server
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'salience' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = (
        import_module(module) if attribute is None else getattr(import_module(module), attribute)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:  # tab completion lists the lazy names too
    return sorted({*globals(), *_LAZY})


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
