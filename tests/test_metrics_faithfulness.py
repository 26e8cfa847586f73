"""Faithfulness metrics: closed forms on a model that only looks at a known region, batched ==
one-by-one, ROAD's batched imputation against scipy's sparse solver, seeds and parameters."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

import salience.metrics as M
from salience.methods.baselines import gaussian_blur
from salience.metrics._imputation import impute
from salience.metrics.road import road

H = W = 16
STEPS = 64  # 256 pixels, 4 per step


class RegionModel(nn.Module):
    """Two classes: logit 0 = gain * sum of the pixels in a region (all channels), logit 1 = 0."""

    def __init__(self, region: torch.Tensor, gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("region", region.double()[None, None])
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gain * (x * self.region).sum((1, 2, 3))
        return torch.stack([a, torch.zeros_like(a)], 1)


def region() -> torch.Tensor:
    r = torch.zeros(H, W, dtype=torch.bool)
    r[4:8, 2:10] = True  # 32 pixels = 1/8 of the image, a multiple of the step
    return r


def oracle(n: int = 2) -> torch.Tensor:
    return region().double().expand(n, H, W).clone()


def ones(n: int = 2) -> torch.Tensor:
    return torch.ones(n, 3, H, W, dtype=torch.float64)


def test_deletion_and_insertion_of_the_oracle_map_in_closed_form() -> None:
    model, x, f = RegionModel(region()), ones(), 32 / (H * W)
    s0 = 3 * 32.0  # clean logit
    # deletion: the logit falls linearly to 0 while the region is removed, then stays 0
    r = M.deletion(model, x, oracle(), softmax=False, steps=STEPS)
    assert r.value == pytest.approx(s0 * f / 2, rel=1e-12)
    # insertion from zeros: rises linearly to s0 over the region, then stays
    r = M.insertion(model, x, oracle(), softmax=False, steps=STEPS, baseline="zeros")
    assert r.value == pytest.approx(s0 * (1 - f / 2), rel=1e-12)
    # the map that puts the region last deletes it at the end: area s0 * (1 - f / 2)
    r = M.deletion(model, x, 1 - oracle(), softmax=False, steps=STEPS)
    assert r.value == pytest.approx(s0 * (1 - f / 2), rel=1e-12)


def test_pointing_game_of_the_oracle_map_hits_and_its_reverse_misses() -> None:
    masks = region().expand(2, H, W)
    assert M.pointing_game(oracle(), masks, tolerance=0).value == 1.0
    # the reverse map peaks at (0, 0); the region starts at row 4, column 2: 4.47 px away
    assert M.pointing_game(1 - oracle(), masks, tolerance=4).value == 0.0
    assert M.pointing_game(1 - oracle(), masks, tolerance=4.5).value == 1.0
    assert M.relevance_mass(oracle(), masks).value == 1.0


def test_every_registered_metric_is_a_function_of_salience_metrics() -> None:
    import salience

    for name in M.list_metrics():
        assert getattr(salience.metrics, name) is M.get_metric(name)
        assert name in M.__all__


def test_deletion_with_softmax_matches_the_probability_curve() -> None:
    gain = 0.1
    model, x = RegionModel(region(), gain), ones(1)
    r = M.deletion(model, x, oracle(1), steps=STEPS)  # softmax=True, target = predicted = 0
    removed = np.minimum(np.arange(STEPS + 1) * 4, 32)
    probs = 1 / (1 + np.exp(-gain * 3 * (32 - removed)))
    expected = (probs.sum() - probs[0] / 2 - probs[-1] / 2) / STEPS  # the RISE reference AUC
    assert r.value == pytest.approx(expected, rel=1e-6)
    assert r.curves["scores"].shape == (1, STEPS + 1)
    assert r.direction == "lower" and M.insertion(model, x, oracle(1)).direction == "higher"


def test_deletion_and_insertion_rank_the_oracle_above_the_random_control() -> None:
    model, x = RegionModel(region(), 0.05), ones(4) + 0.1 * torch.randn(4, 3, H, W).double()
    noise = torch.rand(4, H, W, dtype=torch.float64)
    gap = {}
    for name, s in {"oracle": oracle(4), "random": noise}.items():
        d = M.deletion(model, x, s, baseline="zeros").value
        i = M.insertion(model, x, s).value
        gap[name] = i - d
    assert gap["oracle"] > gap["random"] + 0.2


def test_insertion_starts_from_the_blurred_image() -> None:
    model, x = RegionModel(region()), torch.randn(1, 3, H, W, dtype=torch.float64)
    r = M.insertion(model, x, oracle(1), softmax=False, steps=8)
    blurred = gaussian_blur(x, 5.0, size=11, padding="zeros")
    assert r.curves["scores"][0, 0] == pytest.approx(float(model(blurred)[0, 0]), rel=1e-9)
    assert r.curves["scores"][0, -1] == pytest.approx(float(model(x)[0, 0]), rel=1e-9)


def test_gaussian_blur_is_normalised_and_separable() -> None:
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    out = gaussian_blur(x, 1.5, size=5, padding="zeros")
    t = torch.arange(-2, 3, dtype=torch.float64)
    g = torch.exp(-(t**2) / (2 * 1.5**2))
    k2 = torch.outer(g, g) / g.sum() ** 2
    ref = torch.nn.functional.conv2d(x, k2.expand(3, 1, 5, 5), padding=2, groups=3)
    assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("name", ["deletion", "insertion", "pixel_flipping", "aopc", "infidelity"])
def test_perturbation_curves_batched_equal_one_by_one(tiny_cnn: nn.Module, name: str) -> None:
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    s = torch.randn(3, 12, 12, dtype=torch.float64)
    fn = M.get_metric(name)
    kwargs = {
        "aopc": {"patch": 3, "regions": 10},
        "infidelity": {"samples": 7, "perturbation": "square", "square": 4},
    }.get(name, {"steps": 10})
    full = fn(tiny_cnn, x, s, **kwargs)
    small = fn(tiny_cnn, x, s, batch_size=1, **kwargs)
    assert torch.allclose(full.scores, small.scores, atol=1e-12)
    if name in ("deletion", "insertion"):  # no image-dependent random draws: per image too
        single = torch.cat(
            [fn(tiny_cnn, x[i : i + 1], s[i : i + 1], **kwargs).scores for i in range(3)]
        )
        assert torch.allclose(full.scores, single, atol=1e-12)


def test_ties_are_broken_at_random_with_the_seed(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    flat = torch.zeros(2, 12, 12, dtype=torch.float64)  # every pixel tied
    a = M.deletion(tiny_cnn, x, flat, steps=12, seed=1)
    b = M.deletion(tiny_cnn, x, flat, steps=12, seed=1)
    c = M.deletion(tiny_cnn, x, flat, steps=12, seed=2)
    assert torch.equal(a.scores, b.scores)
    assert not torch.equal(a.scores, c.scores)
    assert a.params["seed"] == 1 and a.params["steps"] == 12 and a.params["baseline"] == "zero"


def test_aopc_of_the_oracle_is_the_mean_drop_in_closed_form() -> None:
    model, x = RegionModel(region()), ones(1)
    # patch 4: the region covers 2 patches (rows 4..7, columns 2..9 -> 3 patch columns, of
    # which the middle one is full); with baseline 0 every removed region pixel drops 3.
    r = M.aopc(model, x, oracle(1), patch=4, regions=4, baseline="zeros")
    scores = r.curves["scores"][0].numpy()
    assert scores[0] == pytest.approx(96.0)
    assert scores[-1] == pytest.approx(0.0)
    assert r.value == pytest.approx(float(np.mean(scores[0] - scores)))


def reference_impute(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Noise-free ROAD imputation: one sparse system per image, solved by scipy."""
    c, h, w = img.shape
    ys, xs = np.nonzero(removed)
    index = -np.ones((h, w), dtype=np.int64)
    index[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [], [], []
    rhs = np.zeros((len(ys), c))
    for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
        diag = 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dy, dx) == (0, 0) or not (0 <= y + dy < h and 0 <= x + dx < w):
                    continue
                wt = 1 / 12 if dy and dx else 1 / 6
                diag += wt
                if removed[y + dy, x + dx]:
                    rows.append(k)
                    cols.append(index[y + dy, x + dx])
                    vals.append(-wt)
                else:
                    rhs[k] += wt * img[:, y + dy, x + dx]
        rows.append(k)
        cols.append(k)
        vals.append(diag)
    a = coo_matrix((vals, (rows, cols)), shape=(len(ys), len(ys))).tocsc()
    out = img.copy()
    out[:, ys, xs] = np.asarray(spsolve(a, rhs)).reshape(len(ys), c).T
    return out


def test_batched_imputation_equals_scipy_spsolve_per_image() -> None:
    torch.manual_seed(3)
    h, w = 37, 50  # odd and even sides, not powers of two
    x = torch.nn.functional.avg_pool2d(torch.randn(6, 3, h + 4, w + 4, dtype=torch.float64), 5, 1)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(6, 1, h + 8, w + 8), 9, 1)[:, 0]
    masks = []
    for i, p in enumerate([0.05, 0.2, 0.5, 0.8, 0.95, 0.5]):
        score = smooth[i] if i < 5 else torch.rand(h, w)  # last: scattered single pixels
        k = int(p * h * w)
        rank = score.flatten().argsort(descending=True).argsort()
        masks.append((rank < k).view(h, w))
    removed = torch.stack(masks)
    out = impute(x, removed, noise=0.0, tol=1e-12, max_iter=500)
    for i in range(6):
        ref = reference_impute(x[i].numpy(), removed[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-8)


def test_road_default_tolerance_stays_far_below_the_added_noise() -> None:
    """ROAD stops the solve early (``tol``): its error must stay well below its own noise."""
    torch.manual_seed(4)
    size = 96
    x = torch.nn.functional.avg_pool2d(torch.randn(4, 3, size + 6, size + 6), 7, 1) * 4
    smooth = torch.nn.functional.avg_pool2d(torch.rand(4, 1, size + 30, size + 30), 31, 1)[:, 0]
    rank = smooth.flatten(1).argsort(1, descending=True).argsort(1)
    removed = (rank < (torch.tensor([0.1, 0.3, 0.6, 0.9]) * size * size)[:, None]).view(
        4, size, size
    )
    tol = inspect.signature(road).parameters["tol"].default
    exact = impute(x.double(), removed, noise=0.0, tol=1e-12, max_iter=500)
    early = impute(x, removed, noise=0.0, tol=tol)
    noise = inspect.signature(road).parameters["noise"].default
    assert float((early.double() - exact).abs().max()) < noise / 10


def test_imputation_keeps_kept_pixels_and_adds_noise_only_where_removed() -> None:
    x = torch.randn(2, 3, 20, 20)
    removed = torch.zeros(2, 20, 20, dtype=torch.bool)
    removed[:, 5:12, 3:9] = True
    gen = torch.Generator().manual_seed(0)
    a = impute(x, removed, noise=0.0)
    b = impute(x, removed, noise=0.5, generator=gen)
    keep = ~removed[:, None].expand_as(x)
    assert torch.equal(a[keep], x[keep]) and torch.equal(b[keep], x[keep])
    assert float((b - a)[~keep].std()) == pytest.approx(0.5, rel=0.15)


def test_road_orders_and_batching(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    s = torch.randn(2, 12, 12, dtype=torch.float64)
    a = M.road_morf(tiny_cnn, x, s, percentages=(0.2, 0.5), noise=0.01)
    b = M.road_morf(tiny_cnn, x, s, percentages=(0.2, 0.5), noise=0.01, batch_size=1)
    assert torch.allclose(a.curves["scores"], b.curves["scores"], atol=1e-12)  # noise per row
    assert a.curves["scores"].shape == (2, 2) and a.curves["correct"].shape == (2, 2)
    assert a.details["imputation_seconds"] > 0
    assert a.params["percentages"] == [0.2, 0.5] and a.params["noise"] == 0.01


def test_road_separates_the_oracle_from_its_reverse() -> None:
    model, x = RegionModel(region(), 0.05), 0.2 * torch.randn(2, 3, H, W).double()
    x[:, :, region()] += 1.0  # the region stands out, so imputing it from outside lowers it
    morf = M.road_morf(model, x, oracle(), noise=0.0)
    lerf = M.road_lerf(model, x, oracle(), noise=0.0)
    assert lerf.value > morf.value + 0.2
    # with the reversed map, the least relevant first removes the region first
    rev = M.road_lerf(model, x, 1 - oracle(), noise=0.0)
    assert rev.value < lerf.value


def test_infidelity_of_the_exact_attribution_of_a_linear_model_is_zero() -> None:
    torch.manual_seed(1)
    w = torch.randn(3, 8, 8, dtype=torch.float64)

    class Linear(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = (x * w).sum((1, 2, 3))
            return torch.stack([a, -a], 1)

    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    exact = w.expand(2, 3, 8, 8)
    target = [0, 0]
    r = M.infidelity(Linear(), x, exact, target, scale="none", samples=20)
    assert float(r.scores.abs().max()) < 1e-20
    wrong = M.infidelity(Linear(), x, exact.flip(-1), target, scale="none", samples=20)
    assert wrong.value > 0.01
    # a single-channel map summed over channels is also exact (same noise on every channel)
    summed = M.infidelity(Linear(), x, exact.sum(1), target, scale="none", samples=20)
    assert float(summed.scores.abs().max()) < 1e-20
    # optimal scaling makes a rescaled exact map exact again
    scaled = M.infidelity(Linear(), x, 5 * exact, target, samples=20)
    assert float(scaled.scores.abs().max()) < 1e-20
    assert scaled.details["scale_factor"] == pytest.approx([0.2, 0.2])
    sq = M.infidelity(Linear(), x, exact, target, perturbation="square", square=3, scale="none")
    assert float(sq.scores.abs().max()) < 1e-20


def test_every_metric_records_every_parameter_and_its_direction() -> None:
    for name in M.list_metrics():
        info = M.metric_info(name)
        assert info.direction in ("higher", "lower")
        assert info.paper and info.summary, name
        assert info.category in M.CATEGORIES
    model, x = RegionModel(region()), ones(1)
    r = M.insertion(model, x, oracle(1), steps=8, blur_sigma=2.0)
    assert r.params == {
        "target": "predicted",
        "baseline": "blur",
        "steps": 8,
        "softmax": True,
        "blur_kernel": 11,
        "blur_sigma": 2.0,
        "seed": 0,
        "batch_size": None,
        "output": None,
    }
    assert set(r.params) == set(M.metric_info("insertion").params) | {"target"}
    d = r.to_dict()
    assert d["direction"] == "higher" and len(d["curves"]["scores"][0]) == 9
    assert math.isclose(float(r), r.value)


def test_metric_errors_are_one_line_user_errors(tiny_cnn: nn.Module) -> None:
    from salience.errors import SalienceError

    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(SalienceError, match="does not match"):
        M.deletion(tiny_cnn, x, torch.zeros(2, 10, 10))
    with pytest.raises(SalienceError, match="unknown baseline"):
        M.deletion(tiny_cnn, x, torch.zeros(2, 12, 12), baseline="black")
    with pytest.raises(SalienceError, match="strictly between"):
        M.road_morf(tiny_cnn, x, torch.zeros(2, 12, 12), percentages=(0.0, 0.5))


def test_a_registered_variant_has_its_own_defaults_and_closed_form() -> None:
    from salience.metrics import _registry
    from salience.metrics._registry import register_metric, variant
    from salience.metrics.deletion import replacement_curve

    fn = variant(
        replacement_curve,
        "insertion_from_zeros",
        "Insertion from a zero image.",
        fixed={"insert": True},
        defaults={"baseline": "zeros", "softmax": False},
    )
    try:
        metric = register_metric(
            "insertion_from_zeros", category="faithfulness", direction="higher", paper="test"
        )(fn)
        model, x, f = RegionModel(region()), ones(), 32 / (H * W)
        r = metric(model, x, oracle(), steps=STEPS)
        assert r.value == pytest.approx(3 * 32.0 * (1 - f / 2), rel=1e-12)  # as above
        assert r.params["baseline"] == "zero" and "insert" not in r.params
        assert M.metric_info("insertion_from_zeros").summary == "Insertion from a zero image."
    finally:
        _registry._METRICS.pop("insertion_from_zeros", None)
    with pytest.raises(ValueError, match="no parameters"):
        variant(replacement_curve, "bad", "", fixed={"nope": 1})
