"""Gradient family: closed forms on tiny float64 models, IG completeness, noise semantics,
lazy chunking, and parity with Captum on ResNet-18 and a small ViT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience
from salience.errors import SalienceError
from salience.methods import build_method
from salience.methods.baselines import baseline_like as path_baseline
from salience.methods.batching import chunk_size
from salience.methods.integrated_gradients import RULES, path_points

C, H, W, K = 3, 5, 4, 4


def linear_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K)).double().eval()


def weight_row(model: nn.Module, k: int) -> torch.Tensor:
    return model[1].weight[k].detach().view(C, H, W)


class Quadratic(nn.Module):
    """f_k(x) = (w_k . x)^2: the gradient 2 (w.x) w is linear along any straight path."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(K, C * H * W, dtype=torch.float64) / 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.w.T) ** 2


class SmoothCNN(nn.Module):
    """conv-softplus-conv-tanh-pool-linear: smooth, so path integrals converge fast."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv2(F.softplus(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


class RowCounter(nn.Module):
    """Wraps a model and records the number of rows of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(x.shape[0]))
        return self.inner(x)


def images(n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, C, H, W), generator=g, dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    a, b = a.double(), b.double()
    return bool((a - b).abs().max() <= tol * max(b.abs().max().item(), 1e-12))


# --- closed forms -------------------------------------------------------------------------


def test_gradient_and_input_x_gradient_of_a_linear_model() -> None:
    model, x, t = linear_model(), images(), [0, 2, 3]
    rows = torch.stack([weight_row(model, k) for k in t])
    grad = salience.explain(model, x, t, "gradient", reduce="none")
    ixg = salience.explain(model, x, t, "input_x_gradient", reduce="none")
    assert close(grad, rows)
    assert close(ixg, x * rows)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", ["zero", 0.5, "black", "tensor"])
def test_integrated_gradients_of_a_linear_model_is_exact(rule: str, baseline: object) -> None:
    model, x = linear_model(), images()
    b = torch.randn(C, 1, W, dtype=torch.float64) if baseline == "tensor" else baseline
    ig = salience.explain(
        model, x, 1, "integrated_gradients", reduce="none", baseline=b, rule=rule, steps=7
    )
    start = path_baseline(x, b)  # type: ignore[arg-type]
    assert close(ig, (x - start) * weight_row(model, 1), 1e-6)
    if baseline == "zero":
        assert close(ig, x * weight_row(model, 1), 1e-6)


@pytest.mark.parametrize("rule", ["gauss_legendre", "trapezoid", "riemann_middle"])
def test_integrated_gradients_of_a_quadratic_model(rule: str) -> None:
    """The integrand 2 (w.(a x)) w is linear in a: these rules integrate it exactly,
    so IG = x * w * (w.x) for a zero baseline."""
    model, x = Quadratic(), images()
    w = model.w[2].detach()
    expected = x * w.view(C, H, W) * (x.flatten(1) @ w).view(-1, 1, 1, 1)
    ig = salience.explain(model, x, 2, "integrated_gradients", reduce="none", rule=rule, steps=3)
    assert close(ig, expected, 1e-6)
    left = salience.explain(
        model, x, 2, "integrated_gradients", reduce="none", rule="riemann_left", steps=3
    )
    assert not close(left, expected, 1e-2)  # the left sum is biased: the test can tell


def test_quadrature_rules() -> None:
    for rule in RULES:
        alphas, weights = path_points(rule, 8)
        assert weights.sum() == pytest.approx(1.0)
        assert alphas.min() >= 0 and alphas.max() <= 1
    alphas, weights = path_points("gauss_legendre", 4)  # exact up to degree 7
    assert (weights * alphas**7).sum() == pytest.approx(1 / 8, rel=1e-12)
    alphas, weights = path_points("trapezoid", 5)
    assert alphas[0] == 0 and alphas[-1] == 1 and weights[0] == pytest.approx(weights[1] / 2)


def test_completeness_on_a_smooth_cnn() -> None:
    torch.manual_seed(3)
    model = SmoothCNN().double().eval()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    method = build_method("integrated_gradients", steps=64, return_error=True)
    ig = method.explain(model, x, [0, 1, 3], reduce="none")
    with torch.no_grad():
        logits_x, logits_0 = model(x), model(torch.zeros_like(x))
    t = torch.tensor([0, 1, 3])
    delta = (logits_x - logits_0).gather(1, t[:, None]).squeeze(1)
    total = ig.double().sum(dim=(1, 2, 3))
    assert torch.allclose(total, delta, rtol=1e-3, atol=1e-6 * delta.abs().max().item())
    # the stored error is computed from the float64 attributions, before format_map
    assert torch.allclose(method.last_score_delta, delta, rtol=1e-10)  # type: ignore[arg-type]
    assert method.last_completeness_error.abs().max() < 1e-3 * delta.abs().max()  # type: ignore[union-attr]
    trap = build_method("integrated_gradients", steps=64, rule="trapezoid", return_error=True)
    trap.explain(model, x, [0, 1, 3])
    assert (
        method.last_completeness_error.abs().sum()  # type: ignore[union-attr]
        < trap.last_completeness_error.abs().sum()  # type: ignore[union-attr]
    )


def test_return_error_off_leaves_no_stale_error() -> None:
    model, x = linear_model(), images()
    method = build_method("integrated_gradients", return_error=True, steps=2)
    method.explain(model, x, 0)
    assert method.last_completeness_error is not None
    method.return_error = False
    method.explain(model, x, 0)
    assert method.last_completeness_error is None and method.last_score_delta is None


# --- baselines ----------------------------------------------------------------------------


def test_black_baseline_is_the_per_image_channel_minimum_or_the_given_value() -> None:
    x = images()
    b = path_baseline(x, "black")
    assert torch.equal(b[1, 2], x[1, 2].min().expand(H, W))
    given = path_baseline(x, "black", black=[-1.0, -2.0, -3.0])
    assert torch.equal(given[0, :, 0, 0], torch.tensor([-1.0, -2.0, -3.0], dtype=x.dtype))
    with pytest.raises(SalienceError, match="channels"):
        path_baseline(x, "black", black=[1.0, 2.0])


def test_blur_and_uniform_baselines() -> None:
    x = images()
    flat = torch.full_like(x, 0.7)
    assert torch.allclose(path_baseline(flat, "blur", sigma=2.0), flat)
    blurred = path_baseline(x, "blur", sigma=2.0)
    assert blurred.std() < x.std() / 2  # smoothing removes most of white noise's variance
    u = path_baseline(x, "uniform", seed=3)
    lo, hi = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert bool((u.amin(dim=(1, 2, 3)) >= lo).all() and (u.amax(dim=(1, 2, 3)) <= hi).all())
    assert torch.equal(u, path_baseline(x, "uniform", seed=3))
    assert not torch.equal(u, path_baseline(x, "uniform", seed=4))
    one = torch.cat([path_baseline(x[i : i + 1], "uniform", seed=3) for i in range(3)])
    assert torch.allclose(u, one)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"baseline": "mean-ish"}, "unknown baseline"),
        ({"rule": "simpson"}, "unknown rule"),
        ({"steps": 0}, "steps"),
        ({"steps": 1, "rule": "trapezoid"}, "steps"),
        ({"baseline": "blur", "sigma": 0.0}, "sigma"),
        ({"baseline": torch.zeros(2, 2)}, "does not broadcast"),
    ],
)
def test_integrated_gradients_parameter_errors(params: dict[str, object], match: str) -> None:
    with pytest.raises(SalienceError, match=match):
        salience.explain(linear_model(), images(), 0, "integrated_gradients", **params)


@pytest.mark.parametrize("baseline", ["zero", "black", "blur", "uniform"])
def test_integrated_gradients_batched_equals_one_by_one(baseline: str) -> None:
    torch.manual_seed(0)
    model = SmoothCNN().double().eval()
    x = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    kw = {"baseline": baseline, "steps": 6, "sigma": 1.5, "batch_size": 4}
    batched = salience.explain(model, x, None, "integrated_gradients", reduce="none", **kw)
    single = torch.cat(
        [
            salience.explain(model, x[i : i + 1], None, "integrated_gradients", reduce="none", **kw)
            for i in range(3)
        ]
    )
    assert close(batched, single, 1e-5)


# --- chunking -----------------------------------------------------------------------------


def test_integrated_gradients_never_builds_all_rows_at_once() -> None:
    model = RowCounter(SmoothCNN().double().eval())
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    results = {}
    for bs in (1, 7, None):
        model.rows.clear()
        results[bs] = salience.explain(
            model, x, [1, 2, 0], "integrated_gradients", steps=10, batch_size=bs
        )
        cap = bs if bs is not None else chunk_size(model, x, "backward")
        assert max(model.rows) <= min(cap, 29)
        assert sum(model.rows) - (model.rows.count(1) if bs is None else 0) == 30
    assert close(results[1], results[7]) and close(results[7], results[None])


# --- SmoothGrad and VarGrad ---------------------------------------------------------------


def test_smoothgrad_and_vargrad_of_a_linear_model() -> None:
    model, x = linear_model(), images()
    w = weight_row(model, 2)
    sg = salience.explain(model, x, 2, "smoothgrad", reduce="none", samples=5)
    sq = salience.explain(model, x, 2, "smoothgrad", reduce="none", samples=5, squared=True)
    vg = salience.explain(model, x, 2, "vargrad", reduce="none", samples=5)
    assert close(sg, w.expand_as(x)) and close(sq, (w * w).expand_as(x))
    assert vg.abs().max() < 1e-6 * w.abs().max() ** 2


def _noise(samples: int, seed: int) -> torch.Tensor:
    """The documented draw: standard normal [samples, C, H, W] from a CPU generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((samples, C, H, W), generator=g).double()


def test_smoothgrad_noise_semantics_on_a_quadratic_model() -> None:
    """grad f = 2 (w.x) w, so the mean and variance over the documented noise are closed form."""
    model, x, s = Quadratic(), images(), 6
    w = model.w[1].detach()
    sigma = 0.2 * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    noisy = x[:, None] + sigma.view(-1, 1, 1, 1, 1) * _noise(s, 5)[None]  # [N, S, C, H, W]
    proj = 2 * (noisy.flatten(2) @ w)  # [N, S]
    wv = w.view(C, H, W)
    expected_sg = proj.mean(1).view(-1, 1, 1, 1) * wv
    expected_vg = proj.var(1, unbiased=False).view(-1, 1, 1, 1) * wv * wv
    kw = {"samples": s, "noise": 0.2, "seed": 5}
    sg = salience.explain(model, x, 1, "smoothgrad", reduce="none", **kw)
    vg = salience.explain(model, x, 1, "vargrad", reduce="none", **kw)
    assert close(sg, expected_sg) and close(vg, expected_vg, 1e-4)


def test_smoothgrad_is_seeded_and_noise_zero_is_the_base_method() -> None:
    torch.manual_seed(0)
    model = SmoothCNN().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    a = salience.explain(model, x, 1, "smoothgrad", samples=4, seed=1)
    assert torch.equal(a, salience.explain(model, x, 1, "smoothgrad", samples=4, seed=1))
    assert not torch.allclose(a, salience.explain(model, x, 1, "smoothgrad", samples=4, seed=2))
    for base in ("gradient", "input_x_gradient", "integrated_gradients"):
        plain = salience.explain(model, x, 1, base, reduce="none")
        sg = salience.explain(
            model, x, 1, "smoothgrad", reduce="none", base=base, noise=0.0, samples=2
        )
        assert close(sg, plain)
    vg = salience.explain(model, x, 1, "vargrad", noise=0.0, samples=3)
    assert vg.abs().max() < 1e-10


def test_smoothgrad_passes_base_params() -> None:
    model, x = Quadratic(), images()
    ig = salience.explain(model, x, 0, "integrated_gradients", steps=3, baseline=0.1)
    sg = salience.explain(
        model,
        x,
        0,
        "smoothgrad",
        base="integrated_gradients",
        noise=0.0,
        samples=2,
        base_params={"steps": 3, "baseline": 0.1},
    )
    assert close(sg, ig)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"base": "gradcam"}, "base must be one of"),
        ({"base": "smoothgrad"}, "base must be one of"),
        ({"base_params": {"steps": 3}}, "gradient has no parameter steps"),
        ({"samples": 0}, "samples"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_smoothgrad_parameter_errors(params: dict[str, object], match: str) -> None:
    with pytest.raises(SalienceError, match=match):
        salience.explain(linear_model(), images(), 0, "smoothgrad", **params)


# --- parity with Captum -------------------------------------------------------------------


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.double().flatten(1), b.double().flatten(1))


def _captum(name: str, model: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    from captum import attr

    t = torch.tensor(target)
    if name == "gradient":
        return attr.Saliency(model).attribute(x.clone(), target=t, abs=False)
    if name == "input_x_gradient":
        return attr.InputXGradient(model).attribute(x.clone(), target=t)
    return attr.IntegratedGradients(model).attribute(x.clone(), target=t, n_steps=50)


@pytest.mark.parametrize("name", ["gradient", "input_x_gradient", "integrated_gradients"])
@pytest.mark.parametrize("fixture", ["resnet18", "small_vit"])
def test_parity_with_captum(name: str, fixture: str, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("captum")
    model = request.getfixturevalue(fixture)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    target = [3, 8]
    ours = salience.explain(model, x, target, name, reduce="none")
    ref = _captum(name, model, x, target).detach()
    assert bool((_cosine(ours, ref) >= 0.999).all()), _cosine(ours, ref)
    scale = (ours.flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).numpy()
    assert np.allclose(scale, 1.0, rtol=1e-3)  # same convention, not just the same direction
