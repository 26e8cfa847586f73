"""``salience slices``: a metadata group whose images differ is flagged, chance groups are not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers.audit_helpers import CLASSES, image
from helpers.monitor_helpers import tiny_model
from PIL import Image
from typer.testing import CliRunner

from salience.audit import audit
from salience.cli import app
from salience.monitor import slices


def make_run(tmp: Path) -> Path:
    """90 labelled images from three cameras; camera "c" stamps a white corner on its images."""
    root = tmp / "data"
    root.mkdir()
    rows = ["path,label,camera"]
    for i in range(90):
        camera = "abc"[i % 3]
        arr = np.asarray(image(300 + i)).copy()
        if camera == "c":
            arr[:7, :7] = 255
        Image.fromarray(arr).save(root / f"{i}.png")
        rows.append(f"{i}.png,{CLASSES[(i // 3) % 3]},{camera}")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    out = tmp / "run"
    audit(tiny_model(tmp), root / "m.csv", out, ["gradcam"], map_size=8, workers=0)
    return out


def test_the_different_group_is_flagged_and_the_others_are_not(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    result = slices(run, "camera")
    assert result["column"] == "meta_camera" and result["flagged"] == ["c"]
    groups = {g["value"]: g for g in result["groups"]}
    assert groups["c"]["tested"] and groups["c"]["n"] == 30
    assert any(r.startswith(("ks_gradcam", "mmd_gradcam")) for r in groups["c"]["reasons"])
    assert groups["a"]["accuracy"] is not None and "accuracy" in groups["a"]["tests"]

    res = CliRunner().invoke(app, ["slices", str(run), "--by", "camera", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["flagged"] == ["c"]
    assert json.loads((run / "slices-camera.json").read_text())["flagged"] == ["c"]
    bad = CliRunner().invoke(app, ["slices", str(run), "--by", "lens"])
    assert bad.exit_code == 2 and "meta_camera" in bad.output
