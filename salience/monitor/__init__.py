"""Saliency across a model's life: windows of incoming images tested against a reference
run (saliency statistics and map embeddings next to the softmax outputs), candidate model
versions shadow-run against the deployed one, and metadata slices compared inside one run."""

from __future__ import annotations

from salience.monitor.folder import MonitorFolder, is_monitor
from salience.monitor.monitor import Monitor, summarize
from salience.monitor.runner import monitor_data, parse_window, plan_windows
from salience.monitor.slices import slice_columns, slices, slices_file
from salience.monitor.versions import register, rollback_target, shadow, versions

__all__ = [
    "Monitor",
    "MonitorFolder",
    "is_monitor",
    "monitor_data",
    "parse_window",
    "plan_windows",
    "register",
    "rollback_target",
    "shadow",
    "slice_columns",
    "slices",
    "slices_file",
    "summarize",
    "versions",
]
