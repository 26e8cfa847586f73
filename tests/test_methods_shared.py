"""Shared passes: methods run together by ``explain_many`` give the same maps, bit for bit,
as each method alone, in fewer passes; the model is left as it was; an audit with shared
passes stores the same maps as one without."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from salience._guard import hook_count
from salience.audit import audit
from salience.audit.attribute import attribute
from salience.methods import (
    build_method,
    explain_many,
    get_method,
    list_methods,
    method_info,
    share_groups,
)
from salience.methods._base import ExplainJob
from salience.methods._shared import SHARE_ENV, Chunk, Sharing
from salience.models.layers import CamLayer
from salience.models.preprocess import Preprocess
from salience.store import Run

SHARING = [n for n in list_methods() if issubclass(get_method(n), Sharing)]
SEVEN = [
    "gradcam",
    "gradcam_pp",
    "xgradcam",
    "layercam",
    "hirescam",
    "gradient",
    "input_x_gradient",
]
N, SIZE = 3, 12


class SkipNet(nn.Module):
    """conv-bn-relu, conv (the CAM layer), in-place ReLU, a skip connection, pool, linear."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(5, 5, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, classes)
        self.calls = 0
        self.fail_at = 0  # > 0: raise on that forward call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        h = self.relu1(self.bn(self.conv1(x)))
        h = self.relu2(self.conv2(h)) + h
        return self.fc(self.pool(h).flatten(1))


@pytest.fixture
def model() -> SkipNet:
    torch.manual_seed(0)
    net = SkipNet().double()
    with torch.no_grad():
        nn.init.uniform_(net.bn.get_buffer("running_mean"), -0.5, 0.5)
        nn.init.uniform_(net.bn.get_buffer("running_var"), 0.5, 2.0)
    return net.eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).double()


def _alone(model: nn.Module, x: torch.Tensor, methods: dict[str, Any], target: Any) -> dict:
    return {name: m.explain(model, x, target) for name, m in methods.items()}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), (name, (a[name] - b[name]).abs().max())


@pytest.mark.parametrize(
    "target", [None, 2, lambda y: y[:, 1] - y[:, 0]], ids=["pred", "int", "fn"]
)
def test_every_sharing_method_together_equals_alone(
    model: SkipNet, x: torch.Tensor, target: Any
) -> None:
    methods = {
        n: build_method(n, layer="conv2") if "layer" in method_info(n).params else build_method(n)
        for n in [*SHARING, "sobel"]
    }
    shared = explain_many(model, x, methods, target)
    _assert_identical(shared, _alone(model, x, methods, target))


def test_seven_methods_make_one_forward_and_gradients_are_right(
    model: SkipNet, x: torch.Tensor
) -> None:
    methods = {n: build_method(n, layer="conv2") for n in SEVEN[:5]}
    methods |= {n: build_method(n) for n in SEVEN[5:]}
    assert [list(g) for g in share_groups(methods)] == [SEVEN]
    explain_many(model, x, methods)  # warm-up: the layer probe and the chunk size are cached
    model.calls = 0
    shared = explain_many(model, x, methods, 1, reduce="none")
    assert model.calls == 1  # one forward (and one backward) for all seven
    xi = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(model(xi)[:, 1].sum(), xi)  # independent reference
    torch.testing.assert_close(shared["gradient"], ref.float(), rtol=0, atol=0)
    torch.testing.assert_close(shared["input_x_gradient"], (x * ref).float(), rtol=0, atol=0)


def test_hirescam_sums_to_the_score_in_a_shared_pass() -> None:
    """Layer followed by global average pooling and a linear head: the signed HiResCAM map
    sums to the target score minus the bias, also when the pass serves the input gradient."""
    torch.manual_seed(2)
    head = nn.Linear(4, 3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    net = net.double().eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    methods = {
        "hirescam": build_method("hirescam", layer="0", relu=False),
        "gradient": build_method("gradient"),
    }
    maps = explain_many(net, x, methods, 2)
    score = net(x)[:, 2] - head.bias[2]
    torch.testing.assert_close(
        maps["hirescam"].double().sum((1, 2)), score.detach(), rtol=1e-6, atol=1e-6
    )


def test_layers_chunks_and_names(model: SkipNet, x: torch.Tensor) -> None:
    """Two layers in one backward, chunks of 2 + 1 rows, methods named by the caller."""
    methods = {
        "low": build_method("gradcam", layer="conv1", batch_size=2),
        "high": build_method("gradcam", layer="conv2", batch_size=2),
        "signed": build_method("hirescam", layer="relu1", relu=False, batch_size=2),
        "ixg": build_method("input_x_gradient", batch_size=2),
        "other_chunks": build_method("gradient"),
    }
    assert [list(g) for g in share_groups(methods)] == [
        ["low", "high", "signed", "ixg"],
        ["other_chunks"],
    ]
    _assert_identical(explain_many(model, x, methods), _alone(model, x, methods, None))


def test_switch_runs_every_method_alone(
    model: SkipNet, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    methods = {n: build_method(n) for n in ("gradcam", "gradient")}
    monkeypatch.setenv(SHARE_ENV, "0")
    assert [list(g) for g in share_groups(methods)] == [["gradcam"], ["gradient"]]
    explain_many(model, x, methods)  # warm-up
    model.calls = 0
    explain_many(model, x, methods)
    assert model.calls == 2
    assert len(share_groups(methods, share=True)) == 1


def test_model_and_hooks_untouched_after_success_and_error(model: SkipNet, x: torch.Tensor) -> None:
    methods = {n: build_method(n) for n in SEVEN}
    model.train()
    model.bn.eval()
    model.conv1.weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = _state(model)
    x0 = x.clone()
    explain_many(model, x, methods)
    assert _state(model) == before and torch.equal(x, x0)
    model.calls, model.fail_at = 0, 1
    with pytest.raises(RuntimeError, match="boom"):
        explain_many(model, x, methods)
    assert _state(model) == before and torch.equal(x, x0)
    assert torch._C._len_torch_function_stack() == 0


def test_audit_records_a_failing_method_alone(model: SkipNet, x: torch.Tensor) -> None:
    methods = {
        "gradcam": build_method("gradcam"),
        "bad": _Failing(),
        "gradient": build_method("gradient"),
    }
    done = attribute(model, x, methods, (SIZE, SIZE))
    assert done.maps["bad"] is None and "finish failed" in str(done.errors["bad"])
    for name in ("gradcam", "gradient"):
        got = done.maps[name]
        assert done.errors[name] is None and got is not None
        assert torch.equal(got, methods[name].explain(model, x, None))


# ----------------------------------------------------------------------------- end to end


@dataclass
class _Tiny:
    """Stands in for a LoadedModel: a float32 SkipNet on 16 px inputs."""

    module: nn.Module = field(default_factory=lambda: _seeded(SkipNet(3)))
    preprocess: Preprocess = field(
        default_factory=lambda: Preprocess(size=16, resize=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    )
    class_names: list[str] = field(default_factory=lambda: ["ant", "bee", "cat"])
    cam_layer: str | None = "conv2"
    spec: str = "tests:SkipNet"


def test_audit_with_shared_passes_stores_the_same_maps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    for c in ("ant", "bee", "cat"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / c / f"{i}.png")
    kw: dict[str, Any] = {"batch_size": 4, "shard_size": 4, "map_size": 8, "workers": 0}
    audit(_Tiny(), tmp_path / "data", tmp_path / "shared", SEVEN, **kw)
    monkeypatch.setenv(SHARE_ENV, "0")
    audit(_Tiny(), tmp_path / "data", tmp_path / "alone", SEVEN, **kw)
    a, b = Run.open(tmp_path / "shared"), Run.open(tmp_path / "alone")
    cols = ["sample_id", "pred", "confidence", "error"]
    assert a.samples(cols).equals(b.samples(cols))
    ids = a.samples(["sample_id"]).sample_id.tolist()
    for method in SEVEN:
        maps = a.saliencies(ids, method)
        assert np.isfinite(maps).all() and np.abs(maps).max() > 0
        np.testing.assert_array_equal(maps, b.saliencies(ids, method))


# ----------------------------------------------------------------------------- helpers


class _Failing(Sharing):
    """Shares the input-gradient pass, then fails."""

    name = "failing"
    family = "gradient"
    signed = True
    passes = "1 fwd+bwd"
    needs_input_grad = True

    def finish(self, chunk: Chunk, job: ExplainJob, layer: CamLayer | None) -> torch.Tensor:
        raise ValueError("finish failed")


def _seeded(net: nn.Module) -> nn.Module:
    torch.manual_seed(3)
    for p in net.parameters():
        nn.init.normal_(p, std=0.5)
    return net.eval()


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "tensors": {k: v.clone().tolist() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.tolist() for p in model.parameters()],
        "hooks": hook_count(model),
    }
