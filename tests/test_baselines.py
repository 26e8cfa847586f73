"""One baseline vocabulary for methods and metrics: old spellings are aliases, errors list it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import salience
import salience.metrics as M
from salience.errors import SalienceError
from salience.methods.baselines import BASELINES, baseline_like, baseline_name, choices

SPELLINGS = ("0", "zero", "zeros")


def test_the_old_spellings_are_one_zero_baseline(tiny_cnn: nn.Module) -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert {baseline_name(s) for s in SPELLINGS} == {"zero"}
    for s in SPELLINGS:
        assert torch.equal(baseline_like(x, s), torch.zeros_like(x))
    s = torch.rand(2, 8, 8, dtype=torch.float64)
    maps = [
        salience.explain(tiny_cnn, x, 0, "occlusion", window=2, stride=2, baseline=b)
        for b in SPELLINGS
    ]
    ig = [salience.explain(tiny_cnn, x, 0, "integrated_gradients", baseline=b) for b in SPELLINGS]
    deletion = [M.deletion(tiny_cnn, x, s, 0, baseline=b).scores for b in SPELLINGS]
    for got in (maps, ig, deletion):
        assert all(torch.equal(got[0], g) for g in got[1:])
    assert torch.equal(maps[0], salience.explain(tiny_cnn, x, 0, "occlusion", window=2, stride=2))
    for name in ("occlusion", "integrated_gradients", "rise", "kernel_shap"):
        assert salience.get_method(name)(baseline="zeros").params()["baseline"] == "zero"


@pytest.mark.parametrize("where", ["occlusion", "integrated_gradients", "rise", "deletion"])
def test_an_unknown_baseline_lists_the_one_vocabulary(tiny_cnn: nn.Module, where: str) -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(SalienceError, match="unknown baseline 'grey'") as err:
        if where == "deletion":
            M.deletion(tiny_cnn, x, torch.rand(1, 8, 8, dtype=torch.float64), baseline="grey")
        else:
            salience.explain(tiny_cnn, x, 0, where, baseline="grey")
    message = str(err.value)
    allowed = [b for b in BASELINES if b != "black"] if where == "deletion" else BASELINES
    assert choices(allowed) in message
