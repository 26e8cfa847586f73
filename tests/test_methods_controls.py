"""Control methods: random, Sobel and constant maps that ignore the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

import salience
from salience._guard import hook_count, tensor_snapshot
from salience.errors import SalienceError
from salience.methods import method_info

CONTROLS = ["random", "sobel", "constant"]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@pytest.mark.parametrize("name", CONTROLS)
def test_registry_metadata(name: str) -> None:
    info = method_info(name)
    assert info.family == "control" and not info.signed
    assert name in salience.list_methods()


@pytest.mark.parametrize("name", CONTROLS)
def test_controls_ignore_the_model_and_leave_it_untouched(tiny_cnn: nn.Module, name: str) -> None:
    tiny_cnn.train()
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    before = tensor_snapshot(x)
    hooks = hook_count(tiny_cnn)
    calls: list[int] = []
    kw = {"seed": 0} if name == "random" else {}
    handle = tiny_cnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = salience.explain(tiny_cnn, x, method=name, **kw)
    finally:
        handle.remove()
    assert out.shape == (2, 9, 11) and out.dtype == torch.float32
    assert bool((out >= 0).all())
    assert not calls
    assert hook_count(tiny_cnn) == hooks and tiny_cnn.training
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags
    after = tensor_snapshot(x)
    assert torch.equal(before[0], after[0]) and after[1] and after[2] is None
    # The same map whatever the model: swap in a differently initialised one.
    other = type(tiny_cnn)().double()
    torch.testing.assert_close(salience.explain(other, x, method=name, **kw), out)


def test_sobel_matches_scipy(tiny_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 17, 23, dtype=torch.float64)
    got = salience.explain(tiny_cnn, x, method="sobel")
    gray = x.mean(1).numpy()
    want = np.stack([np.hypot(ndimage.sobel(g, axis=0), ndimage.sobel(g, axis=1)) for g in gray])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_sobel_finds_a_vertical_edge(tiny_cnn: nn.Module) -> None:
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    x[..., 4:] = 1.0
    got = salience.explain(tiny_cnn, x, method="sobel")[0]
    assert bool((got[:, 3:5] == 4).all())  # |[1 2 1] x [-1 0 1]| across a unit step
    assert bool((got[:, :3] == 0).all()) and bool((got[:, 5:] == 0).all())
    flat = salience.explain(tiny_cnn, torch.full((1, 3, 8, 8), 0.3).double(), method="sobel")
    assert bool((flat == 0).all())


def test_constant_map(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    assert bool((salience.explain(tiny_cnn, x, method="constant") == 1).all())
    assert bool((salience.explain(tiny_cnn, x, method="constant", value=0.25) == 0.25).all())
    with pytest.raises(SalienceError, match="finite"):
        salience.explain(tiny_cnn, x, method="constant", value=float("nan"))


def test_random_unseeded_changes_and_is_uncorrelated(tiny_cnn: nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    a = salience.explain(tiny_cnn, x, method="random")
    b = salience.explain(tiny_cnn, x, method="random")
    assert not torch.equal(a, b)
    assert abs(spearman(a, b)) < 0.15  # 1024 pixels: |rho| < 0.15 is > 4 standard errors
    assert float(a.min()) >= 0 and float(a.max()) < 1
    assert float(a.mean()) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_random_seeded_is_reproducible(tiny_cnn: nn.Module, distribution: str) -> None:
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    kw = {"seed": 7, "distribution": distribution}
    a = salience.explain(tiny_cnn, x, method="random", **kw)
    torch.testing.assert_close(a, salience.explain(tiny_cnn, x, method="random", **kw))
    assert not torch.equal(a, salience.explain(tiny_cnn, x, method="random", seed=8))
    assert not torch.equal(a[0], a[1])  # images in a batch get different maps
    if distribution == "gaussian":  # |N(0, 1)| has mean sqrt(2 / pi)
        assert float(a.mean()) == pytest.approx((2 / np.pi) ** 0.5, abs=0.05)


def test_random_bad_distribution(tiny_cnn: nn.Module) -> None:
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(SalienceError, match="distribution"):
        salience.explain(tiny_cnn, x, method="random", distribution="poisson")
