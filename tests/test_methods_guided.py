"""Guided backprop, DeconvNet and Guided Grad-CAM: closed forms, every way of calling a ReLU
against an independent reference, ReLU6 (EfficientNet-Lite0), clean failure without ReLUs,
and parity with Captum where Captum applies (nn.ReLU modules)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience
from salience.errors import SalienceError

K = 4
RULES = {"guided_backprop": "guided", "deconvnet": "deconv"}


class Reference(torch.autograd.Function):
    """Independent reference: clamp(x, 0, hi) whose backward follows the rule, masks from x."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, hi: float | None, rule: str, mask_hi: bool = True
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.hi, ctx.rule = (hi if mask_hi else None), rule
        return torch.clamp(x, min=0.0, max=hi)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        out = torch.where(g > 0, g, torch.zeros_like(g))
        if ctx.rule == "guided":
            active = x > 0 if ctx.hi is None else (x > 0) & (x < ctx.hi)
            out = torch.where(active, out, torch.zeros_like(out))
        return out, None, None, None


def reference_gradient(
    model: nn.Module, x: torch.Tensor, target: list[int], rule: str
) -> torch.Tensor:
    inp = x.clone().requires_grad_(True)
    scores = model(inp).gather(1, torch.tensor(target)[:, None]).sum()
    (grad,) = torch.autograd.grad(scores, inp)
    return grad


STYLES: dict[str, tuple[Callable[[nn.Module, torch.Tensor, int], torch.Tensor], float | None]] = {
    "nn.ReLU": (lambda m, h, i: m.relus[i](h), None),
    "nn.ReLU(inplace)": (lambda m, h, i: m.inplace_relus[i](h), None),
    "one nn.ReLU reused": (lambda m, h, i: m.relus[0](h), None),
    "F.relu": (lambda m, h, i: F.relu(h), None),
    "F.relu(inplace)": (lambda m, h, i: F.relu(h, inplace=True), None),
    "F.relu_": (lambda m, h, i: F.relu_(h), None),
    "torch.relu": (lambda m, h, i: torch.relu(h), None),
    "torch.relu_": (lambda m, h, i: torch.relu_(h), None),
    "Tensor.relu": (lambda m, h, i: h.relu(), None),
    "Tensor.relu_": (lambda m, h, i: h.relu_(), None),
    "nn.ReLU6": (lambda m, h, i: m.relu6s[i](h), 6.0),
    "nn.ReLU6(inplace)": (lambda m, h, i: m.inplace_relu6s[i](h), 6.0),
    "F.relu6": (lambda m, h, i: F.relu6(h), 6.0),
    "F.relu6(inplace)": (lambda m, h, i: F.relu6(h, inplace=True), 6.0),
    "F.hardtanh(0, 4)": (lambda m, h, i: F.hardtanh(h, 0.0, 4.0), 4.0),
    "F.hardtanh_(0, 4)": (lambda m, h, i: F.hardtanh_(h, 0.0, 4.0), 4.0),
    "nn.Hardtanh(0, 4)": (lambda m, h, i: m.hardtanh(h), 4.0),
}


class ActNet(nn.Module):
    """conv-act-conv-act-pool-linear where "act" is called in the chosen style, or replaced
    by :class:`Reference` when ``reference`` names a rule."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.reference: str | None = None
        self.mask_hi = True  # False: the reference ignores the upper bound in its backward
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, K)
        self.relus = nn.ModuleList([nn.ReLU(), nn.ReLU()])
        self.inplace_relus = nn.ModuleList([nn.ReLU(inplace=True), nn.ReLU(inplace=True)])
        self.relu6s = nn.ModuleList([nn.ReLU6(), nn.ReLU6()])
        self.inplace_relu6s = nn.ModuleList([nn.ReLU6(inplace=True), nn.ReLU6(inplace=True)])
        self.hardtanh = nn.Hardtanh(0.0, 4.0)

    def act(self, h: torch.Tensor, i: int) -> torch.Tensor:
        call, hi = STYLES[self.style]
        if self.reference is not None:
            return Reference.apply(h, hi, self.reference, self.mask_hi)
        return call(self, h, i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x), 0)
        h = self.act(self.conv2(h), 1)
        return self.fc(h.mean(dim=(2, 3)))


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("method", list(RULES))
def test_every_relu_call_style_matches_the_reference(style: str, method: str) -> None:
    model = ActNet(style).double().eval()
    x = 4 * torch.randn(2, 3, 8, 8, dtype=torch.float64)  # large enough to pass the upper bound
    target = [1, 3]
    ours = salience.explain(model, x, target, method, reduce="none")
    model.reference = RULES[method]
    ref = reference_gradient(model, x, target, RULES[method])
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-6 * ref.abs().max().item())
    if STYLES[style][1] is not None and method == "guided_backprop":
        model.mask_hi = False
        no_upper = reference_gradient(model, x, target, "guided")
        assert not torch.allclose(ours.double(), no_upper, rtol=1e-3)  # the bound is honoured
    model.reference = None
    plain = salience.explain(model, x, target, "gradient", reduce="none")
    assert not torch.allclose(ours, plain, rtol=1e-3)  # the rule changed something


class MLP(nn.Module):
    def __init__(self, depth: int) -> None:
        super().__init__()
        sizes = [12, 7, 5][: depth + 1]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(sizes[-1], K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.out(h)


@pytest.mark.parametrize("depth", [1, 2])
def test_closed_forms_on_relu_mlps(depth: int) -> None:
    """Guided: W1^T (1[h1>0] * relu(W2^T (1[h2>0] * relu(w_out)))); DeconvNet: no 1[h>0]."""
    model = MLP(depth).double().eval()
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    t = 2
    pre, h = [], x.flatten(1)
    for layer in model.hidden:
        pre.append(layer(h).detach())
        h = torch.relu(pre[-1])
    guided = model.out.weight[t].detach().expand(3, -1)
    deconv = guided.clone()
    for layer, z in zip(reversed(model.hidden), reversed(pre), strict=True):
        guided = (guided.clamp(min=0) * (z > 0)) @ layer.weight.detach()
        deconv = deconv.clamp(min=0) @ layer.weight.detach()
    got_g = salience.explain(model, x, t, "guided_backprop", reduce="none").double()
    got_d = salience.explain(model, x, t, "deconvnet", reduce="none").double()
    assert torch.allclose(got_g.flatten(1), guided, atol=1e-6)
    assert torch.allclose(got_d.flatten(1), deconv, atol=1e-6)


def test_hardtanh_that_is_not_relu_like_keeps_its_gradient() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(12, 6), nn.Linear(6, K)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(F.hardtanh(torch.relu(self.a(x.flatten(1))) - 0.3))

    model = Mixed().double().eval()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    ours = salience.explain(model, x, 0, "guided_backprop", reduce="none").double()
    inp = x.clone().requires_grad_(True)
    z = model.a(inp.flatten(1))
    out = model.b(F.hardtanh(Reference.apply(z, None, "guided") - 0.3))[:, 0].sum()
    (ref,) = torch.autograd.grad(out, inp)
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_model_without_relu_gets_one_clear_error(method: str, small_vit: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(SalienceError, match="needs ReLU activations") as err:
        salience.explain(small_vit, x, 0, method)
    assert "\n" not in str(err.value)
    assert torch._C._len_torch_function_stack() == 0


def test_mode_is_exited_when_forward_raises() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, K)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.fc(x.flatten(1)))
            if torch.is_grad_enabled():  # the clean no-grad forward passes, the guided one fails
                raise RuntimeError("boom")
            return h

    with pytest.raises(RuntimeError, match="boom"):
        salience.explain(Boom(), torch.randn(2, 3, 2, 2), None, "guided_backprop")
    assert torch._C._len_torch_function_stack() == 0
    z = torch.randn(5, requires_grad=True)
    (g,) = torch.autograd.grad(torch.relu(z).mul(-1.0).sum(), z)
    assert torch.equal(g, -(z > 0).float())  # ReLU's own backward is back


def test_efficientnet_lite0_relu6() -> None:
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    model = lite.EfficientNet.from_name("efficientnet-lite0", num_classes=10).eval()
    relu6 = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    assert relu6
    x = torch.randn(2, 3, 64, 64)
    target = [1, 7]
    for method, rule in RULES.items():
        ours = salience.explain(model, x, target, method, reduce="none")
        handles = [
            m.register_forward_hook(lambda _m, i, _o, r=rule: Reference.apply(i[0], 6.0, r))
            for m in relu6
        ]
        try:
            ref = reference_gradient(model, x, target, rule)
        finally:
            for h in handles:
                h.remove()
        assert ref.abs().max() > 0
        assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


# --- parity with Captum (resnet18 uses nn.ReLU modules, reused and in place) ---------------


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.double().flatten(1), b.double().flatten(1))


@pytest.mark.parametrize("method", list(RULES))
def test_parity_with_captum_on_resnet18(method: str, resnet18: nn.Module) -> None:
    attr = pytest.importorskip("captum.attr")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    cls = attr.GuidedBackprop if method == "guided_backprop" else attr.Deconvolution
    ours = salience.explain(resnet18, x, [2, 9], method, reduce="none")
    with pytest.warns(UserWarning):
        ref = cls(resnet18).attribute(x.clone(), target=torch.tensor([2, 9])).detach()
    assert bool((_cosine(ours, ref) >= 0.999).all()), _cosine(ours, ref)


@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_guided_gradcam_parity_with_captum(layer: str, resnet18: nn.Module) -> None:
    attr = pytest.importorskip("captum.attr")
    model = copy.deepcopy(resnet18)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    ours = salience.explain(model, x, [4, 1], "guided_gradcam", reduce="none", layer=layer)
    with pytest.warns(UserWarning):
        ref = attr.GuidedGradCam(model, model.get_submodule(layer)).attribute(
            x.clone(), target=torch.tensor([4, 1]), interpolate_mode="bilinear"
        )
    ref = ref.detach()
    assert ours.abs().max() > 0  # (a Grad-CAM map may be all zero for one image, not for all)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    other = "layer3" if layer == "layer4" else "layer4"
    different = salience.explain(model, x, [4, 1], "guided_gradcam", reduce="none", layer=other)
    assert _cosine(ours.flatten()[None], different.flatten()[None]) < 0.99  # layer= is used
