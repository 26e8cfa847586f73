"""A run audited with a model that ``salience.load_model`` can load again (a FILE.py:factory
of the tiny test net), for the explorer's live mode: any class, any method, on demand."""

from __future__ import annotations

from pathlib import Path

from audit_helpers import CLASSES, make_folder

from salience.audit import audit
from salience.models import LoadedModel, load_model

FACTORY = """
import sys
import torch
sys.path.insert(0, {tests!r})
from audit_helpers import TinyNet

def build():
    return TinyNet()

def other():
    net = TinyNet()
    with torch.no_grad():
        net.fc.bias += 1.0
    return net
"""
PREPROCESS = "half:size=16,resize=16"
METHODS = ["gradcam", "gradient"]
MAP_SIZE = 8


def model_file(tmp: Path) -> Path:
    path = tmp / "tiny_live.py"
    path.write_text(FACTORY.format(tests=str(Path(__file__).parent)))
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
