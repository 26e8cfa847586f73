"""Shared fixtures: seeded tiny models in float64, real architectures with random weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
from helpers.tiny_cnn import TinyCNN
from torch import nn


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cnn() -> nn.Module:
    return TinyCNN().double().eval()


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="session")
def small_vit() -> nn.Module:
    """A torchvision VisionTransformer small enough for CPU tests (64 px, 16 px patches)."""
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=64,
        patch_size=16,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )
    nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision zeroes the head: no gradient
    return vit.eval()


@pytest.fixture
def out_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A per-test folder under test-output/ for artefacts (screenshots, plots) to look at."""
    path = Path(__file__).resolve().parents[1] / "test-output" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    yield path
