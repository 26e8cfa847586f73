"""The CAM family: closed forms on a float64 GAP-linear model, parity with pytorch-grad-cam and
Captum, batching, layers given by name or module, ViTs, and hooks after errors.

pytorch-grad-cam ReLUs, min-max scales and cv2-resizes every map. The parity tests compare with
its raw map instead (``get_cam_image`` on the activations and gradients it captured), ReLU'd and
bilinearly upsampled like ours, by cosine similarity per image, which is scale invariant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn

import salience
from salience._guard import hook_count
from salience.methods import get_method, list_methods

CAMS = list_methods("cam")
PERTURBING = [n for n in CAMS if "channels x fwd" in get_method(n).passes]  # a pass per channel


class TokensToGrid(nn.Module):
    """Shows a ViT norm's patch tokens to Captum as an ``[N, D, h, w]`` grid (``self.grid``)."""

    def __init__(self, norm: nn.Module, side: int) -> None:
        super().__init__()
        self.norm, self.side, self.grid = norm, side, nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        n, _, d = y.shape
        grid = self.grid(y[:, 1:].transpose(1, 2).reshape(n, d, self.side, self.side))
        return torch.cat([y[:, :1], grid.flatten(2).transpose(1, 2)], 1)


class ZeroAblationVit(AblationLayerVit):
    """pytorch-grad-cam's ViT ablation with the paper's zeroing (it uses min - 1e7 when the
    layer's minimum is not 0, as for LayerNorm outputs)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activations.transpose(1, -1)
        for i in range(out.shape[0]):
            out[i, self.indices[i], :] = 0
        return out.transpose(-1, 1)


class AlignedUpsample(nn.Module):
    """Bilinear upsampling with ``align_corners=False``, as salience and the Score-CAM authors'
    code use; pytorch-grad-cam's ScoreCAM uses ``UpsamplingBilinear2d`` (corners aligned)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


REFERENCE: dict[str, Any] = {
    "gradcam": GradCAM,
    "gradcam_pp": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "eigencam": EigenCAM,
}


def grad_cam_raw(
    method: str,
    model: nn.Module,
    layer: nn.Module,
    x: torch.Tensor,
    classes: list[int],
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """pytorch-grad-cam's map before its ReLU, scaling and resizing."""
    cam = REFERENCE[method](model, [layer], reshape_transform=reshape, **kwargs)
    try:
        outputs = cam.activations_and_grads(x)
        targets = [ClassifierOutputTarget(c) for c in classes]
        if cam.uses_gradients:
            sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy() if cam.uses_gradients else None
        raw = cam.get_cam_image(x, layer, targets, acts, grads, False)
        if method == "eigencam":  # pytorch-grad-cam keeps the SVD's sign; apply salience's rule
            raw = torch.from_numpy(get_2d_projection(acts))
            raw = raw * eigen_sign(raw, torch.from_numpy(acts))[:, None, None]
    finally:
        cam.activations_and_grads.release()
    return torch.as_tensor(np.asarray(raw), dtype=torch.float32)


def eigen_sign(proj: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """+1 where the principal direction v (proportional to F^T proj) points along the mean
    feature vector mu: v . mu = sum_p proj_p (A_p - mu) . mu."""
    mu = acts.flatten(2).mean(2)  # [n, C]
    along = ((acts - mu[:, :, None, None]) * mu[:, :, None, None]).sum(1)  # [n, h, w]
    return torch.where((proj * along).sum((1, 2)) < 0, -1.0, 1.0).to(proj.dtype)


def upsampled(raw: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(raw.clamp_min(0)[:, None], size=size, mode="bilinear")[:, 0]


def assert_parallel(ours: torch.Tensor, ref: torch.Tensor, tol: float = 0.999) -> None:
    """Each pair of maps is non-zero and has cosine similarity >= tol."""
    a, b = ours.flatten(1).double(), ref.flatten(1).double()
    assert bool((b.norm(dim=1) > 0).all()), "reference map is all zero: the test is vacuous"
    cos = F.cosine_similarity(a, b)
    assert bool((cos >= tol).all()), cos.tolist()


def vit_tokens(side: int, prefix: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


@pytest.fixture(scope="module")
def vit(small_vit: nn.Module) -> nn.Module:
    """The small ViT with a random head (torchvision zero-initialises it: all gradients vanish)."""
    model = copy.deepcopy(small_vit)
    torch.manual_seed(1)
    nn.init.normal_(model.heads.head.weight, std=0.5)
    return model


@pytest.fixture(scope="module")
def reg_vit() -> nn.Module:
    torch.manual_seed(0)
    return TimmViT(
        img_size=64,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        reg_tokens=4,
        num_classes=10,
    ).eval()


# -- closed forms on a float64 model whose head is global average pooling + linear ------------


def gap_linear_parts(model: nn.Module, x: torch.Tensor, target: int) -> tuple[torch.Tensor, ...]:
    """Activations A of ``relu2`` [N, C, h, w], head weights w [C], bias b and scores y [N]."""
    with torch.no_grad():
        acts = model.relu2(model.conv2(model.relu1(model.conv1(x))))
        y = model(x)[:, target]
    return acts, model.fc.weight[target], model.fc.bias[target], y


def test_closed_forms_on_gap_linear_head(tiny_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    t = 2
    acts, w, b, y = gap_linear_parts(tiny_cnn, x, t)
    hw = acts.shape[2] * acts.shape[3]
    g = (w / hw)[None, :, None, None]  # d y / d A, the same at every position
    total = acts.sum((2, 3), keepdim=True)
    expected = {
        "gradcam": (g * acts).sum(1),
        "hirescam": (g * acts).sum(1),
        "xgradcam": (g * acts).sum(1),
        "layercam": (g.clamp_min(0) * acts).sum(1),
        "gradcam_pp": (hw * g.clamp_min(0) / (2 + total * g) * acts).sum(1),
    }
    drop = w[None, :, None, None] * acts.mean((2, 3), keepdim=True)  # y - y_k
    expected["ablationcam"] = (drop / y[:, None, None, None] * acts).sum(1)
    for name, want in expected.items():
        got = salience.explain(tiny_cnn, x, t, method=name, layer="relu2", relu=False)
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6, msg=name)
    # HiResCAM is complete here: the map sums to the score minus the bias
    hires = salience.explain(tiny_cnn, x, t, method="hirescam", layer="relu2", relu=False)
    torch.testing.assert_close(hires.double().sum((1, 2)), y - b, rtol=1e-5, atol=1e-6)


def test_eigencam_is_first_principal_component_with_positive_sign(tiny_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    acts = gap_linear_parts(tiny_cnn, x, 0)[0]
    feats = acts.flatten(2).transpose(1, 2)
    feats = feats - feats.mean(1, keepdim=True)
    _, vecs = torch.linalg.eigh(feats.transpose(1, 2) @ feats)  # covariance, ascending
    proj = (feats @ vecs[:, :, -1:]).squeeze(2).view(3, 8, 8)
    got = salience.explain(tiny_cnn, x, method="eigencam", layer="relu2", relu=False).double()
    torch.testing.assert_close(
        got, proj * eigen_sign(proj, acts)[:, None, None], rtol=1e-4, atol=1e-6
    )
    # for non-negative activations the sign agrees with the channel-mean activation
    assert bool(((got * acts.mean(1)).sum((1, 2)) > 0).all())


def layer_output(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def naive_scorecam(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    """Score-CAM one image and one channel at a time, straight from the definition."""
    maps = []
    for img in x:
        acts = layer_output(model, layer, img[None])[0]
        scores = []
        for channel in acts:
            up = F.interpolate(channel[None, None], size=x.shape[-2:], mode="bilinear")[0, 0]
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            with torch.no_grad():
                scores.append(model((img * mask)[None])[0, t])
        weights = torch.softmax(torch.stack(scores), 0)
        maps.append((weights[:, None, None] * acts).sum(0))
    return torch.stack(maps)


def count_rows(module: nn.Module) -> tuple[list[int], Any]:
    rows: list[int] = []
    handle = module.register_forward_pre_hook(lambda _m, inp: rows.append(inp[0].shape[0]))
    return rows, handle


def test_scorecam_matches_definition_and_scores_each_distinct_mask_once(
    tiny_cnn: nn.Module,
) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    conv = tiny_cnn.conv2
    with torch.no_grad():
        conv.bias[0] = -1e3  # channel 0 is zero everywhere after the ReLU
        conv.weight[1], conv.bias[1] = 2 * conv.weight[2], 2 * conv.bias[2]  # 1 = 2 x channel 2
    want = naive_scorecam(tiny_cnn, tiny_cnn.relu2, x, 1)
    acts = gap_linear_parts(tiny_cnn, x, 1)[0].flatten(2)
    assert int((acts.amax(2) > acts.amin(2)).sum()) == 3 * 7
    kw = {"method": "scorecam", "layer": "relu2", "relu": False, "batch_size": 5}
    salience.explain(tiny_cnn, x, 1, **kw)  # caches the layer probe
    rows, handle = count_rows(tiny_cnn.conv1)
    got = salience.explain(tiny_cnn, x, 1, **kw)
    handle.remove()
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6)
    # capture 3 images, one blank input for the constant channels, one row per distinct mask
    assert sum(rows) == 3 + 1 + 3 * 6


class ConcatNet(nn.Module):
    """A skip connection concatenated after ``conv2``: one image's earlier tensor cannot
    broadcast against the ablated rows, so Ablation-CAM must repeat the input instead."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        return self.fc(torch.cat([b, a], 1).mean((2, 3)))


def naive_ablation(model: nn.Module, layer: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    maps = []
    for img in x:
        acts = layer_output(model, layer, img[None])[0]
        with torch.no_grad():
            y = model(img[None])[0, t]
        drops = []
        for k in range(acts.shape[0]):

            def zero(_m: nn.Module, _i: object, out: torch.Tensor, k: int = k) -> torch.Tensor:
                out = out.clone()
                out[:, k] = 0
                return out

            handle = layer.register_forward_hook(zero)
            with torch.no_grad():
                drops.append((y - model(img[None])[0, t]) / y)
            handle.remove()
        maps.append((torch.stack(drops)[:, None, None] * acts).sum(0))
    return torch.stack(maps)


@pytest.mark.parametrize("net", ["tiny", "concat"])
def test_ablationcam_matches_definition_on_both_paths(tiny_cnn: nn.Module, net: str) -> None:
    model = tiny_cnn if net == "tiny" else ConcatNet().double().eval()
    layer = model.relu2 if net == "tiny" else model.conv2
    name = "relu2" if net == "tiny" else "conv2"
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    want = naive_ablation(model, layer, x, 1)
    kw = {"method": "ablationcam", "layer": name, "relu": False, "batch_size": 3}
    salience.explain(model, x, 1, **kw)  # caches the layer probe
    rows, handle = count_rows(model.conv1)
    got = salience.explain(model, x, 1, **kw)
    handle.remove()
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6)
    if net == "tiny":  # capture, then one image per chunk of 3 live (not all-zero) channels
        live = layer_output(model, layer, x).flatten(2).ne(0).any(2).sum(1).tolist()
        assert rows == [2] + [1] * sum(-(-n // 3) for n in live)
    else:  # capture, the shared attempt that fails at the concatenation, then repeated inputs
        assert rows == [2, 1, 3, 2, 3, 2]


# -- parity with pytorch-grad-cam and Captum -------------------------------------------------


GRADIENT_CAMS = [n for n in CAMS if n not in PERTURBING]  # one pass (eigencam: no gradient)


@pytest.mark.parametrize("method", GRADIENT_CAMS)
def test_parity_resnet18(resnet18: nn.Module, method: str) -> None:
    x = torch.randn(3, 3, 96, 96)
    classes = resnet18(x).argmax(1).tolist()
    ref_model = copy.deepcopy(resnet18)
    ref = grad_cam_raw(method, ref_model, ref_model.layer4[-1], x, classes)
    ours = salience.explain(resnet18, x, classes, method=method)
    assert_parallel(ours, upsampled(ref, x.shape[-2:]))


@pytest.mark.parametrize("method", PERTURBING)
def test_parity_resnet18_perturbing(
    resnet18: nn.Module, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", AlignedUpsample)
    x = torch.randn(2, 3, 48, 48)
    classes = resnet18(x).argmax(1).tolist()
    ref_model = copy.deepcopy(resnet18)
    ref = grad_cam_raw(method, ref_model, ref_model.layer3, x, classes)
    ours = salience.explain(resnet18, x, classes, method=method, layer=resnet18.layer3)
    assert_parallel(ours, upsampled(ref, x.shape[-2:]))


@pytest.mark.parametrize("method", CAMS)
def test_parity_torchvision_vit(
    vit: nn.Module, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", AlignedUpsample)
    x = torch.randn(3, 3, 64, 64)
    classes = vit(x).argmax(1).tolist()
    ref_model = copy.deepcopy(vit)
    kw = {"ablation_layer": ZeroAblationVit()} if method == "ablationcam" else {}
    layer = ref_model.encoder.layers[-1].ln_1
    ref = grad_cam_raw(method, ref_model, layer, x, classes, vit_tokens(4, 1), **kw)
    ours = salience.explain(vit, x, classes, method=method)
    assert_parallel(ours, upsampled(ref, x.shape[-2:]))


@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam"])
def test_parity_timm_vit_with_register_tokens(
    reg_vit: nn.Module, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", AlignedUpsample)
    x = torch.randn(2, 3, 64, 64)
    classes = reg_vit(x).argmax(1).tolist()
    ref_model = copy.deepcopy(reg_vit)
    ref = grad_cam_raw(method, ref_model, ref_model.blocks[-1].norm1, x, classes, vit_tokens(4, 5))
    ours = salience.explain(reg_vit, x, classes, method=method)
    assert_parallel(ours, upsampled(ref, x.shape[-2:]))


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "ablationcam"])
def test_parity_channels_last_swin(method: str) -> None:
    torch.manual_seed(0)
    model = SwinTransformer(
        img_size=64,
        patch_size=4,
        window_size=4,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 1),
        num_classes=5,
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    classes = model(x).argmax(1).tolist()
    ref_model = copy.deepcopy(model)
    kw = {"ablation_layer": ZeroAblationVit()} if method == "ablationcam" else {}
    ref = grad_cam_raw(
        method, ref_model, ref_model.norm, x, classes, lambda t: t.permute(0, 3, 1, 2), **kw
    )
    ours = salience.explain(model, x, classes, method=method)
    assert_parallel(ours, upsampled(ref, x.shape[-2:]))


def test_gradcam_parity_with_captum_resnet18(resnet18: nn.Module) -> None:
    x = torch.randn(3, 3, 96, 96)
    classes = resnet18(x).argmax(1)
    attr = LayerGradCam(resnet18, resnet18.layer4).attribute(
        x, target=classes, relu_attributions=True
    )
    ref = LayerAttribution.interpolate(attr, (96, 96), interpolate_mode="bilinear")[:, 0]
    assert_parallel(salience.explain(resnet18, x, classes, method="gradcam"), ref.detach())


def test_gradcam_parity_with_captum_vit(vit: nn.Module) -> None:
    x = torch.randn(3, 3, 64, 64)
    classes = vit(x).argmax(1)
    ref_model = copy.deepcopy(vit)
    block = ref_model.encoder.layers[-1]
    block.ln_1 = TokensToGrid(block.ln_1, 4)
    attr = LayerGradCam(ref_model, block.ln_1.grid).attribute(
        x, target=classes, relu_attributions=True
    )
    ref = LayerAttribution.interpolate(attr, (64, 64), interpolate_mode="bilinear")[:, 0]
    assert_parallel(salience.explain(vit, x, classes, method="gradcam"), ref.detach())


# -- behaviour -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", CAMS)
def test_batched_equals_one_by_one(tiny_cnn: nn.Module, method: str) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    before = x.clone()
    batched = salience.explain(tiny_cnn, x, method=method, batch_size=2)
    single = torch.cat([salience.explain(tiny_cnn, x[i : i + 1], method=method) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-7)
    assert torch.equal(x, before)
    assert bool(batched.abs().sum() > 0)


@pytest.mark.parametrize("method", CAMS)
def test_relu_keeps_the_positive_part(tiny_cnn: nn.Module, method: str) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)  # layer map is input-sized: no resampling
    signed = salience.explain(tiny_cnn, x, 0, method=method, relu=False)
    torch.testing.assert_close(salience.explain(tiny_cnn, x, 0, method=method), signed.clamp_min(0))


def test_signed_maps_have_negative_evidence(tiny_cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    assert bool((salience.explain(tiny_cnn, x, 0, method="gradcam", relu=False) < 0).any())


@pytest.mark.parametrize("method", ["gradcam", "ablationcam"])
def test_layer_by_name_equals_layer_by_module(resnet18: nn.Module, method: str) -> None:
    x = torch.randn(2, 3, 64, 64)
    by_name = salience.explain(resnet18, x, 4, method=method, layer="layer3.1", batch_size=64)
    by_module = salience.explain(
        resnet18, x, 4, method=method, layer=resnet18.layer3[1], batch_size=64
    )
    torch.testing.assert_close(by_name, by_module)
    auto = salience.explain(resnet18, x, 4, method=method, batch_size=64)
    assert not torch.allclose(by_name, auto)


def test_inplace_relu_after_layer_does_not_change_activations(tiny_cnn: nn.Module) -> None:
    plain, inplace = tiny_cnn, type(tiny_cnn)(inplace=True).double().eval()
    inplace.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for method in ("gradcam", "eigencam", "scorecam"):
        a = salience.explain(plain, x, 1, method=method, layer="conv2", relu=False)
        b = salience.explain(inplace, x, 1, method=method, layer="conv2", relu=False)
        torch.testing.assert_close(a, b, msg=method)


class Boom(nn.Module):
    """Raises on the ``after``-th call with more than one row (probes use one image)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            if self.calls == self.after:
                raise ValueError("boom")
            self.calls += 1
        return x


@pytest.mark.parametrize(("method", "after"), [(m, 0) for m in CAMS] + [(m, 1) for m in PERTURBING])
def test_exception_in_forward_leaves_no_hooks(tiny_cnn: nn.Module, method: str, after: int) -> None:
    model = tiny_cnn.train()
    model.relu2 = nn.Sequential(nn.ReLU(), Boom(after))  # type: ignore[assignment]
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="boom"):
        salience.explain(model, x, 0, method=method, layer="conv2")
    assert hook_count(model) == 0
    assert model.training


@pytest.mark.parametrize("method", CAMS)
def test_bfloat16_model_gives_the_float32_map(tiny_cnn: nn.Module, method: str) -> None:
    x = torch.randn(3, 3, 8, 8)
    ref = salience.explain(tiny_cnn.float(), x, 0, method=method, relu=False)
    low = salience.explain(tiny_cnn.bfloat16(), x.bfloat16(), 0, method=method, relu=False)
    assert low.dtype == torch.float32
    assert_parallel(low, ref, tol=0.98)
