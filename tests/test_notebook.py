"""Notebooks: salience.show() crops like the model, explains, and renders itself as a PNG;
executed for real in a Jupyter kernel through nbclient."""

from __future__ import annotations

import base64
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import salience
from salience.data.samples import write_sample
from salience.errors import SalienceError
from salience.notebook import Explanation

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def loaded() -> salience.LoadedModel:
    return salience.load_model("efficientnet_lite0")


def test_show_crops_like_the_model_and_equals_explain(
    loaded: salience.LoadedModel, tmp_path: Path
) -> None:
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8))
    shown = salience.show(loaded, wide, ["gradcam", "gradient"])
    assert isinstance(shown, Explanation)
    assert shown.view.size == (224, 224)  # the centre crop, not the 320x180 photo
    x = loaded.preprocess(wide).unsqueeze(0)
    with torch.no_grad():
        predicted = int(loaded.module(x).argmax())
    assert shown.explained.index == predicted
    expected = salience.explain(loaded, x, predicted, "gradcam")[0].numpy()
    assert np.allclose(shown.maps["gradcam"], expected, atol=1e-5)
    assert shown._repr_png_().startswith(PNG)
    assert shown.class_name in repr(shown) and "\n" not in repr(shown)
    assert shown.save(tmp_path / "fig.png").read_bytes().startswith(PNG)


def test_show_by_class_name_and_errors(loaded: salience.LoadedModel, tmp_path: Path) -> None:
    path = write_sample(tmp_path)
    zebra = salience.show(loaded, path, "gradcam", target="zebra")
    assert zebra.class_name == "zebra"
    with pytest.raises(SalienceError, match="LoadedModel"):
        salience.show(loaded.module, path)  # type: ignore[arg-type]
    with pytest.raises(SalienceError, match="did you mean"):
        salience.show(loaded, path, "gradcam", target="zebar")


NOTEBOOK = """
import salience
loaded = salience.load_model("efficientnet_lite0")
salience.show(loaded, {path!r}, "gradcam")
"""


def test_show_renders_inline_in_a_real_kernel(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = write_sample(tmp_path)
    source = textwrap.dedent(NOTEBOOK.format(path=str(path))).strip()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3")
    client.km_kwargs = {
        "kernel_cmd": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    }
    client.execute(cwd=str(tmp_path))
    outputs = nb.cells[0].outputs
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, outputs
    assert base64.b64decode(images[0]).startswith(PNG)
