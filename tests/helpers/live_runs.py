"""A run audited with a model that ``salience.load_model`` can load again (a FILE.py:factory
of the tiny test net), for the explorer's live mode: any class, any method, on demand."""

from __future__ import annotations

from pathlib import Path

from helpers.audit_helpers import CLASSES, make_folder
from salience.audit import audit
from salience.models import LoadedModel, load_model

FACTORY = """
import sys
import torch
sys.path.insert(0, {tests!r})
from helpers.audit_helpers import TinyNet

def build():
    return TinyNet()

def other():
    net = TinyNet()
    with torch.no_grad():
        net.fc.bias += 1.0
    return net

def figures():
    return TinyNet(classes=4)
"""
PREPROCESS = "half:size=16,resize=16"
METHODS = ["gradcam", "gradient"]
MAP_SIZE = 8


def model_file(tmp: Path) -> Path:
    path = tmp / "tiny_live.py"
    path.write_text(FACTORY.format(tests=str(Path(__file__).parents[1])))
    return path


def tiny(tmp: Path, factory: str = "build") -> LoadedModel:
    spec = f"{model_file(tmp)}:{factory}"
    return load_model(spec, preprocess=PREPROCESS, class_names=list(CLASSES))


def live_run(tmp: Path) -> Path:
    """A complete run of the tiny model (gradcam and gradient, stored at 8x8) over 12 images."""
    data = make_folder(tmp / "data", per_class=4, masks=True)
    out = tmp / "runs" / "live"
    audit(tiny(tmp), data, out, METHODS, map_size=MAP_SIZE, workers=0, batch_size=16)
    return out


def figure_run(tmp: Path) -> Path:
    """The demo's figures (32 px, head and uniform masks) audited by the tiny model with
    gradcam, gradient and integrated gradients, maps stored at 8x8: a run that looks like one."""
    from helpers.explorer_runs import make_data
    from salience.data.demo import DEFAULT_CLASSES

    data = make_data(tmp / "figures", n=24)
    spec = f"{model_file(tmp)}:figures"
    loaded = load_model(
        spec, preprocess="half:size=32,resize=32", class_names=list(DEFAULT_CLASSES)
    )
    out = tmp / "runs" / "figures"
    methods = ["gradcam", "gradient", "integrated_gradients"]
    audit(loaded, data, out, methods, map_size=MAP_SIZE, workers=0, batch_size=16)
    return out
