"""attention_rollout and chefer on tiny random vision transformers (torchvision, timm, Hugging
Face) in float64, against references that compute the attention themselves (explicit
q k^T softmax from the block's weights, or Hugging Face's own ``output_attentions``) and fold
it with the papers' equations written out per image and per head."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience
from salience._guard import hook_count
from salience.errors import UnsupportedModelError

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

Reference = tuple[torch.Tensor, list[torch.Tensor]]  # logits, attention [N, H, T, T] per block
METHODS = ("attention_rollout", "chefer")


def _torchvision_vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    m = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    )
    nn.init.normal_(m.heads.head.weight)  # torchvision starts the head at zero
    return m.double().eval()


def _timm(name: str, **kw: Any) -> nn.Module:
    torch.manual_seed(0)
    base = dict(pretrained=False, patch_size=8, depth=2, num_heads=2, embed_dim=16, num_classes=5)
    return timm.create_model(name, **{**base, **kw}).double().eval()


class Logits(nn.Module):
    """A Hugging Face classifier returning its logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(pixel_values=x).logits
        return out


def _hf(config_cls: str, model_cls: str, size: tuple[int, int]) -> nn.Module:
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(
        image_size=size,
        patch_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        hidden_size=16,
        intermediate_size=32,
        num_labels=5,
    )
    return Logits(getattr(transformers, model_cls)(config)).double().eval()


# ------------------------------------------------------------------ independent references


def _heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, t, _ = qkv.shape
    q, k, v = qkv.reshape(n, t, 3, heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1)
    return a, (a @ v).transpose(1, 2).flatten(2)


def _torchvision_reference(m: Any, x: torch.Tensor) -> Reference:
    h = m._process_input(x)
    h = torch.cat([m.class_token.expand(h.shape[0], -1, -1), h], 1) + m.encoder.pos_embedding
    attns = []
    for layer in m.encoder.layers:
        mha = layer.self_attention
        qkv = F.linear(layer.ln_1(h), mha.in_proj_weight, mha.in_proj_bias)
        a, o = _attend(*_heads(qkv, mha.num_heads))
        attns.append(a)
        h = h + mha.out_proj(o)
        h = h + layer.mlp(layer.ln_2(h))
    return m.heads(m.encoder.ln(h)[:, 0]), attns


def _timm_reference(m: Any, x: torch.Tensor) -> Reference:
    h = m.norm_pre(m._pos_embed(m.patch_embed(x)))
    attns = []
    for blk in m.blocks:
        a, o = _attend(*_heads(blk.attn.qkv(blk.norm1(h)), blk.attn.num_heads))
        attns.append(a)
        h = h + blk.ls1(blk.attn.proj(o))
        h = h + blk.ls2(blk.mlp(blk.norm2(h)))
    return m.forward_head(m.norm(h)), attns


def _hf_reference(m: Any, x: torch.Tensor) -> Reference:
    eager = copy.deepcopy(m.model)
    eager.set_attn_implementation("eager")
    out = eager(pixel_values=x, output_attentions=True)
    return out.logits, list(out.attentions)


def _rollout(attns: list[np.ndarray], grads: list[np.ndarray] | None) -> np.ndarray:
    """Abnar & Zuidema: per image, R = prod_l rownorm(mean_h A_l + I), first block innermost."""
    n, heads, t, _ = attns[0].shape
    out = np.zeros((n, t, t))
    for i in range(n):
        r = np.eye(t)
        for a in attns:
            mixed = sum(a[i, h] for h in range(heads)) / heads + np.eye(t)
            r = (mixed / mixed.sum(axis=1, keepdims=True)) @ r
        out[i] = r
    return out


def _chefer(attns: list[np.ndarray], grads: list[np.ndarray] | None) -> np.ndarray:
    """Chefer et al. 2021, eqs. (5)-(6): R = I; R += mean_h (grad_h * A_h)^+ @ R per block."""
    assert grads is not None
    n, heads, t, _ = attns[0].shape
    out = np.zeros((n, t, t))
    for i in range(n):
        r = np.eye(t)
        for a, g in zip(attns, grads, strict=True):
            cam = sum(np.maximum(g[i, h] * a[i, h], 0) for h in range(heads)) / heads
            r = r + cam @ r
        out[i] = r
    return out


RULES: dict[str, Callable[[list[np.ndarray], list[np.ndarray] | None], np.ndarray]] = {
    "attention_rollout": _rollout,
    "chefer": _chefer,
}


def _reference_map(
    method: str,
    reference: Callable[[Any, torch.Tensor], Reference],
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    rows: list[int] | None,
    prefix: int,
    grid: tuple[int, int],
) -> torch.Tensor:
    inp = x.clone().requires_grad_(True)
    logits, attns = reference(model, inp)
    with torch.no_grad():
        assert torch.allclose(logits, model(x), atol=1e-6), "the reference forward is not the model"
    grads = torch.autograd.grad(logits[:, target].sum(), attns)
    r = RULES[method]([a.detach().numpy() for a in attns], [g.numpy() for g in grads])
    read = r[:, rows] if rows is not None else r[:, prefix:]
    patches = torch.from_numpy(read.mean(1)[:, prefix:]).reshape(x.shape[0], 1, *grid)
    return F.interpolate(patches, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[Any, torch.Tensor], Reference], Any]] = {
    # name: (model, reference, (input size, readout rows, prefix tokens, grid))
    "torchvision": (_torchvision_vit, _torchvision_reference, ((32, 32), [0], 1, (4, 4))),
    "timm_registers_nonsquare": (
        lambda: _timm("vit_tiny_patch16_224", img_size=(32, 48), reg_tokens=2),
        _timm_reference,
        ((32, 48), [0], 3, (4, 6)),
    ),
    "timm_deit_distilled": (
        lambda: _timm("deit_tiny_distilled_patch16_224", img_size=32),
        _timm_reference,
        ((32, 32), [0, 1], 2, (4, 4)),
    ),
    "timm_avg_pool": (
        lambda: _timm("vit_tiny_patch16_224", img_size=32, class_token=False, global_pool="avg"),
        _timm_reference,
        ((32, 32), None, 0, (4, 4)),
    ),
    "hf_vit_nonsquare": (
        lambda: _hf("ViTConfig", "ViTForImageClassification", (32, 48)),
        lambda m, x: _hf_reference(m, x),
        ((32, 48), [0], 1, (4, 6)),
    ),
    "hf_deit_teacher": (
        lambda: _hf("DeiTConfig", "DeiTForImageClassificationWithTeacher", (32, 32)),
        lambda m, x: _hf_reference(m, x),
        ((32, 32), [0, 1], 2, (4, 4)),
    ),
}


def _x(size: tuple[int, int], n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(1)).double()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_reference(case: str, method: str) -> None:
    build, reference, (size, rows, prefix, grid) = CASES[case]
    model = build()
    x = _x(size)
    expected = _reference_map(method, reference, model, x, 3, rows, prefix, grid).float()
    got = salience.explain(model, x, 3, method)
    tol = 1e-4 if case.startswith("hf") else 1e-6  # maps are float32; HF softmax is float32
    assert torch.allclose(got, expected, rtol=tol, atol=tol * expected.abs().max().item())
    assert expected.std() > 0  # the maps are not trivially flat


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": hook_count(model),
        "fused": [getattr(m, "fused_attn", None) for m in model.modules()],
        "attn_impl": [
            cast(Any, m).config._attn_implementation
            for m in model.modules()
            if hasattr(m, "config")
        ],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    tensors = all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    return tensors and all(a[k] == b[k] for k in a if k != "state")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["torchvision", "hf_vit_nonsquare"])
def test_model_left_as_it_was_also_after_an_error(case: str, method: str) -> None:
    build, _, (size, *_) = CASES[case]
    model = build()
    model.train()
    x = _x(size)
    before = _snapshot(model)
    with torch.no_grad():
        plain = model.eval()(x)
    model.train()
    salience.explain(model, x, None, method)
    assert _same(before, _snapshot(model))

    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.inner(x)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        salience.explain(Failing(), x, 0, method)
    assert _same(before, _snapshot(model))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), plain)  # fused / sdpa attention again


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["timm_registers_nonsquare", "hf_deit_teacher"])
def test_batched_equals_one_by_one_and_targets(case: str, method: str) -> None:
    build, _, (size, *_) = CASES[case]
    model = build()
    x = _x(size, 3)
    batched = salience.explain(model, x, None, method)
    single = torch.cat([salience.explain(model, x[i : i + 1], None, method) for i in range(3)])
    assert torch.allclose(batched, single, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
        assert torch.allclose(salience.explain(model, x, predicted, method), batched)
    other = salience.explain(model, x, [(p + 1) % 5 for p in predicted], method)
    assert torch.equal(other, batched) == (method == "attention_rollout")  # class-agnostic
    with pytest.raises(salience.SalienceError, match="out of range"):
        salience.explain(model, x, 99, method)


def test_cnn_and_windowed_attention_are_refused() -> None:
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    cnn(torch.zeros(1, 3, 8, 8))
    for method in METHODS:
        with pytest.raises(UnsupportedModelError) as err:
            salience.explain(cnn, torch.zeros(1, 3, 8, 8), 0, method)
        assert str(err.value) == (
            f"{method} needs a transformer with attention blocks; this model has none"
        )
    swin = (
        timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            img_size=32,
            window_size=4,
            embed_dim=16,
            depths=(1, 1),
            num_heads=(1, 2),
            num_classes=5,
        )
        .double()
        .eval()
    )
    before = _snapshot(swin)
    with pytest.raises(UnsupportedModelError, match="within windows"):
        salience.explain(swin, _x((32, 32), 1), 0, "chefer")
    assert _same(before, _snapshot(swin))


def test_registry_offers_them_only_where_they_apply() -> None:
    from salience.cli.methods_cmd import methods_payload

    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    assert not set(METHODS) & set(salience.list_methods(model=cnn))
    assert set(METHODS) <= set(salience.list_methods(model=_torchvision_vit()))
    assert "gradient" in salience.list_methods(model=cnn)
    needs = {row["name"]: row["needs"] for row in methods_payload()}
    assert needs["chefer"] and needs["attention_rollout"] and needs["gradient"] is None
