"""Randomization tests: controls score as they must, the user's model is never touched, the
stages follow the layers from the logits down, and the similarity measures match references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

import salience.metrics as M
from salience._guard import hook_count
from salience.metrics._layers import parameter_layers
from salience.metrics._similarity import average_ranks, spearman, ssim


def test_constant_control_scores_one_and_random_near_zero(tiny_cnn: nn.Module) -> None:
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    const = M.model_randomization(tiny_cnn, x, "constant", extra_similarities=("ssim", "hog"))
    assert torch.equal(const.scores, torch.ones(4, dtype=torch.float64))
    for name in ("similarity_ssim", "similarity_hog", "similarity"):
        assert torch.equal(const.curves[name], torch.ones_like(const.curves[name]))
    rand = M.model_randomization(tiny_cnn, x, "random", extra_similarities=("spearman",))
    assert float(rand.curves["similarity"].abs().max()) < 0.15  # 256 pixels: |rho| ~ 1/16
    assert abs(rand.value) < 0.05


def test_randomization_never_touches_the_users_model(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    tiny_cnn.train()
    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    hooks = hook_count(tiny_cnn)
    for order in ("cascading", "independent"):
        M.model_randomization(tiny_cnn, x, "gradient", order=order)
    after = tiny_cnn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags
    assert tiny_cnn.training and hook_count(tiny_cnn) == hooks


def test_stages_run_from_the_logits_down(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    names = [n for n, _ in parameter_layers(tiny_cnn, x)]
    assert names == ["conv1", "conv2", "fc"]
    r = M.model_randomization(tiny_cnn, x, "gradient")
    assert r.details["layers"] == ["fc", "conv2", "conv1"]
    assert r.curves["similarity"].shape == (2, 3)
    assert torch.equal(r.scores, r.curves["similarity"][:, -1])  # fully randomized
    grouped = M.model_randomization(tiny_cnn, x, "gradient", layers=2)
    assert grouped.details["layers"] == ["fc .. conv2", "conv1"]
    ind = M.model_randomization(tiny_cnn, x, "gradient", order="independent")
    assert torch.allclose(ind.scores, ind.curves["similarity"].mean(1))


class Split(nn.Module):
    """Class k reads only the k-th quarter of the image through its own linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(3 * 8 * 8, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quarters = [x[:, :, :8, :8], x[:, :, :8, 8:], x[:, :, 8:, :8], x[:, :, 8:, 8:]]
        return torch.cat([h(q.flatten(1)) for h, q in zip(self.heads, quarters, strict=True)], 1)


def test_independent_randomization_changes_only_the_randomized_head() -> None:
    model = Split().double().eval()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    r = M.model_randomization(
        model, x, "gradient", target=0, order="independent", similarity="spearman"
    )
    curve = r.curves["similarity"]
    # heads run in order 0..3, so stages (top first) are heads 3, 2, 1, 0; only head 0 matters
    assert torch.allclose(curve[:, :3], torch.ones(3, 3, dtype=torch.float64))
    assert float(curve[:, 3].abs().max()) < 0.5


def test_random_logit_and_data_randomization() -> None:
    model = Split().double().eval()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    r = M.random_logit(model, x, "gradient", similarity="spearman_abs")
    assert all(
        o != c for o, c in zip(r.details["other_classes"], model(x).argmax(1).tolist(), strict=True)
    )
    assert r.value < 0.5  # another class reads another quarter
    assert M.random_logit(model, x, "constant").value == 1.0
    same = M.data_randomization(model, model, x, "gradient")
    assert torch.allclose(same.scores, torch.ones(3, dtype=torch.float64))
    other = Split().double().eval()
    diff = M.data_randomization(model, other, x, "gradient", target=0, similarity="spearman")
    assert abs(diff.value) < 0.5  # independent weights on the same quarter


def test_callable_explainers_and_layer_modules_work_on_the_copies(tiny_cnn: nn.Module) -> None:
    from salience.methods import build_method

    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    r = M.model_randomization(tiny_cnn, x, lambda m, inp, c: inp.sum(1))  # model-independent
    assert torch.allclose(r.scores, torch.ones(2, dtype=torch.float64))
    cam = build_method("gradcam", layer=tiny_cnn.conv2)
    M.model_randomization(tiny_cnn, x, cam)
    assert cam.layer is tiny_cnn.conv2  # the caller's instance is left as it was


def test_average_ranks_and_spearman_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(4, 60)).astype(float)  # many ties
    b = rng.normal(size=(4, 60))
    ours = spearman(torch.from_numpy(a), torch.from_numpy(b), absolute=False)
    for i in range(4):
        assert ours[i] == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    ranks = average_ranks(torch.from_numpy(a)).numpy()
    from scipy.stats import rankdata

    np.testing.assert_allclose(ranks, rankdata(a, axis=1) - 1)
    absolute = spearman(torch.from_numpy(-b), torch.from_numpy(b), absolute=True)
    assert torch.allclose(absolute, torch.ones(4, dtype=torch.float64))


def test_spearman_conventions_for_maps_without_variance() -> None:
    flat = torch.ones(2, 10, dtype=torch.float64)
    varied = torch.arange(20, dtype=torch.float64).view(2, 10)
    assert torch.equal(spearman(flat, 3 * flat), torch.ones(2, dtype=torch.float64))
    assert torch.equal(spearman(flat, varied), torch.zeros(2, dtype=torch.float64))


def test_ssim_matches_skimage_on_unit_scaled_maps() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 32, 32)), rng.normal(size=(2, 32, 32))
    ours = ssim(torch.from_numpy(a), torch.from_numpy(b))
    for i in range(2):
        p, q = np.abs(a[i]) / np.abs(a[i]).max(), np.abs(b[i]) / np.abs(b[i]).max()
        ref = structural_similarity(
            p, q, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ours[i] == pytest.approx(ref)


def test_unknown_similarity_is_a_user_error(tiny_cnn: nn.Module) -> None:
    from salience.errors import SalienceError

    with pytest.raises(SalienceError, match="unknown similarity"):
        M.model_randomization(
            tiny_cnn, torch.randn(1, 3, 8, 8).double(), "gradient", similarity="pearson"
        )
