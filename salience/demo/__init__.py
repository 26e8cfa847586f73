"""The profession case study: demo models, their training loop and the end-to-end pipeline."""

from __future__ import annotations

from salience.demo.model import ProfessionNet, profession_net
from salience.demo.pipeline import SIZES, DemoConfig, run_demo
from salience.demo.train import TrainConfig, train

__all__ = [
    "SIZES",
    "DemoConfig",
    "ProfessionNet",
    "TrainConfig",
    "profession_net",
    "run_demo",
    "train",
]
