"""Bad and unusual files: converted when readable, recorded with the reason otherwise."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.audit_helpers import TinyModel, image, region_mask
from PIL import Image

from salience.audit import audit
from salience.audit.decode import error_kind
from salience.store import Run


def huge_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (the data is a few bytes)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    ant, bee = root / "ant", root / "bee"
    ant.mkdir(parents=True)
    bee.mkdir()
    image(1).save(ant / "ok.png")
    full = io.BytesIO()
    image(2, (64, 64)).save(full, format="PNG")
    (ant / "truncated.png").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (ant / "empty.png").write_bytes(b"")
    (ant / "text.png").write_text("not an image at all")
    (ant / "huge.png").write_bytes(huge_png(30000, 30000))
    image(3).convert("CMYK").save(bee / "cmyk.jpg")
    Image.fromarray(np.arange(320, dtype=np.uint16).reshape(16, 20) * 200).save(bee / "deep.png")
    image(4).convert("L").save(bee / "grey.png")
    image(5).convert("RGBA").save(bee / "alpha.png")
    image(6).save(bee / "misnamed.jpg", format="PNG")
    image(7).save(bee / "noext", format="PNG")
    Image.fromarray(region_mask()).save(bee / "grey.mask.png")
    Image.fromarray(np.ones((5, 5), np.uint8)).save(bee / "alpha.mask.png")  # wrong size
    (root / "regions.json").write_text(json.dumps({"1": "head", "2": "uniform"}))
    return root


def test_bad_files_are_recorded_and_the_run_goes_on(messy: Path, tmp_path: Path) -> None:
    summary = audit(
        TinyModel(), messy, tmp_path / "run", ["gradcam"], batch_size=3, shard_size=4, workers=2
    )
    run = Run.open(tmp_path / "run")
    df = run.samples().set_index("path")
    assert len(df) == 11 and run.status == "complete"
    kinds = df.error.dropna().map(lambda e: e.split(":", 1)[0]).to_dict()
    assert kinds == {
        "ant/truncated.png": "truncated or corrupt",
        "ant/empty.png": "empty file",
        "ant/text.png": "not an image",
        "ant/huge.png": "too large",
    }
    converted = [
        "ant/ok.png",
        "bee/cmyk.jpg",
        "bee/deep.png",
        "bee/grey.png",
        "bee/alpha.png",
        "bee/misnamed.jpg",
        "bee/noext",
    ]
    assert df.loc[converted, "pred"].notna().all()
    assert df.loc[converted, "error"].isna().all()
    assert (df.loc[converted, ["width", "height"]].to_numpy() == [20, 16]).all()
    assert df.loc["bee/misnamed.jpg", "warning"] == "mis-named: bee/misnamed.jpg holds PNG data"
    assert df.loc["bee/alpha.png", "warning"].startswith("mask size")
    assert summary["skipped"]["total"] == 4
    assert summary["skipped"]["reasons"] == {
        "empty file": 1,
        "not an image": 1,
        "too large": 1,
        "truncated or corrupt": 1,
    }
    assert summary["warnings"] == {"mask size": 1, "mis-named": 1}
    st = run.stats("gradcam").set_index("sample_id")
    grey, alpha = df.loc["bee/grey.png", "sample_id"], df.loc["bee/alpha.png", "sample_id"]
    assert not pd.isna(st.loc[grey, "share_head"]) and pd.isna(st.loc[alpha, "share_head"])
    assert st.loc[df.loc["ant/empty.png", "sample_id"], "error"].startswith("no map: empty file")
    # a 16-bit image is scaled from its full range, not clipped at 255
    deep = Run.open(tmp_path / "run").view_image(df.loc["bee/deep.png", "sample_id"])
    assert 0 < np.asarray(deep).mean() < 255


def test_error_kinds() -> None:
    assert error_kind("image x.png is empty (0 bytes)") == "empty file"
    assert error_kind("weird failure") == "unreadable"


def test_error_kind_ignores_words_in_the_path(tmp_path: Path) -> None:
    from salience.audit.decode import DecodeStage
    from salience.data.dataset import Item

    folder = tmp_path / "empty"
    folder.mkdir()
    full = io.BytesIO()
    image(2, (64, 64)).save(full, format="PNG")
    (folder / "too large.png").write_bytes(full.getvalue()[:100])
    items = [Item("empty/too large.png", "ant")]
    stage = DecodeStage(items, tmp_path, TinyModel().preprocess, (8, 8), [])
    error = stage[0].error
    assert error is not None and error.startswith("truncated or corrupt: empty/too large.png")
