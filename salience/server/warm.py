"""Loading a server's runs ahead of the first request (``salience serve`` does it at start)."""

from __future__ import annotations

import logging

from salience.errors import DamagedRunError
from salience.server.query import table
from salience.server.routes.confusion import matrix
from salience.server.run_cache import RunRegistry
from salience.server.summaries import summary


def warm(registry: RunRegistry) -> None:
    """Load every run's tables and confusion matrix, so the first pages of a big run open at
    once; a run that fails here reports its error when it is opened."""
    for entry in registry.entries.values():
        if entry.damage is not None:
            continue
        try:
            summary(entry)
            matrix(entry, None, None)
            for method in entry.run.methods:
                table(entry, method)
        except DamagedRunError as exc:
            entry.mark_damaged(exc)  # listed as damaged, with the reason logged once
        except Exception:
            logging.getLogger("salience.server").exception("could not preload %s", entry.id)
    registry.preloaded = True
