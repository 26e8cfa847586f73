"""A damaged run file is reported in one line naming it; an audit rerun recomputes exactly the
damaged shards and ends equal to an uninterrupted run."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.audit_helpers import TinyModel, make_folder
from helpers.run_checks import assert_same_run as same_run
from typer.testing import CliRunner

from salience.audit import audit
from salience.cli import app
from salience.errors import DamagedRunError
from salience.store import Run
from salience.store.layout import CHECKS, map_file, samples_file, stats_file

METHODS = ["gradcam", "gradient"]
OPTIONS = {"batch_size": 2, "shard_size": 3, "map_size": 8, "workers": 0}  # 12 images: 4 shards


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(data, run)``: an uninterrupted run, copied by each test before damaging it."""
    root = tmp_path_factory.mktemp("damage")
    data = make_folder(root / "data", per_class=4)
    audit(TinyModel(), data, root / "ref", METHODS, **OPTIONS)  # type: ignore[arg-type]
    return data, root / "ref"


def copy_of(reference: tuple[Path, Path], tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(reference[1], out)
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path, at: int = -40) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def assert_same_run(a: Run, b: Run) -> None:
    same_run(a, b, METHODS)


def one_line(exc: pytest.ExceptionInfo[DamagedRunError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda run: samples_file(run, 1), "samples shard 1 (samples/part-00001.parquet)"),
        (lambda run: stats_file(run, 2), "statistics shard 2 (stats/part-00002.parquet)"),
    ],
    ids=["samples", "stats"],
)
def test_truncated_table_is_named_on_open(
    reference: tuple[Path, Path], tmp_path: Path, damage: object, named: str
) -> None:
    run = copy_of(reference, tmp_path)
    truncate(damage(run))  # type: ignore[operator]
    with pytest.raises(DamagedRunError) as exc:
        Run.open(run)
    text = one_line(exc)
    assert named in text and "is truncated or corrupt" in text
    assert text.startswith(f"run {run.resolve()}:") and "rerun the audit command" in text
    Run.open(reference[1]).samples()  # every other run keeps working


def test_truncated_map_is_named_when_read(reference: tuple[Path, Path], tmp_path: Path) -> None:
    run = copy_of(reference, tmp_path)
    map_file(run, "gradient", 3).write_bytes(map_file(run, "gradient", 3).read_bytes() + b"x")
    opened = Run.open(run)  # map files are checked when first read, not on open
    sid = opened.samples()["sample_id"].iloc[10]
    with pytest.raises(DamagedRunError) as exc:
        opened.saliency(sid, "gradient")
    text = one_line(exc)
    assert "gradient map shard 3 (maps/gradient/part-00003.npy) is truncated or corrupt" in text
    opened.saliency(sid, "gradcam")  # the other method's maps are intact


def test_readers_name_the_file_when_no_record_says_its_size(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    """A run written before records existed: the failed DuckDB or numpy read is diagnosed."""
    run = copy_of(reference, tmp_path)
    shutil.rmtree(run / CHECKS)
    opened = Run.open(run)
    ids = opened.samples()["sample_id"].tolist()
    truncate(stats_file(run, 1))
    with pytest.raises(DamagedRunError, match=r"statistics shard 1 \(stats/part-00001"):
        opened.stats("gradcam")
    with pytest.raises(DamagedRunError, match="statistics shard 1"):
        opened.query(method="gradcam")
    truncate(map_file(run, "gradcam", 2))
    with pytest.raises(DamagedRunError, match=r"gradcam map shard 2 \(maps/gradcam/part-00002"):
        opened.saliency(ids[7], "gradcam")
    shutil.copy(stats_file(reference[1], 1), stats_file(run, 1))
    truncate(samples_file(run, 3))
    with pytest.raises(DamagedRunError, match="samples shard 3") as exc:
        opened.samples()
    one_line(exc)


def test_garbage_manifest_and_index(reference: tuple[Path, Path], tmp_path: Path) -> None:
    run = copy_of(reference, tmp_path)
    (run / "index.npz").write_bytes(b"not a zip")  # derived: readers scan the shards instead
    opened = Run.open(run)
    sid = opened.samples()["sample_id"].iloc[5]
    np.testing.assert_array_equal(
        opened.saliency(sid, "gradcam"), Run.open(reference[1]).saliency(sid, "gradcam")
    )
    (run / "run.json").write_text('{"salience": "0.1", "meth')
    with pytest.raises(DamagedRunError, match=r"run\.json is damaged") as exc:
        Run.open(run)
    one_line(exc)


def test_checksum_finds_a_flipped_byte_that_keeps_the_size(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    run = copy_of(reference, tmp_path)
    flip_byte(map_file(run, "gradcam", 1))
    opened = Run.open(run)  # sizes agree: opening stays cheap and succeeds
    with pytest.raises(DamagedRunError, match=r"gradcam map shard 1 .* checksum differs"):
        opened.verify()


def test_resume_recomputes_exactly_the_damaged_shards(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ref = reference
    run = copy_of(reference, tmp_path)
    truncate(samples_file(run, 1))
    truncate(stats_file(run, 2))
    flip_byte(map_file(run, "gradient", 3))  # same size: only the checksum tells
    untouched = {p: p.stat().st_mtime_ns for p in (run / "maps").rglob("part-00000.npy")}
    untouched[samples_file(run, 0)] = samples_file(run, 0).stat().st_mtime_ns
    before = {s: samples_file(run, s).stat().st_mtime_ns for s in (2, 3)}

    audit(TinyModel(), data, run, METHODS, **OPTIONS)  # type: ignore[arg-type]

    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # shard 0 not rewritten
    assert all(samples_file(run, s).stat().st_mtime_ns != t for s, t in before.items())
    assert_same_run(Run.open(run), Run.open(ref))
    for shard in range(4):
        for path in (samples_file, stats_file):
            assert path(run, shard).read_bytes() == path(ref, shard).read_bytes()
        assert map_file(run, "gradient", shard).read_bytes() == (
            map_file(ref, "gradient", shard).read_bytes()
        )


def test_resume_of_a_complete_run_with_a_truncated_map(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    """The case that used to say "complete" while overlays failed."""
    data, ref = reference
    run = copy_of(reference, tmp_path)
    truncate(map_file(run, "gradcam", 2))
    audit(TinyModel(), data, run, METHODS, **OPTIONS)  # type: ignore[arg-type]
    assert_same_run(Run.open(run), Run.open(ref))


@pytest.mark.parametrize("command", ["shortcuts", "compare"])
def test_cli_on_a_damaged_run_prints_one_line(
    reference: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    run = copy_of(reference, tmp_path)
    truncate(samples_file(run, 2))
    args = [command, str(run), "--out", str(tmp_path / "out.json")]
    if command == "compare":
        args.insert(1, str(reference[1]))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) <= 2 and "Traceback" not in result.output  # rich may wrap the line
    assert "samples shard 2" in " ".join(lines).replace("\n", "")


def test_record_lists_every_file_of_the_shard(reference: tuple[Path, Path]) -> None:
    record = json.loads((reference[1] / CHECKS / "part-00001.json").read_text())
    assert set(record["files"]) == {
        "samples/part-00001.parquet",
        "stats/part-00001.parquet",
        "maps/gradcam/part-00001.npy",
        "maps/gradient/part-00001.npy",
    }
    size, crc = record["files"]["samples/part-00001.parquet"]
    assert size == samples_file(reference[1], 1).stat().st_size
    assert crc == zlib.crc32(samples_file(reference[1], 1).read_bytes())
