"""CAM layer selection: automatic choice for CNNs and ViTs, token grids, clear errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn

import salience
from salience._guard import hook_count
from salience.errors import SalienceError, UnsupportedModelError
from salience.models.layers import (
    auto_layer,
    infer_prefix,
    patch_grid,
    resolve_layer,
    tokens_to_grid,
)


def timm_vit(img_size: int | tuple[int, int] = 64, reg_tokens: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return TimmViT(
        img_size=img_size,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        reg_tokens=reg_tokens,
        num_classes=10,
    ).eval()


class TokenNet(nn.Module):
    """A token model with no prefix-token attribute: 2 learned tokens before the patches."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.extra = nn.Parameter(torch.randn(1, 2, 8))
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.extra.expand(x.shape[0], -1, -1), t], 1)
        return self.head(self.mix(t).mean(1))


def test_auto_layer_resnet_is_last_spatial_block(resnet18: nn.Module) -> None:
    layer = auto_layer(resnet18, torch.randn(1, 3, 64, 64))
    assert layer.name == "layer4" and layer.prefix_tokens is None


def test_auto_layer_torchvision_vit(small_vit: nn.Module) -> None:
    layer = auto_layer(small_vit, torch.randn(1, 3, 64, 64))
    assert layer.module is small_vit.encoder.layers[-1].ln_1
    assert layer.prefix_tokens == 1


def test_auto_layer_timm_vit_drops_class_and_register_tokens() -> None:
    model = timm_vit()
    layer = auto_layer(model, torch.randn(1, 3, 64, 64))
    assert layer.name == "blocks.1.norm1" and layer.prefix_tokens == 5


@pytest.mark.parametrize("size", [(64, 96), (96, 64)])
def test_auto_layer_non_square_cnn(resnet18: nn.Module, size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size)
    cam = salience.explain(resnet18, x, 3, method="gradcam", relu=False)
    assert cam.shape == (2, *size)
    assert torch.equal(
        cam, salience.explain(resnet18, x, 3, method="gradcam", relu=False, layer="layer4")
    )


def test_non_square_timm_vit_grid_is_row_major() -> None:
    model = timm_vit(img_size=(48, 80))
    x = torch.randn(2, 3, 48, 80)
    layer = auto_layer(model, x)
    seen: list[torch.Tensor] = []
    handle = layer.module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    grid = tokens_to_grid(seen[0], layer.prefix_tokens or 0, 48, 80)
    assert grid.shape == (2, 32, 3, 5)
    # patch (row 1, column 3) is token prefix + 1 * 5 + 3
    assert torch.equal(grid[:, :, 1, 3], seen[0][:, 5 + 1 * 5 + 3])
    cam = salience.explain(model, x, method="gradcam", relu=False)
    assert cam.shape == (2, 48, 80) and bool(cam.abs().sum() > 0)


def test_prefix_inferred_without_model_attributes() -> None:
    model = TokenNet().eval()
    layer = resolve_layer(model, "mix", torch.randn(1, 3, 32, 48))
    assert layer.prefix_tokens == 2
    assert salience.explain(model, torch.randn(2, 3, 32, 48), 1, layer="mix").shape == (2, 32, 48)


def test_known_prefix_ignored_for_patch_embedding_tokens() -> None:
    model, x = timm_vit(), torch.randn(1, 3, 64, 64)
    # timm's patch_embed returns [N, P, D] tokens without the class and register tokens
    assert resolve_layer(model, model.patch_embed, x).prefix_tokens == 0
    assert resolve_layer(model, "patch_embed.proj", x).prefix_tokens is None


def test_patch_grid_floor_ceil_and_infer_prefix() -> None:
    assert patch_grid(16, 64, 64) == (4, 4)
    assert patch_grid(16, 70, 70) == (4, 4)  # 16 px patches, remainder cut off
    assert patch_grid(25, 70, 70) == (5, 5)  # 16 px patches, last one padded
    assert patch_grid(15, 48, 80) == (3, 5)
    assert patch_grid(17, 64, 64) is None
    assert infer_prefix(21, 64, 64) == 5
    with pytest.raises(SalienceError, match="cannot infer a patch grid"):
        infer_prefix(3, 64, 64, max_prefix=1)


def test_unknown_layer_name_suggests_close_names(resnet18: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(SalienceError, match=r"no layer 'layer4\.2'.*layer4\.1"):
        salience.explain(resnet18, x, method="gradcam", layer="layer4.2")


def test_layer_errors(resnet18: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(SalienceError, match="not a submodule"):
        resolve_layer(resnet18, nn.Conv2d(3, 3, 1), x)
    with pytest.raises(SalienceError, match="not the model itself"):
        resolve_layer(resnet18, resnet18, x)
    with pytest.raises(SalienceError, match="runs 2 times"):
        resolve_layer(resnet18, "layer4.1.relu", x)
    with pytest.raises(SalienceError, match=r"shape \(1, 10\)"):
        resolve_layer(resnet18, "fc", x)
    with pytest.raises(SalienceError, match="module of the model or its dotted name"):
        resolve_layer(resnet18, 3, x)  # type: ignore[arg-type]
    assert hook_count(resnet18) == 0


def test_layer_that_does_not_run_or_returns_a_tuple() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.pair, self.unused = nn.Conv2d(3, 4, 3), Pair(), nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pair(self.conv(x))[0].mean((2, 3)))

    net, x = Net().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(SalienceError, match="does not run"):
        resolve_layer(net, "unused", x)
    with pytest.raises(SalienceError, match="does not return a tensor"):
        resolve_layer(net, "pair", x)
    assert resolve_layer(net, None, x).name == "conv"


def test_probe_cache_follows_architecture_changes(tiny_cnn: nn.Module) -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    assert auto_layer(tiny_cnn, x).module is tiny_cnn.relu2
    tiny_cnn.relu2 = nn.ReLU()
    assert auto_layer(tiny_cnn, x).module is tiny_cnn.relu2


def test_probe_leaves_no_hooks_when_forward_raises() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise ValueError("broken model")

    net = Broken()
    with pytest.raises(ValueError, match="broken model"):
        auto_layer(net, torch.randn(1, 3, 8, 8))
    assert hook_count(net) == 0


def test_score_independent_of_layer_is_a_clear_error() -> None:
    model = torchvision.models.resnet18(num_classes=3).eval()
    model.side = nn.Conv2d(3, 3, 1)  # runs only in the hook below, not on the path to the logits
    model.conv1.register_forward_pre_hook(lambda _m, inp: (model.side(inp[0]), None)[1])
    with pytest.raises(SalienceError, match="does not depend on layer 'side'"):
        salience.explain(model, torch.randn(1, 3, 64, 64), 0, method="gradcam", layer="side")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_model_is_a_clear_error() -> None:
    model = torch.jit.script(torchvision.models.resnet18(num_classes=3).eval())
    with pytest.raises(UnsupportedModelError, match="TorchScript"):
        salience.explain(model, torch.randn(1, 3, 32, 32), method="gradcam")


def test_channels_last_swin_is_read_as_maps() -> None:
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
    layer = auto_layer(model, x)
    assert (layer.name, layer.channels_last, layer.channel_dim) == ("norm", True, -1)
    out = torch.randn(2, 8, 8, 32)
    assert torch.equal(layer.maps(out, 64, 64)[:, 5, 2, 3], out[:, 2, 3, 5])
    # convolutions stay channels-first, even in a channels-last model
    assert not resolve_layer(model, "patch_embed.proj", x).channels_last
