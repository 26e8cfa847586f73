"""Robustness metrics: exact answers for explainers whose maps are known functions of x."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import salience.metrics as M


def identity_map(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return x.sum(1)


def test_a_map_that_ignores_the_input_is_perfectly_robust(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    for name in ("max_sensitivity", "avg_sensitivity", "local_lipschitz"):
        r = M.get_metric(name)(tiny_cnn, x, "constant", samples=5)
        assert torch.equal(r.scores, torch.zeros(2, dtype=torch.float64)), name


def test_sensitivity_of_a_linear_map_scales_with_the_radius(tiny_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    small = M.max_sensitivity(tiny_cnn, x, identity_map, radius=0.1, samples=7)
    large = M.max_sensitivity(tiny_cnn, x, identity_map, radius=0.3, samples=7)
    assert torch.allclose(large.scores, 3 * small.scores, rtol=1e-10)
    avg = M.avg_sensitivity(tiny_cnn, x, identity_map, radius=0.1, samples=7)
    assert bool((avg.scores <= small.scores).all())
    assert torch.allclose(avg.scores, small.curves["per_sample"].mean(1))
    # normalised by ||a(x)||: unnormalised / normalised = ||sum_c x||
    raw = M.max_sensitivity(tiny_cnn, x, identity_map, radius=0.1, samples=7, normalize=False)
    assert torch.allclose(raw.scores / small.scores, x.sum(1).flatten(1).norm(dim=1))


def test_local_lipschitz_of_a_scaled_identity_is_the_scale(tiny_cnn: nn.Module) -> None:
    class Gray(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean((1, 2, 3))[:, None])

    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    r = M.local_lipschitz(Gray().double(), x, lambda m, inp, c: 2.5 * inp[:, 0], samples=4)
    assert torch.allclose(r.scores, torch.full((2,), 2.5, dtype=torch.float64))


def test_seeds_reproduce_and_record(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    a = M.max_sensitivity(
        tiny_cnn, x, "smoothgrad", samples=3, seed=4, method_params={"samples": 4}
    )
    b = M.max_sensitivity(
        tiny_cnn, x, "smoothgrad", samples=3, seed=4, method_params={"samples": 4}
    )
    assert torch.equal(a.scores, b.scores)
    assert a.params["method"] == "smoothgrad" and a.params["method_params"] == {"samples": 4}
    assert a.params["seed"] == 4 and a.params["radius"] == 0.2
    state = torch.random.get_rng_state()
    M.max_sensitivity(tiny_cnn, x, "gradient", samples=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched


def test_perturbed_maps_explain_the_clean_images_class(tiny_cnn: nn.Module) -> None:
    seen: list[torch.Tensor] = []

    def spy(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        seen.append(classes.clone())
        return x.sum(1)

    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    M.max_sensitivity(tiny_cnn, x, spy, target=[1, 3], samples=3)
    assert seen[0].tolist() == [1, 3]
    assert seen[1].tolist() == [1, 1, 1, 3, 3, 3]
    with pytest.raises(Exception, match="samples"):
        M.max_sensitivity(tiny_cnn, x, spy, samples=0)
