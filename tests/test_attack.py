"""salience.attack: budgets, labels kept, model untouched, seeds, and attacks that provably
beat their controls on models small enough to reason about."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny_cnn import TinyCNN
from torch import nn

pytest.importorskip("torchattacks")

from salience._guard import hook_count, tensor_snapshot
from salience.attack import (
    AttackConfig,
    AttackRun,
    Batch,
    FragilityConfig,
    PixelModel,
    SoftplusSurrogate,
    fragility_attack,
    input_space_eps,
    random_sign,
    run_attack,
    smallest_budget,
    units,
)
from salience.attack._maps import gradient_map
from salience.attack._measures import topk_intersection
from salience.attack._stats import rank_correlation, roc_auc
from salience.attack.detection import detector_auc
from salience.attack.pipeline import manipulated
from salience.attack.prediction import ATTACKS, BudgetSweep, bracket, norm_of

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)


def tiny(classes: int = 3) -> PixelModel:
    return PixelModel(TinyCNN(classes).double().eval(), MEAN, STD)


def pixels(n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, dtype=torch.float64)


class Linear(nn.Module):
    """Two logits ``[w.x + b, 0]``: the smallest L-inf flip is ``(w.x + b) / |w|_1``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(w), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.flatten(1) * self.w.flatten()).sum(1) + self.b
        return torch.stack([s, torch.zeros_like(s)], 1)


class Quadratic(nn.Module):
    """``[0.5 * sum(x^2), -1]``: the gradient map is the input itself, the label never flips."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 0.5 * (x**2).flatten(1).sum(1)
        return torch.stack([s, -torch.ones_like(s)], 1)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_respect_their_budget_and_the_pixel_range(name: str) -> None:
    pm, x = tiny(), pixels()
    labels = pm.predict(x).argmax(1)
    spec = ATTACKS[name]
    eps = 4 / 255 if spec.norm == "linf" else 0.3
    adv = run_attack(pm, x, labels, spec, eps, steps=5)
    assert adv.min() >= 0 and adv.max() <= 1
    size = norm_of(adv - x, spec.norm)
    assert bool((size <= eps * (1 + 1e-6)).all())
    # the budget is used, not less (L2: clipping to 0..1 after the projection trims a little)
    assert float(size.max()) == pytest.approx(eps, rel=1e-4 if spec.norm == "linf" else 1e-2)


def test_per_image_budgets_are_exact() -> None:
    pm, x = tiny(), pixels(4)
    labels = pm.predict(x).argmax(1)
    eps = torch.tensor([1, 2, 4, 8], dtype=torch.float64) / 255
    for name in ("pgd", "pgd_l2"):
        adv = run_attack(pm, x, labels, ATTACKS[name], eps, steps=4, random_start=False)
        size = norm_of(adv - x, ATTACKS[name].norm)
        assert bool((size <= eps * (1 + 1e-9)).all()), name
        assert torch.allclose(size, eps, rtol=1e-4 if name == "pgd" else 1e-2), name


def test_budgets_in_input_space() -> None:
    assert input_space_eps(2 / 255, STD) == pytest.approx([2 / 255 / s for s in STD])


def test_seeds_make_runs_repeatable_and_leave_the_global_rng_alone() -> None:
    pm, x = tiny(), pixels()
    labels = pm.predict(x).argmax(1)
    state = torch.get_rng_state()
    a = run_attack(pm, x, labels, ATTACKS["pgd"], 4 / 255, steps=2, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = run_attack(pm, x, labels, ATTACKS["pgd"], 4 / 255, steps=2, seed=1)
    c = run_attack(pm, x, labels, ATTACKS["pgd"], 4 / 255, steps=2, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(random_sign(x, 0.1, 3), random_sign(x, 0.1, 3))


def test_bisection_finds_the_closed_form_smallest_budget() -> None:
    torch.manual_seed(1)
    w = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    b = 0.05
    model = Linear(w, 0.0).double()
    pm = PixelModel(model, (0.0,) * 3, (1.0,) * 3)
    x = 0.45 + 0.1 * torch.rand(5, 3, 4, 4, dtype=torch.float64)
    # shift each image so that its margin w.x is b * (i + 1): far from the pixel range limits
    x = (
        x
        - ((x.flatten(1) @ w.flatten() - b * torch.arange(1, 6)) / w.abs().sum())[
            :, None, None, None
        ]
        * w.sign()
    )
    labels = torch.zeros(5, dtype=torch.long)
    truth = (x.flatten(1) @ w.flatten()) / w.abs().sum()
    found = smallest_budget(pm, x, labels, ATTACKS["pgd"], 0.05, steps=10, iterations=8)
    assert bool(((found - truth) >= 0).all()) and bool(((found - truth) <= 0.05 / 2**8).all())


def test_fragility_attack_keeps_labels_stays_in_budget_and_beats_random_noise() -> None:
    pm = PixelModel(Quadratic(), (0.0,) * 3, (1.0,) * 3)
    x = 0.2 + 0.6 * pixels(4, 12)
    labels = torch.zeros(4, dtype=torch.long)
    clean = gradient_map(pm, x, labels).detach()
    cfg = FragilityConfig(eps=0.05, steps=10, k=36)
    adv, moved = fragility_attack(pm, x, labels, clean, "gradient", cfg, 36)
    assert bool(moved.all())
    assert float((adv - x).abs().max()) <= 0.05 + 1e-12 and adv.min() >= 0 and adv.max() <= 1
    assert bool((pm.predict(adv).argmax(1) == labels).all())
    noise = random_sign(x, 0.05, 0)
    attacked = topk_intersection(clean, gradient_map(pm, adv, labels), 36)
    control = topk_intersection(clean, gradient_map(pm, noise, labels), 36)
    assert attacked.mean() < control.mean() - 0.2


def test_fragility_attack_stops_where_the_label_would_change() -> None:
    pm, x = tiny(2), pixels(6)
    labels = pm.predict(x).argmax(1)
    clean = gradient_map(pm, x, labels).detach()
    cfg = FragilityConfig(eps=0.3, steps=6, k=20)  # a large budget: labels would flip
    adv, _ = fragility_attack(pm, x, labels, clean, "gradient", cfg, 20)
    assert bool((pm.predict(adv).argmax(1) == labels).all())


def test_softplus_surrogate_gives_second_derivatives_without_changing_the_model() -> None:
    model = TinyCNN(3, inplace=True).double().eval()
    pm = PixelModel(model, MEAN, STD)
    x = pixels(2).requires_grad_(True)
    labels = torch.tensor([0, 1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    relu_map = gradient_map(pm, x, labels)
    (second,) = torch.autograd.grad(relu_map.abs().sum(), x, allow_unused=True)
    assert second is None or float(second.abs().max()) == 0.0  # ReLU: zero second derivative
    with SoftplusSurrogate(50.0) as mode:
        smooth = gradient_map(pm, x, labels)
        (second,) = torch.autograd.grad(smooth.abs().sum(), x)
    assert mode.calls == 2 and float(second.abs().max()) > 0
    with SoftplusSurrogate(1e4):
        close = pm(x.detach())
    assert torch.allclose(close, pm(x.detach()), atol=1e-3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert isinstance(model.relu1, nn.ReLU) and hook_count(model) == 0


def test_a_full_run_leaves_the_model_as_it_was_and_fills_the_contract() -> None:
    model = TinyCNN(3).double()
    model.train()
    pm = PixelModel(model, MEAN, STD)
    x = pixels(5)
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    snap = tensor_snapshot(x)
    with torch.no_grad():
        labels = pm.predict(x).argmax(1)
    labels[0] = (labels[0] + 1) % 3  # one misclassified image: not attacked for predictions
    batch = Batch(x, labels, pm.predict(x).argmax(1) == labels, ["a", "b", "c"])
    config = AttackConfig(
        attacks=("pgd", "fgsm"),
        eps=(1 / 255, 8 / 255, 64 / 255),
        bisection=3,
        fragility=FragilityConfig(steps=3, k=20),
        examples=0,
        batch=3,
    )
    from salience.attack.manipulation import ManipulationConfig

    config = AttackConfig(**{**config.__dict__, "manipulation": ManipulationConfig(steps=3)})
    report = AttackRun(pm, batch, ["gradient", "gradcam"], config).run("tiny")
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()) and hook_count(model) == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(x, snap[0])
    p = report["prediction"]
    assert report["model"] == "tiny" and report["samples"] == 5
    assert p["attacked"] == int(batch.correct.sum()) == 4
    assert len(p["eps"]) == len(p["success_rate"]) == 3 and p["success_rate"][-1] == 1.0
    assert p["budgets"][1]["input"] == pytest.approx([8 / 255 / s for s in STD])
    assert p["smallest_eps"]["values"][0] is None  # the misclassified image
    for name in ("gradient", "gradcam"):
        m = report["methods"][name]
        for key in (
            "topk_intersection_attack",
            "topk_intersection_random",
            "spearman_attack",
            "spearman_random",
            "labels_kept",
        ):
            assert isinstance(m[key], float)
        assert m["labels_kept"] == 1.0
        assert set(report["detection"][name]) >= {"saliency", "softmax"}
        assert {"real", "smoothed"} <= set(report["manipulation"][name])
        per_class = report["manipulation"][name]["real"]["per_class"]
        assert sum(c["n"] for c in per_class.values()) == 5
        assert {"similarity_after", "output_change"} <= set(next(iter(per_class.values())))
    conc = report["concentration"]["gradient"]["gini"]
    assert conc["n"] == 4 and len(conc["interval"]) == 2  # the attacked images only
    for name in ("gradient", "gradcam"):
        assert set(report["detection"][name]["saliency"]) == {"auc", "interval", "n"}


def test_manipulation_runs_on_the_chosen_methods_only() -> None:
    chosen = AttackConfig(manipulation_methods=("gradient",))
    assert manipulated(chosen, "gradient") and manipulated(chosen, "gradient:abs=True")
    assert not manipulated(chosen, "gradcam") and manipulated(AttackConfig(), "gradcam")
    assert not manipulated(AttackConfig(manipulate=False), "gradient")
    assert not manipulated(AttackConfig(), "occlusion")  # no differentiable map of its own
    assert units(chosen, ["gradient", "gradcam"], 4)["manipulation"] == 2


def test_statistics() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5
    r = rank_correlation(np.arange(20.0), np.r_[np.arange(19.0), np.inf])
    assert r["rho"] == pytest.approx(1.0) and r["interval"][0] > 0.9
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(40, 3))
    far = detector_auc(clean, clean + 3.0)
    same = detector_auc(clean, rng.normal(size=(40, 3)))
    assert far["auc"] > 0.95 and same["auc"] < 0.75


def test_batch_norm_statistics_and_mode_survive_attacks() -> None:
    """torchattacks restores train mode when the model it is given reports training; the
    wrapper must not, or batch norm would update its running statistics mid-run."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double()  # fmt: skip
    model.train()
    pm = PixelModel(model, MEAN, STD)
    x = pixels(4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    labels = torch.zeros(4, dtype=torch.long)
    run_attack(pm, x, labels, ATTACKS["pgd"], 4 / 255, steps=2)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.eval()
    before = pm.predict(x)
    batch = Batch(x, before.argmax(1), torch.ones(4, dtype=torch.bool), ["a", "b", "c"])
    config = AttackConfig(attacks=("pgd",), eps=(4 / 255,), bisection=1, examples=0,
                          fragility=FragilityConfig(steps=2, k=10), manipulate=False)  # fmt: skip
    report = AttackRun(pm, batch, ["gradient"], config).run("bn")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(pm.predict(x), before) and not model.training
    assert report["methods"]["gradient"]["labels_kept"] == 1.0


def test_bisection_brackets_come_from_the_sweep() -> None:
    hits = torch.tensor([[False, True, False], [True, True, False], [True, True, False]])
    sweep = BudgetSweep([1.0, 2.0, 3.0], hits, [])
    low, high = bracket(sweep, 12.0)
    assert high.tolist() == [2.0, 1.0, 12.0] and low.tolist() == [1.0, 0.0, 3.0]
