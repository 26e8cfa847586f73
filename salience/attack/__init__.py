"""Adversarial attacks on predictions and on explanations (``salience attack``).

- :mod:`~salience.attack.prediction`: PGD and FGSM (L-inf and L2, from torchattacks) at a
  list of pixel-space budgets, and each image's smallest successful budget;
- :mod:`~salience.attack.fragility`: label-keeping perturbations that move maps
  (Ghorbani et al., AAAI 2019) against random sign noise of the same budget;
- :mod:`~salience.attack.manipulation`: targeted map manipulation and the beta-smoothing
  defence (Dombrowski et al., NeurIPS 2019);
- :mod:`~salience.attack.detection`: telling attacked images from clean ones by their maps.

Every attack runs on :class:`PixelModel` (the model behind its normalisation), so budgets are
in 0..1 pixel space; the softplus surrogate is applied without changing the user's model.
"""

from __future__ import annotations

from salience.attack._pixel import PixelModel, input_space_eps
from salience.attack._surrogate import SoftplusSurrogate
from salience.attack.fragility import FragilityConfig, fragility_attack, random_sign
from salience.attack.manipulation import ManipulationConfig, manipulate
from salience.attack.pipeline import AttackConfig, AttackRun, Batch, units
from salience.attack.prediction import (
    ATTACKS,
    DEFAULT_EPS,
    require_torchattacks,
    run_attack,
    smallest_budget,
    sweep,
)

__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "AttackConfig",
    "AttackRun",
    "Batch",
    "FragilityConfig",
    "ManipulationConfig",
    "PixelModel",
    "SoftplusSurrogate",
    "fragility_attack",
    "input_space_eps",
    "manipulate",
    "random_sign",
    "require_torchattacks",
    "run_attack",
    "smallest_budget",
    "sweep",
    "units",
]
