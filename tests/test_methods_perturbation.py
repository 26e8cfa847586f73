"""Perturbation methods: occlusion, RISE and Kernel SHAP against closed forms and Captum."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience
from salience._guard import hook_count, tensor_snapshot
from salience.errors import SalienceError
from salience.methods import build_method
from salience.methods.baselines import baseline_like, gaussian_blur
from salience.methods.kernel_shap import KernelShap, coalitions
from salience.methods.rise import random_grids, upsample_masks

PERTURBATION = ["occlusion", "rise", "kernel_shap"]
FAST = {
    "occlusion": {"window": 8, "stride": 4},
    "rise": {"masks": 64, "cells": 4},
    "kernel_shap": {"segments": 8, "samples": 32},
}


class Linear(nn.Module):
    """logits = W x.flatten() + b, so every occlusion drop is a known dot product."""

    def __init__(self, shape: tuple[int, int, int], classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def occlusion_reference(
    model: Linear,
    x: torch.Tensor,
    base: torch.Tensor,
    cls: int,
    win: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    """Window-by-window loop: each window's drop w . (x - base) over the window, averaged."""
    n, c, h, w = x.shape
    weight = model.fc.weight[cls].detach().view(c, h, w)
    total = torch.zeros(n, h, w, dtype=x.dtype)
    count = torch.zeros(h, w, dtype=x.dtype)
    for y0 in range(0, h - win[0] + stride[0], stride[0]):
        for x0 in range(0, w - win[1] + stride[1], stride[1]):
            sl = (slice(y0, y0 + win[0]), slice(x0, x0 + win[1]))
            drop = (weight[:, sl[0], sl[1]] * (x - base)[:, :, sl[0], sl[1]]).sum((1, 2, 3))
            total[:, sl[0], sl[1]] += drop[:, None, None]
            count[sl] += 1
    return total / count


@pytest.mark.parametrize(
    ("win", "stride", "baseline"),
    [((3, 3), (1, 1), 0.0), ((4, 3), (3, 2), "mean"), ((5, 5), (4, 4), 0.7), ((2, 6), (2, 5), "t")],
)
def test_occlusion_closed_form_on_linear_model(
    win: tuple[int, int], stride: tuple[int, int], baseline: object
) -> None:
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    model = Linear((3, 11, 13)).double().eval()
    base_arg = torch.randn(3, 11, 13, dtype=torch.float64) if baseline == "t" else baseline
    base = baseline_like(x, base_arg).expand_as(x)  # type: ignore[arg-type]
    got = salience.explain(
        model, x, target=[2, 0], method="occlusion", window=win, stride=stride, baseline=base_arg
    )
    want = torch.stack(
        [
            occlusion_reference(model, x[i : i + 1], base[i : i + 1], cls, win, stride)[0]
            for i, cls in enumerate([2, 0])
        ]
    )
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("win", "stride", "baseline"),
    [(8, 4, 0.0), (7, 3, 0.5), ((6, 9), (5, 4), 0.0), (8, 8, "blur")],
)
def test_occlusion_matches_captum(
    resnet18: nn.Module, win: int | tuple[int, int], stride: int | tuple[int, int], baseline: object
) -> None:
    captum = pytest.importorskip("captum.attr")
    x = torch.randn(2, 3, 40, 40)
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    ref_base = baseline_like(x, "blur") if baseline == "blur" else baseline
    ref = captum.Occlusion(resnet18).attribute(
        x,
        target=[1, 3],
        sliding_window_shapes=(3, *pair(win)),
        strides=(3, *pair(stride)),
        baselines=ref_base,
        perturbations_per_eval=16,
    )[:, 0]
    got = salience.explain(
        resnet18,
        x,
        target=[1, 3],
        method="occlusion",
        window=win,
        stride=stride,
        baseline=baseline,
    )
    cos = F.cosine_similarity(got.flatten(1), ref.flatten(1))
    assert bool((cos >= 0.999).all()), cos
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_occlusion_predicted_target_is_the_argmax(tiny_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    pred = tiny_cnn(x).argmax(1)
    a = salience.explain(tiny_cnn, x, method="occlusion", window=4, stride=2)
    b = salience.explain(tiny_cnn, x, target=pred, method="occlusion", window=4, stride=2)
    torch.testing.assert_close(a, b)


def test_occlusion_window_errors(tiny_cnn: nn.Module) -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(SalienceError, match="larger than the image"):
        salience.explain(tiny_cnn, x, method="occlusion", window=9, stride=1)
    with pytest.raises(SalienceError, match="stride"):
        salience.explain(tiny_cnn, x, method="occlusion", window=2, stride=3)
    with pytest.raises(SalienceError, match="baseline"):
        salience.explain(tiny_cnn, x, method="occlusion", window=2, stride=2, baseline="grey")
    with pytest.raises(SalienceError, match="broadcast"):
        salience.explain(
            tiny_cnn, x, method="occlusion", window=2, stride=2, baseline=torch.zeros(2, 8, 8)
        )


def test_blur_baseline_is_a_normalised_gaussian() -> None:
    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[0, 0, 10, 10] = 1.0
    out = gaussian_blur(x, 2.0)[0, 0]
    assert out.sum().item() == pytest.approx(1.0)
    r = torch.arange(-3, 4, dtype=torch.float64)
    g = torch.exp(-0.5 * (r / 2.0) ** 2)
    want = torch.outer(g, g) / torch.outer(g, g).sum() * out[7:14, 7:14].sum()
    torch.testing.assert_close(out[7:14, 7:14], want)


# --- RISE ----------------------------------------------------------------------------------


class RegionScore(nn.Module):
    """Class 0's logit is 8 x (mean of x over a fixed box - 1/2); class 1's is 0."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.region).sum((1, 2, 3)) / self.region.sum() / x.shape[1]
        return torch.stack([8 * (s - 0.5), torch.zeros_like(s)], 1)


@pytest.mark.parametrize("score", ["prob", "logit"])
def test_rise_concentrates_on_the_only_region_the_model_reads(score: str) -> None:
    region = torch.zeros(32, 32)
    region[4:12, 18:28] = 1
    x = torch.ones(1, 3, 32, 32, dtype=torch.float64)
    model = RegionScore(region)
    sal = salience.explain(model, x, target=0, method="rise", masks=1000, score=score)[0]
    inside, outside = sal[region.bool()], sal[~region.bool()]
    assert inside.mean() > outside.mean() + 3 * outside.std()
    assert inside.min() > outside.median()
    top = sal.flatten().topk(int(region.sum())).indices
    assert region.flatten()[top].mean() > 0.75


def test_rise_of_a_constant_score_is_that_constant_times_mean_mask() -> None:
    class ConstantLogit(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 2), 2.5, dtype=x.dtype)

    x = torch.randn(2, 3, 21, 21, dtype=torch.float64)
    sal = salience.explain(ConstantLogit(), x, target=0, method="rise", masks=50, score="logit")
    grids, shifts = random_grids(50, 7, 0.5, 0)
    masks = upsample_masks(grids, shifts, (21, 21), torch.float64)
    torch.testing.assert_close(sal.double(), (2.5 * masks.mean(0) / 0.5).expand(2, -1, -1))


def test_rise_masks_follow_the_paper() -> None:
    grids, shifts = random_grids(400, 7, 0.3, 5)
    masks = upsample_masks(grids, shifts, (56, 56), torch.float64)
    assert masks.shape == (400, 56, 56)
    assert masks.min() >= 0 and masks.max() <= 1
    assert masks.mean().item() == pytest.approx(0.3, abs=0.03)
    # Bilinear upsampling of 8 px cells: neighbouring pixels differ by at most 1/8.
    assert masks.diff(dim=1).abs().max() <= 1 / 8 + 1e-9
    # Random shifts: masks drawn from the same grid differ unless their shifts match.
    same = upsample_masks(
        grids[:1].expand(2, -1, -1, -1),
        torch.tensor([[0.0, 0.0], [0.5, 0.5]]),
        (56, 56),
        torch.float64,
    )
    assert not torch.equal(same[0], same[1])


def test_rise_is_reproducible_and_batched_equals_one_by_one(resnet18: nn.Module) -> None:
    x = torch.randn(3, 3, 32, 32)
    kw = {"masks": 48, "cells": 4}
    a = salience.explain(resnet18, x, method="rise", **kw)
    torch.testing.assert_close(a, salience.explain(resnet18, x, method="rise", **kw))
    one = torch.cat(
        [salience.explain(resnet18, x[i : i + 1], method="rise", **kw) for i in range(3)]
    )
    torch.testing.assert_close(a, one, rtol=1e-5, atol=1e-6)
    small = salience.explain(resnet18, x, method="rise", batch_size=5, **kw)
    torch.testing.assert_close(a, small, rtol=1e-5, atol=1e-6)
    other = salience.explain(resnet18, x, method="rise", seed=1, **kw)
    assert not torch.allclose(a, other)


def test_rise_bad_parameters(tiny_cnn: nn.Module) -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    for params in ({"masks": 0}, {"cells": 9}, {"p": 0.0}, {"score": "softmax"}):
        with pytest.raises(SalienceError):
            salience.explain(tiny_cnn, x, method="rise", **params)


# --- Kernel SHAP --------------------------------------------------------------------------


def quadrants(h: int, w: int) -> torch.Tensor:
    lab = torch.zeros(h, w, dtype=torch.long)
    lab[: h // 2, w // 2 :] = 1
    lab[h // 2 :, : w // 2] = 2
    lab[h // 2 :, w // 2 :] = 3
    return lab


def exact_shapley(
    model: nn.Module, x: torch.Tensor, base: torch.Tensor, labels: torch.Tensor, cls: int
) -> torch.Tensor:
    """Shapley values from their definition: a weighted sum over all coalitions."""
    m = int(labels.max()) + 1

    def value(keep: tuple[int, ...]) -> float:
        mask = torch.isin(labels, torch.tensor(keep, dtype=torch.long))
        with torch.no_grad():
            return float(model(torch.where(mask, x, base))[0, cls])

    phi = torch.zeros(m, dtype=torch.float64)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in itertools.combinations(others, size):
                phi[j] += weight * (value((*s, j)) - value(s))
    return phi


class RegionMeans(nn.Module):
    """Additive in per-segment means (plus optional 3-way interaction of segments 0, 1, 2)."""

    def __init__(self, labels: torch.Tensor, weights: torch.Tensor, cubic: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("onehot", F.one_hot(labels).permute(2, 0, 1).double())
        self.weights, self.cubic = weights, cubic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.einsum("nhw,khw->nk", x.sum(1), self.onehot) / self.onehot.sum((1, 2))
        out = means @ self.weights + self.cubic * means[:, 0] * means[:, 1] * means[:, 2]
        return torch.stack([out, -out], 1)


@pytest.mark.parametrize("baseline", [0.0, "mean", "blur"])
def test_kernel_shap_is_exact_on_an_additive_model(baseline: object) -> None:
    labels = quadrants(12, 12)
    labels[:3, :3] = 4  # five segments of unequal size
    labels[9:, 10:] = 5
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5, -1.0], dtype=torch.float64)
    model = RegionMeans(labels, weights)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    base = baseline_like(x, baseline).expand_as(x)  # type: ignore[arg-type]
    onehot = F.one_hot(labels).permute(2, 0, 1).double()
    delta = torch.einsum("nhw,khw->nk", (x - base).sum(1), onehot) / onehot.sum((1, 2))
    want = torch.gather(delta * weights, 1, labels.flatten()[None].expand(2, -1)).view(2, 12, 12)
    # 40 paired samples (< 2**6 - 2 coalitions): sampled, yet exact for an additive game.
    got = salience.explain(
        model, x, target=0, method="kernel_shap", segments=labels, samples=40, baseline=baseline
    )
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_kernel_shap_enumerates_small_games_exactly(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    labels = quadrants(10, 10)
    got = salience.explain(tiny_cnn, x, target=1, method="kernel_shap", segments=labels, samples=14)
    for i in range(2):
        phi = exact_shapley(tiny_cnn, x[i : i + 1], torch.zeros_like(x[:1]), labels, 1)
        torch.testing.assert_close(got[i].double(), phi[labels], rtol=1e-5, atol=1e-6)


def test_kernel_shap_sampled_values_approach_exact_ones() -> None:
    labels = quadrants(12, 12)
    labels[:3, :3], labels[9:, 9:], labels[:3, 9:], labels[5:7, 5:7] = 4, 5, 6, 7
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5, -1.0, 2.0, 0.7], dtype=torch.float64)
    model = RegionMeans(labels, weights, cubic=0.3)
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64) + 0.5
    phi = exact_shapley(model, x, torch.zeros_like(x), labels, 0)
    errors = []
    for samples in (30, 200):  # of 254 coalitions
        got = salience.explain(
            model, x, target=0, method="kernel_shap", segments=labels, samples=samples
        )
        seg = torch.stack([got[0][labels == k][0] for k in range(8)]).double()
        assert seg.sum().item() == pytest.approx(phi.sum().item(), rel=1e-5)  # efficiency
        errors.append(((seg - phi).abs().max() / phi.abs().max()).item())
    assert 1e-4 < errors[1] < 0.1  # the 3-way term is estimated, not exact
    assert errors[1] < errors[0]


def test_coalition_sampling() -> None:
    z, w = coalitions(10, 400, seed=3)
    assert z.shape == (400, 10)
    size = z.sum(1)
    # Budget 400 of 1022: all 110 coalitions of sizes 1, 9, 2 and 8 are enumerated ...
    head = z[:110]
    assert sorted(size[:110].tolist()) == [1] * 10 + [2] * 45 + [8] * 45 + [9] * 10
    assert len({tuple(r) for r in head.tolist()}) == 110
    kernel = 9 / (torch.tensor([math.comb(10, int(k)) for k in size]) * size * (10 - size))
    torch.testing.assert_close(w[:110] / w[0], kernel[:110].double() / kernel[0])
    # ... and the rest are paired draws of sizes 3..7 sharing those sizes' kernel mass.
    tail = z[110:]
    assert bool(((size[110:] >= 3) & (size[110:] <= 7)).all())
    assert torch.equal(tail[0::2], ~tail[1::2])
    mass = lambda k: 1 / (k * (10 - k))  # noqa: E731
    rest = sum(mass(k) for k in range(3, 8))
    assert w[110:].sum().item() == pytest.approx(rest / mass(1) * w[0].item() * 10)
    z2, w2 = coalitions(10, 400, seed=3)
    assert torch.equal(z, z2) and torch.equal(w, w2)
    assert not torch.equal(z, coalitions(10, 400, seed=4)[0])
    exact, kw = coalitions(4, 14, seed=0)
    assert exact.shape == (14, 4)
    torch.testing.assert_close(kw[exact.sum(1) == 2], torch.full((6,), 3 / (6 * 2 * 2.0)).double())


def test_kernel_shap_slic_efficiency_and_batching(resnet18: nn.Module) -> None:
    x = torch.randn(2, 3, 48, 48)
    method = KernelShap(segments=12, samples=60)
    got = method.explain(resnet18, x, target=[4, 7])
    labels = method.labels(x)
    assert int(labels[0].max()) >= 4  # SLIC found several segments even on noise
    with torch.no_grad():
        delta = resnet18(x)[[0, 1], [4, 7]] - resnet18(torch.zeros_like(x))[[0, 1], [4, 7]]
    for i in range(2):
        per_segment = torch.stack(
            [got[i][labels[i] == k][0] for k in range(int(labels[i].max()) + 1)]
        )
        assert per_segment.sum().item() == pytest.approx(delta[i].item(), rel=1e-3, abs=1e-4)
        assert bool((got[i] == per_segment[labels[i]]).all())  # one value per superpixel
    one = torch.cat(
        [
            KernelShap(segments=12, samples=60).explain(resnet18, x[i : i + 1], [4, 7][i])
            for i in (0, 1)
        ]
    )
    torch.testing.assert_close(got, one, rtol=1e-4, atol=1e-5)


def test_kernel_shap_bad_segments(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for seg in (
        torch.zeros(7, 8, dtype=torch.long),
        torch.zeros(8, 8),
        torch.zeros(3, 8, 8).long(),
    ):
        with pytest.raises(SalienceError, match="segments"):
            salience.explain(tiny_cnn, x, method="kernel_shap", segments=seg)
    with pytest.raises(SalienceError, match="samples"):
        salience.explain(tiny_cnn, x, method="kernel_shap", samples=0)


# --- shared contract ------------------------------------------------------------------------


@pytest.mark.parametrize("name", PERTURBATION)
def test_registry_metadata(name: str) -> None:
    info = salience.methods.method_info(name)
    assert info.family == "perturbation"
    assert info.signed == (name != "rise")


@pytest.mark.parametrize("name", PERTURBATION)
def test_model_and_input_untouched(tiny_cnn: nn.Module, name: str) -> None:
    tiny_cnn.train()
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    before = tensor_snapshot(x)
    hooks = hook_count(tiny_cnn)
    calls: list[int] = []
    handle = tiny_cnn.register_forward_hook(
        lambda m, i, o: calls.append(int(torch.is_grad_enabled()))
    )
    try:
        out = build_method(name, **FAST[name]).explain(tiny_cnn, x)
    finally:
        handle.remove()
    assert out.shape == (2, 16, 16) and out.dtype == torch.float32
    assert calls and not any(calls)  # forward only, under no_grad
    assert hook_count(tiny_cnn) == hooks
    assert tiny_cnn.training
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags
    after = tensor_snapshot(x)
    assert torch.equal(before[0], after[0]) and after[1] and after[2] is None


@pytest.mark.parametrize("name", PERTURBATION)
def test_callable_target_and_batch_size(tiny_cnn: nn.Module, name: str) -> None:
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    a = salience.explain(tiny_cnn, x, target=lambda z: z[:, 2] - z[:, 0], method=name, **FAST[name])
    b = salience.explain(
        tiny_cnn, x, target=lambda z: z[:, 2] - z[:, 0], method=name, batch_size=3, **FAST[name]
    )
    torch.testing.assert_close(a, b)
    assert bool(a.abs().sum() > 0)
