"""LRP methods against closed forms and zennit itself: LRP-0 equals input x gradient on bias-free
ReLU networks, relevance is conserved, the maps match zennit's own attributor on torchvision
ResNet-18 and VGG-11 (batch norm), the model comes back bit for bit, and uncovered layers are
refused by name. Registry-wide invariants live in test_methods_common.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.rules import Epsilon
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Linear

import salience
from salience._guard import hook_count
from salience.errors import SalienceError, UnsupportedModelError

LRP = ["lrp_epsilon", "lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box"]


def bias_free_net() -> nn.Module:
    """conv-relu-maxpool-conv-relu-avgpool-linear without biases, float64, seeded."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 5, bias=False),
        )
        .double()
        .eval()
    )


def images(n: int = 3, size: int = 16, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_lrp_zero_equals_input_x_gradient() -> None:
    model, x = bias_free_net(), images()
    target = torch.tensor([0, 3, 4])
    inp = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(inp).gather(1, target[:, None]).sum(), inp)
    # epsilon -> 0 (exactly 0 divides 0 by 0 where a pooled window is all zero); the error is
    # linear in epsilon, so 1e-12 in float64 leaves only the float32 rounding of the output
    lrp0 = salience.explain(model, x, target, "lrp_epsilon", reduce="none", epsilon=1e-12)
    expected = x * grad
    assert (lrp0 - expected).abs().max() <= 1e-6 * expected.abs().max()


@pytest.mark.parametrize("name", LRP)
@pytest.mark.parametrize("target", [None, 2])
def test_relevance_sums_to_the_target_logit(name: str, target: int | None) -> None:
    model, x = bias_free_net(), images()
    logits = model(x).detach()
    chosen = logits.argmax(1) if target is None else torch.full((3,), target)
    relevance = salience.explain(model, x, target, name, reduce="sum").sum((1, 2))
    expected = logits.gather(1, chosen[:, None]).squeeze(1).float()
    assert torch.allclose(relevance, expected, rtol=1e-4, atol=1e-6), (relevance, expected)


def _zennit(name: str, canonizer: Any, x: torch.Tensor) -> Composite:
    """The composite zennit's own documentation would build for ``name``."""
    if name == "lrp_epsilon":
        layer_map = [*layer_map_base(1e-6), (Linear, Epsilon(1e-6))]
        return LayerMapComposite(layer_map=layer_map, canonizers=[canonizer])
    if name == "lrp_epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=[canonizer])
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return EpsilonGammaBox(low=low, high=high, canonizers=[canonizer])


def _randomise(bn: nn.BatchNorm2d) -> None:
    """Statistics and affine parameters far from the identity, so that merging matters."""
    ranges = {"running_mean": (-0.5, 0.5), "running_var": (0.5, 2.0), "weight": (0.5, 1.5)}
    with torch.no_grad():
        for key, (lo, hi) in {**ranges, "bias": (-0.5, 0.5)}.items():
            getattr(bn, key).uniform_(lo, hi)


@pytest.fixture(scope="module")
def torchvision_models() -> dict[str, tuple[nn.Module, Any]]:
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10)
    vgg = torchvision.models.vgg11_bn(num_classes=10, init_weights=False)
    for model in (resnet, vgg):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                _randomise(m)
    return {
        "resnet18": (resnet.eval(), ResNetCanonizer()),
        "vgg11_bn": (vgg.eval(), VGGCanonizer()),
    }


SLOW = pytest.mark.slow


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
@pytest.mark.parametrize(
    "name", [pytest.param(LRP[0], marks=SLOW), LRP[1], pytest.param(LRP[2], marks=SLOW)]
)
def test_parity_with_zennit(
    name: str, arch: str, torchvision_models: dict[str, tuple[nn.Module, Any]]
) -> None:
    model, canonizer = torchvision_models[arch]
    x = images(2, 32, torch.float32)
    target = torch.tensor([1, 7])
    onehot = nn.functional.one_hot(target, 10).float()
    inp = x.clone().requires_grad_(True)
    with Gradient(model, _zennit(name, canonizer, x)) as attributor:
        _, expected = attributor(inp, lambda y: y * onehot)
    ours = salience.explain(model, x, target, name, reduce="none")
    scale = expected.abs().max().item()
    assert scale > 0 and torch.allclose(ours, expected, rtol=1e-4, atol=1e-5 * scale)


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "params": [(n, p, p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()],
        "buffers": [(n, b, b.data_ptr(), b.clone()) for n, b in model.named_buffers()],
        "modules": [(n, type(m), sorted(vars(m))) for n, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": hook_count(model),
    }


def _assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    after = _snapshot(model)
    for key in ("modules", "training", "requires_grad", "hooks"):
        assert after[key] == before[key], key
    for kind in ("params", "buffers"):
        for (n, t, ptr, value), (n2, t2, ptr2, _) in zip(before[kind], after[kind], strict=True):
            assert n == n2 and t is t2 and ptr == ptr2, n  # the same tensor objects and storage
            assert torch.equal(t2.detach(), value), n


class Boom(Exception):
    pass


@pytest.mark.parametrize("name", [LRP[2]])  # the three share the code; gamma-box has the most
def test_model_comes_back_bit_for_bit(
    name: str, torchvision_models: dict[str, tuple[nn.Module, Any]]
) -> None:
    model, _ = torchvision_models["resnet18"]
    assert isinstance(model, torchvision.models.ResNet)
    model.train()
    model.layer1.eval()
    model.fc.weight.requires_grad_(False)
    before = _snapshot(model)
    salience.explain(model, images(2, 32, torch.float32), 3, name)
    _assert_unchanged(model, before)

    def fail(logits: torch.Tensor) -> torch.Tensor:
        raise Boom

    with pytest.raises(Boom):
        salience.explain(model, images(2, 32, torch.float32), fail, name)
    _assert_unchanged(model, before)
    model.fc.weight.requires_grad_(True)
    model.eval()


class PaddedConv(nn.Conv2d):
    """A convolution with a child module, as timm's and EfficientNet-Lite's same-padding convs."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, bias=False)
        self.pad = nn.ZeroPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


def test_batch_norm_after_a_conv_with_children_is_merged() -> None:
    torch.manual_seed(0)
    conv, bn = PaddedConv(3, 6), nn.BatchNorm2d(6)
    _randomise(bn)
    head = [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)]
    model = nn.Sequential(conv, bn, *head).double().eval()
    folded = nn.Conv2d(3, 6, 3, padding=1).double()  # the merge written out by hand
    assert folded.bias is not None
    with torch.no_grad():
        mean, var = bn.state_dict()["running_mean"], bn.state_dict()["running_var"]
        scale = bn.weight / (var + bn.eps).sqrt()
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_(bn.bias - mean * scale)
    reference = nn.Sequential(folded, *head).eval()
    x = images()
    for name in LRP:
        ours = salience.explain(model, x, 1, name, reduce="none")
        expected = salience.explain(reference, x, 1, name, reduce="none")
        assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-7), name


class Block(nn.Module):
    def __init__(self, extra: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.extra = extra
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        if isinstance(self.extra, nn.MultiheadAttention):
            seq = h.flatten(2).transpose(1, 2)
            h = self.extra(seq, seq, seq)[0].transpose(1, 2).reshape(h.shape)
        else:
            h = self.extra(h)
        return self.head(h)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (nn.GroupNorm(2, 8), "extra (GroupNorm)"),
        (nn.Sequential(nn.ReLU(), nn.BatchNorm2d(8)), "extra.1 (BatchNorm2d)"),  # nothing to merge
        (nn.MultiheadAttention(8, 2, batch_first=True), "extra (MultiheadAttention)"),
    ],
)
@pytest.mark.parametrize("name", LRP)
def test_uncovered_layers_are_named(name: str, extra: nn.Module, named: str) -> None:
    model = Block(extra).eval()
    before = _snapshot(model)
    with pytest.raises(UnsupportedModelError, match=f"no LRP rule for layer {re.escape(named)}"):
        salience.explain(model, images(2, 8, torch.float32), 0, name)
    _assert_unchanged(model, before)


def test_covered_activations_pass() -> None:
    model = Block(nn.SiLU()).eval()
    out = salience.explain(model, images(2, 8, torch.float32), 0, "lrp_epsilon_plus_flat")
    assert bool(torch.isfinite(out).all()) and out.abs().sum() > 0


def test_gamma_box_bounds() -> None:
    model, x = bias_free_net(), images()
    per_image = salience.explain(model, x, 1, "lrp_epsilon_gamma_box")
    lo, hi = x.amin((0, 2, 3)), x.amax((0, 2, 3))
    given = salience.explain(
        model, x, 1, "lrp_epsilon_gamma_box", low=lo.tolist(), high=hi.tolist()
    )
    assert not torch.allclose(per_image, given)  # the bounds reach the z-box rule
    scalar = salience.explain(model, x, 1, "lrp_epsilon_gamma_box", low=-5.0, high=5.0)
    assert bool(torch.isfinite(scalar).all())
    with pytest.raises(SalienceError, match="one per input channel"):
        salience.explain(model, x, 1, "lrp_epsilon_gamma_box", low=[0.0, 1.0])
