"""Sparseness (Gini) and complexity (entropy) against their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import salience.metrics as M


def gini_by_pairs(v: np.ndarray) -> float:
    """Gini as the mean absolute difference over all pairs / (2 * mean)."""
    n = v.size
    return float(np.abs(v[:, None] - v[None, :]).sum() / (2 * n * n * v.mean()))


def test_gini_closed_forms() -> None:
    n = 64
    one_hot = torch.zeros(1, 8, 8)
    one_hot[0, 3, 4] = 5.0
    assert M.sparseness(one_hot).value == pytest.approx((n - 1) / n)
    assert M.sparseness(torch.full((1, 8, 8), 2.0)).value == pytest.approx(0.0, abs=1e-12)
    half = torch.zeros(1, 8, 8)
    half[0, :4] = 1.0  # half the pixels equal, half zero: G = 1/2
    assert M.sparseness(half).value == pytest.approx(0.5)
    assert M.sparseness(torch.zeros(1, 8, 8)).value == 0.0


def test_gini_matches_the_pairwise_definition_and_uses_absolute_values() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 6, 7))
    r = M.sparseness(torch.from_numpy(v))
    for i in range(3):
        assert r.scores[i] == pytest.approx(gini_by_pairs(np.abs(v[i]).ravel()))
    pos = M.sparseness(torch.from_numpy(v), absolute=False)
    assert pos.scores[0] == pytest.approx(gini_by_pairs(np.clip(v[0], 0, None).ravel()))
    assert r.direction == "higher" and r.params == {"absolute": True}


def test_entropy_closed_forms() -> None:
    one_hot = torch.zeros(1, 8, 8)
    one_hot[0, 0, 0] = -3.0
    assert M.complexity(one_hot).value == pytest.approx(0.0)
    r = M.complexity(torch.ones(1, 8, 8))
    assert r.value == pytest.approx(math.log(64))
    assert r.details["max_entropy"] == pytest.approx(math.log(64))
    two = torch.zeros(1, 8, 8)
    two[0, 0, :2] = torch.tensor([1.0, 3.0])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert M.complexity(two).value == pytest.approx(expected)
    assert math.isnan(M.complexity(torch.zeros(1, 8, 8)).value)
    assert M.complexity(one_hot).direction == "lower"
