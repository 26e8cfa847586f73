"""``salience check``: which saliency methods can be trusted for this model.

One declarative table (:mod:`salience.check.steps`) says which registered metrics run on
each method and which numbers the report, the verdict and the tables show;
:func:`run_check` measures them against the ``random`` and ``constant`` controls, gives each
number a bootstrap interval over the images, a verdict per method and a ranking.
"""

from __future__ import annotations

from salience.check.batch import load_batch
from salience.check.config import CONTROLS, DEFAULT_METHODS, CheckConfig, default_methods
from salience.check.measure import CheckEvent, MethodCheck, measure
from salience.check.run import CAVEAT, Estimate, estimate_check, run_check, units
from salience.check.steps import NUMBERS, STAGES, STEPS, CheckStep, Number, columns, entry_numbers
from salience.check.summary import DESIGN_NUMBERS, failed, summarise
from salience.check.verdict import judge, rank

__all__ = [
    "CAVEAT",
    "CONTROLS",
    "DEFAULT_METHODS",
    "DESIGN_NUMBERS",
    "NUMBERS",
    "STAGES",
    "STEPS",
    "CheckConfig",
    "CheckEvent",
    "CheckStep",
    "Estimate",
    "MethodCheck",
    "Number",
    "columns",
    "default_methods",
    "entry_numbers",
    "estimate_check",
    "failed",
    "judge",
    "load_batch",
    "measure",
    "rank",
    "run_check",
    "summarise",
    "units",
]
