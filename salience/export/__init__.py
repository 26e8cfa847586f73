"""Interoperability: a run exported to FiftyOne; check and audit summaries logged to MLflow.

Each integration imports its package only when called (optional extras ``fiftyone`` and
``mlflow``); a missing one is a one-line :class:`SalienceError` saying what to install.
"""

from __future__ import annotations

from salience.export.fiftyone import export_fiftyone
from salience.export.mlflow import log_audit, log_check

__all__ = ["export_fiftyone", "log_audit", "log_check"]
