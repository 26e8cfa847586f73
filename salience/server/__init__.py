"""The explorer's web server: ``create_app(runs)`` serves runs read-only to the browser UI."""

from __future__ import annotations

from salience.server.app import create_app
from salience.server.run_cache import RunRegistry

__all__ = ["RunRegistry", "create_app"]
