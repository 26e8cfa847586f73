"""A corpus of hostile and odd inputs through a whole audit: every good image gets a prediction,
every bad one a row whose error names the cause, nothing aborts, and the shards stay readable."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.audit_helpers import TinyModel, image
from PIL import Image
from test_audit_inputs import huge_png

from salience.audit import audit
from salience.data import read_dataset
from salience.store import Run

ROOT_READS_ANYTHING = os.geteuid() == 0 if hasattr(os, "geteuid") else False
WEIRD_NAME = 'comma, "quote"\nnewline.png'


def wide_png(width: int = 1, height: int = 20000) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _good(folder: Path) -> list[str]:
    """Readable files of every awkward kind; returns their names."""
    image(1).save(folder / "ok.png")
    image(2).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.arange(320, dtype=np.uint16).reshape(16, 20) * 200).save(
        folder / "deep16.png"
    )
    pal = image(3).convert("P")
    pal.save(folder / "palette_alpha.png", transparency=0)
    Image.new("RGB", (1, 1), (9, 99, 199)).save(folder / "one_pixel.png")
    frames = [image(4), image(5)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    image(6).save(folder / WEIRD_NAME)
    return ["ok.png", "cmyk.jpg", "deep16.png", "palette_alpha.png", "one_pixel.png", "anim.gif"]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    ant, bee = root / "ant", root / "bee"
    ant.mkdir(parents=True)
    bee.mkdir()
    _good(ant)
    (bee / "empty.png").write_bytes(b"")
    full = io.BytesIO()
    image(7, (64, 64)).save(full, format="PNG")
    (bee / "truncated.png").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (bee / "text.jpg").write_text("plain text with an image's name")
    (bee / "bomb.png").write_bytes(huge_png(40000, 40000))
    (bee / "wide.png").write_bytes(wide_png())
    Image.fromarray(np.full((8, 8), np.nan, np.float32), "F").save(bee / "nan.tiff")
    image(8).save(bee / "noperm.png")
    os.chmod(bee / "noperm.png", 0)
    os.symlink("missing.png", bee / "dangling.png")
    os.symlink("loop.png", bee / "loop.png")
    with open(os.path.join(os.fsencode(bee), b"bad\xff.png"), "wb") as f:
        image(9).save(f, format="PNG")
    latin = os.path.join(os.fsencode(root), b"caf\xe9")  # a class folder named in Latin-1
    os.mkdir(latin)
    image(10).save(os.path.join(latin, b"x.png").decode(errors="surrogateescape"))
    os.symlink("loop", root / "loop")  # a looping link where class folders are listed
    return root


def test_hostile_corpus_is_recorded_row_by_row(corpus: Path, tmp_path: Path) -> None:
    assert len(wide_png()) < 400  # a few hundred bytes that would ask for gigabytes
    summary = audit(TinyModel(), corpus, tmp_path / "run", ["gradcam"], batch_size=4, workers=0)
    run = Run.open(tmp_path / "run")
    df = run.samples().set_index("path")
    assert run.status == "complete" and df["sample_id"].is_unique
    good = [f"ant/{n}" for n in ["ok.png", "cmyk.jpg", "deep16.png", "palette_alpha.png"]]
    good += ["ant/one_pixel.png", "ant/anim.gif", f"ant/{WEIRD_NAME}"]
    if ROOT_READS_ANYTHING:  # root reads a chmod 000 file: it is simply a good image
        good.append("bee/noperm.png")
    assert df.loc[good, "pred"].notna().all() and df.loc[good, "error"].isna().all()
    errors = df["error"].dropna().to_dict()
    expected = {
        "bee/empty.png": ("empty file", "0 bytes"),
        "bee/truncated.png": ("truncated or corrupt", "truncated"),
        "bee/text.jpg": ("not an image", "not an image"),
        "bee/bomb.png": ("too large", "too large to decode safely"),
        "bee/wide.png": ("too large", "aspect ratio of 20,000:1"),
        "bee/nan.tiff": ("no finite pixels", "NaN"),
        "bee/dangling.png": ("missing file", "symbolic link to 'missing.png'"),
        "bee/loop.png": ("symlink loop", "leads back to itself"),
        "bee/bad\\xff.png": ("bad file name", "not valid UTF-8"),
        "caf\\xe9/x.png": ("bad file name", "not valid UTF-8"),
    }
    if not ROOT_READS_ANYTHING:
        expected["bee/noperm.png"] = ("permission denied", "permission denied")
    assert set(errors) == set(expected)
    for path, (kind, cause) in expected.items():
        assert errors[path].startswith(kind + ":") and cause in errors[path], errors[path]
    assert df.loc[list(expected), "pred"].isna().all()
    assert df.loc["caf\\xe9/x.png", "label"] == "caf\\xe9"
    kinds = {kind for kind, _ in expected.values()}
    assert set(summary["skipped"]["reasons"]) == kinds
    assert summary["skipped"]["total"] == len(expected)
    assert summary["predicted"] == len(good)
    for shard in (tmp_path / "run").rglob("*.parquet"):
        assert pq.read_table(shard).num_rows > 0
    deep = np.asarray(run.view_image(str(df.loc["ant/deep16.png", "sample_id"])))
    assert 0 < deep.mean() < 255  # 16-bit scaled from its full range, not clipped


def _manifest_corpus(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    for k in range(4):
        image(20 + k).save(images / f"{k}.png")
    a = str(images / "0.png")
    rows = [
        (a, "ant", "X1", "x1"),
        (str(images / "1.png"), "bee", "X2", "x2"),
        (a, "ant", "X1", "x1"),  # the same row again
        (str(images / "2.png"), "ant", None, None),
        (str(images / "2.png"), "bee", None, None),  # same image, another label
        (str(images / "3.png") + "\x00" + "1", "cat", None, None),  # spells a repeat's key
        (str(images / "3.png"), "cat", None, None),
    ]
    frame = pd.DataFrame(rows, columns=["path", "label", "Camera Model", "camera-model"])
    manifest = tmp_path / "lists" / "m.parquet"
    manifest.parent.mkdir()
    frame.to_parquet(manifest)
    return manifest, images


def test_manifest_repeats_nul_paths_and_colliding_columns(tmp_path: Path) -> None:
    manifest, images = _manifest_corpus(tmp_path)
    ds = read_dataset(manifest)
    assert ds.root == images.resolve()  # the common parent of its absolute paths
    assert ds.items[0].meta == (("meta_camera_model", "X1"), ("meta_camera_model_2", "x1"))
    assert any("'camera-model' is stored as meta_camera_model_2" in n for n in ds.notes)
    summary = audit(TinyModel(), manifest, tmp_path / "run", ["gradient"], workers=0)
    df = Run.open(tmp_path / "run").samples()
    assert len(df) == 7 and df["sample_id"].is_unique
    errors = df["error"].tolist()
    assert df["error"].isna().tolist() == [True, True, False, False, False, False, True]
    assert errors[2] == "duplicate row: row 3 repeats '0.png' of row 1"
    assert errors[3] == errors[4]
    assert errors[3].startswith("conflicting labels: '2.png' is labelled 'ant' (row 4), 'bee'")
    assert errors[5].startswith("bad path:") and "NUL byte" in errors[5]
    assert "\x00" not in "".join(df["path"])
    assert df["pred"].notna().tolist() == [True, True, False, False, False, False, True]
    assert df["meta_camera_model_2"].tolist()[:2] == ["x1", "x2"]
    assert summary["skipped"]["reasons"] == {
        "conflicting labels": 2,
        "bad path": 1,
        "duplicate row": 1,
    }
    assert Run.open(tmp_path / "run").manifest["notes"] == ds.notes


_CEILING = """
import resource, sys, threading
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from PIL import Image
from helpers.audit_helpers import TinyModel
from salience.audit import audit
from salience.errors import ImageTooLargeError
from salience.images import load_image
from salience.models.preprocess import Preprocess
from salience.store import Run

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

pre = Preprocess(size=16, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)
model = TinyModel(preprocess=pre)
limit = vm_bytes() + {extra}
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
tall = Image.new("RGB", (1, 20000))
try:  # control: without the cap the same resize needs ~3.9 GB and fails under the ceiling
    Preprocess(size=16, resize=256, max_side=10**9).view(tall)
    print("control: no MemoryError")
except MemoryError:
    print("control: MemoryError")
for call in (lambda: load_image({wide!r}), lambda: pre.view(tall)):
    try:
        call()
    except ImageTooLargeError as exc:
        print("refused:", exc)
summary = audit(model, {data!r}, {out!r}, ["gradcam"], workers=0)
df = Run.open({out!r}).samples()
print("audit:", summary["skipped"]["reasons"], df["error"].dropna().tolist())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_extreme_aspect_ratio_stays_under_a_memory_ceiling(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data" / "c"
    data.mkdir(parents=True)
    (data / "wide.png").write_bytes(wide_png())
    image(2).save(data / "ok.png")
    script = _CEILING.format(
        tests=str(Path(__file__).parent),
        extra=1536 * 2**20,
        wide=str(data / "wide.png"),
        data=str(data.parent),
        out=str(tmp_path / "run"),
    )
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "control: MemoryError", done.stdout  # the ceiling really binds
    assert "1x20000, an aspect ratio of 20,000:1, above the limit of 64:1" in lines[1]
    assert "would be 256x5120000, above the limit of 16384 pixels a side" in lines[2]
    assert lines[3].startswith("audit: {'too large': 1} ['too large:"), lines[3]


def test_csv_names_with_commas_quotes_and_newlines(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = [*_good(folder), WEIRD_NAME]
    paths = [f"imgs/{n}" for n in names]
    frame = pd.DataFrame({"path": paths, "label": ["ant"] * len(names), "note": names})
    frame.to_csv(tmp_path / "m.csv", index=False)
    assert '"comma, ""quote""\nnewline.png"' in (tmp_path / "m.csv").read_text()
    audit(TinyModel(), tmp_path / "m.csv", tmp_path / "run", ["gradient"], workers=0)
    df = Run.open(tmp_path / "run").samples()
    assert df["path"].tolist() == paths
    assert df["meta_note"].tolist() == names
    assert df["error"].isna().all() and df["pred"].notna().all()
