"""Dataset audits: run a model over labelled images, store predictions, maps and statistics.

Stages (each usable alone): :func:`salience.data.dataset.read_dataset` (read) ->
:class:`~salience.audit.decode.DecodeStage` (decode/preprocess) ->
:func:`~salience.audit.attribute.attribute` (predict + attribute) ->
:func:`~salience.audit.assemble.assemble` with :func:`~salience.audit.stats.map_statistics`
(statistics) -> :class:`salience.store.ShardWriter` (write). :func:`audit` runs them locally.
"""

from __future__ import annotations

from salience.audit.runner import Progress, audit, parse_map_size
from salience.audit.stats import map_statistics, si_pattern
from salience.audit.summary import summarize

__all__ = ["Progress", "audit", "map_statistics", "parse_map_size", "si_pattern", "summarize"]
