"""Invariants every registered method must keep, parametrized over the whole registry:
batched == one-by-one, no side effects on inputs or model (also when the model's forward
raises), every target form, parameter and reduce errors, and the reduce options."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

import salience
from salience._guard import hook_count
from salience.errors import SalienceError, UnsupportedModelError
from salience.methods import get_method, list_methods, method_info
from salience.models import LoadedModel, Preprocess

METHODS = list_methods()
NOT_BATCH_INVARIANT = {"random": "one seeded draw per batch: image i of a batch is not draw 0"}
FAMILIES = {"gradient", "cam", "perturbation", "control", "relevance", "attention"}
N, SIZE = 3, 24


# fewer samples where the defaults take seconds per call; the invariants do not depend on them
CHEAPER: dict[str, dict[str, Any]] = {"rise": {"masks": 256}, "kernel_shap": {"samples": 200}}


def params(name: str) -> dict[str, Any]:
    """Defaults, except that an unseeded stochastic method gets a seed (and CHEAPER)."""
    info = method_info(name).params
    seed = {"seed": 0} if "seed" in info and info["seed"] is None else {}
    return {**seed, **CHEAPER.get(name, {})}


class BNNet(nn.Module):
    """conv-bn-relu-dropout-conv-relu-pool-linear in float64: eval mode matters here."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)
        self.calls = 0
        self.fail_at = 0  # > 0: raise on that forward call, in the middle of the network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.drop(self.relu1(self.bn(self.conv1(x))))
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        h = self.relu2(self.conv2(h))
        return self.fc(self.pool(h).flatten(1))


def _bnnet() -> BNNet:
    torch.manual_seed(0)
    net = BNNet().double()
    with torch.no_grad():  # non-trivial running statistics, so train mode would differ
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture
def model(request: pytest.FixtureRequest) -> nn.Module:
    """The CNN; a method that declares it cannot explain it (``unsupported``) is skipped here
    and checked by test_unsupported_model_is_refused instead."""
    net = _bnnet()
    name = getattr(getattr(request.node, "callspec", None), "params", {}).get("name")
    reason = get_method(name).unsupported(net) if name is not None else None
    if reason is not None:
        pytest.skip(f"not applicable: {reason}")
    return net


UNSUPPORTED = [n for n in METHODS if get_method(n).unsupported(_bnnet()) is not None]


@pytest.mark.parametrize("method", UNSUPPORTED)
def test_unsupported_model_is_refused(method: str, x: torch.Tensor) -> None:
    """A method that declares the CNN unsupported raises that very line, model untouched."""
    net = _bnnet()
    net.train()
    before = _state(net)
    reason = get_method(method).unsupported(net)
    assert reason and "\n" not in reason and get_method(method).needs
    with pytest.raises(UnsupportedModelError) as err:
        run(net, x, method)
    assert str(err.value) == reason
    _assert_same_state(net, before)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).double()


def run(
    model: nn.Module | LoadedModel, x: torch.Tensor, name: str, target: Any = None, **kw: Any
) -> torch.Tensor:
    return salience.explain(model, x, target, name, **{**params(name), **kw})


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": hook_count(model),
    }


def _assert_same_state(model: nn.Module, before: dict[str, Any]) -> None:
    after = _state(model)
    assert after["hooks"] == before["hooks"], "hooks left behind"
    assert after["training"] == before["training"], "train/eval modes changed"
    assert after["requires_grad"] == before["requires_grad"], "requires_grad flags changed"
    for a, b in zip(after["grads"], before["grads"], strict=True):
        assert (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
    for k, v in before["tensors"].items():
        assert torch.equal(after["tensors"][k], v), f"{k} changed"
    assert torch._C._len_torch_function_stack() == 0, "a TorchFunctionMode is still active"


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-12)
    return bool((a - b).abs().max() <= tol * scale)


@pytest.mark.parametrize("name", METHODS)
def test_registry_entry(name: str) -> None:
    cls = get_method(name)
    assert cls.name == name and cls.family in FAMILIES
    assert isinstance(cls.signed, bool) and isinstance(cls.stochastic, bool)
    assert isinstance(cls.passes, str) and cls.passes
    assert (cls.__doc__ or "").strip() and (inspect.getmodule(cls).__doc__ or "").strip()  # type: ignore[union-attr]
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name != "self":
            assert p.kind is p.KEYWORD_ONLY and p.default is not p.empty, p.name


@pytest.mark.parametrize("name", METHODS)
def test_output_contract(name: str, model: nn.Module, x: torch.Tensor) -> None:
    out = run(model, x, name)
    assert out.shape == (N, SIZE, SIZE) and out.dtype == torch.float32
    assert out.device == x.device and not out.requires_grad
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_one_by_one(name: str, model: nn.Module, x: torch.Tensor) -> None:
    if name in NOT_BATCH_INVARIANT:
        pytest.skip(NOT_BATCH_INVARIANT[name])
    batched = run(model, x, name)
    single = torch.cat([run(model, x[i : i + 1], name) for i in range(N)])
    assert _close(batched, single), (batched - single).abs().max()


@pytest.mark.parametrize("name", METHODS)
def test_same_call_same_result(name: str, model: nn.Module, x: torch.Tensor) -> None:
    assert torch.equal(run(model, x, name), run(model, x, name))


@pytest.mark.parametrize("name", METHODS)
def test_leaves_inputs_and_model_untouched(name: str, model: nn.Module, x: torch.Tensor) -> None:
    expected = run(model, x, name)
    model.train()
    model.drop.eval()  # a mixed state must come back exactly
    model.conv1.weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = _state(model)
    x = x.clone().requires_grad_(True)
    x.grad = torch.full_like(x, 2.0)
    x_before = x.detach().clone()
    out = run(model, x, name)
    _assert_same_state(model, before)
    assert torch.equal(x.detach(), x_before) and x.requires_grad
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    assert _close(out, expected, 1e-6), "explain must run the model in eval mode"


@pytest.mark.parametrize("name", METHODS)
def test_works_when_the_caller_disabled_grad(name: str, model: nn.Module, x: torch.Tensor) -> None:
    expected = run(model, x, name)
    with torch.no_grad():
        out = run(model, x, name)
        assert not torch.is_grad_enabled()
    assert _close(out, expected, 1e-6)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
@pytest.mark.parametrize("name", METHODS)
def test_clean_after_an_error_in_forward(
    name: str, fail_at: int, model: nn.Module, x: torch.Tensor
) -> None:
    model.train()
    before = _state(model)
    model.fail_at, model.calls = fail_at, 0
    raised = False
    try:
        run(model, x, name)
    except RuntimeError as err:
        assert "boom" in str(err)  # propagated, not swallowed or replaced
        raised = True
    model.fail_at = 0
    _assert_same_state(model, before)
    if fail_at == 1 and get_method(name).passes != "none":
        assert raised, "a method that runs the model must let its error through"


@pytest.mark.parametrize("name", METHODS)
def test_every_target_form(name: str, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        predicted = model(x).argmax(1)
    by_none = run(model, x, name)
    assert _close(by_none, run(model, x, name, predicted.tolist()), 1e-6)
    by_int = run(model, x, name, 2)
    assert _close(by_int, run(model, x, name, [2] * N), 1e-6)
    assert _close(by_int, run(model, x, name, torch.tensor([2] * N)), 1e-6)
    assert _close(by_int, run(model, x, name, torch.tensor(2)), 1e-6)
    assert _close(by_int, run(model, x, name, lambda logits: logits[:, 2]), 1e-6)
    as_index = lambda logits: torch.full((logits.shape[0],), 2)  # noqa: E731
    assert _close(by_int, run(model, x, name, as_index), 1e-6)
    loaded = _loaded(model)
    assert _close(by_int, run(loaded, x, name, "c2"), 1e-6)
    mixed = run(model, x, name, [0, 4, 2])
    assert _close(mixed[2], by_int[2], 1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_target_errors(name: str, model: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(SalienceError, match="targets for a batch"):
        run(model, x, name, [1, 2])
    with pytest.raises(SalienceError, match="integer"):
        run(model, x, name, torch.tensor([0.5] * N))
    if get_method(name).family != "control":
        with pytest.raises(SalienceError, match="out of range"):
            run(model, x, name, 99)
        with pytest.raises(SalienceError, match="one score per row"):
            run(model, x, name, lambda logits: logits)


def _loaded(model: nn.Module) -> LoadedModel:
    classes = [f"c{i}" for i in range(5)]
    return LoadedModel(model, Preprocess(), classes, None, "test", "test", "test", num_classes=5)


def test_class_name_targets_need_names(model: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(SalienceError, match=r"bare nn\.Module has no class names"):
        salience.explain(model, x, "zebra", "gradient")
    with pytest.raises(SalienceError, match=r"unknown class 'c22'.*did you mean"):
        salience.explain(_loaded(model), x, "c22", "gradient")
    with pytest.raises(SalienceError, match=r"indices outside 0\.\.4"):
        salience.explain(model, x, lambda y: torch.full((y.shape[0],), 9), "gradient")
    per_image = salience.explain(_loaded(model), x, ["c0", "c4", "c2"], "gradient")
    assert _close(per_image, salience.explain(model, x, [0, 4, 2], "gradient"), 1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_unknown_parameter(name: str, model: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(SalienceError, match="no parameter not_a_parameter"):
        salience.explain(model, x, 0, name, not_a_parameter=1)


def test_unknown_method_and_reduce(model: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(SalienceError, match=r"unknown method 'nope'.*gradient"):
        salience.explain(model, x, 0, "nope")
    with pytest.raises(SalienceError, match="unknown reduce"):
        salience.explain(model, x, 0, "gradient", reduce="mean")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", METHODS)
def test_reduce_options(name: str, model: nn.Module, x: torch.Tensor) -> None:
    full = run(model, x, name, 1, reduce="none")
    assert full.ndim == 4 and full.shape[0] == N and full.shape[-2:] == (SIZE, SIZE)
    assert full.shape[1] in (1, 3)
    summed = run(model, x, name, 1, reduce="sum")
    if full.shape[1] == 1:  # a single-channel map: every reduction returns it as it is
        for reduce in ("sum", "abs_sum", "abs_max"):
            assert _close(run(model, x, name, 1, reduce=reduce), full[:, 0], 1e-6)
        return
    assert _close(summed, full.sum(1), 1e-6)
    assert _close(run(model, x, name, 1, reduce="abs_sum"), full.abs().sum(1), 1e-6)
    assert _close(run(model, x, name, 1, reduce="abs_max"), full.abs().amax(1), 1e-6)
