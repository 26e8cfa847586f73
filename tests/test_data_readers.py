"""Image folders, manifests, masks and boxes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from salience.audit.plan import sample_ids
from salience.data import Item, read_dataset, refused
from salience.data.dataset import relative_to_root
from salience.data.manifest import meta_names, parse_boxes
from salience.data.masks import boxes_mask, read_mask, region_map, remap
from salience.errors import SalienceError


def png(path: Path, size: tuple[int, int] = (8, 6), value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def test_folder_classes_order_masks_and_notes(tmp_path: Path) -> None:
    png(tmp_path / "dog" / "b.png")
    png(tmp_path / "dog" / "a.png")
    png(tmp_path / "cat" / "sub" / "c.png")
    (tmp_path / "cat" / "noext").write_bytes((tmp_path / "dog" / "a.png").read_bytes())
    (tmp_path / "cat" / "notes.txt").write_text("hello")
    (tmp_path / "readme.md").write_text("top level")
    Image.fromarray(np.ones((6, 8), np.uint8)).save(tmp_path / "dog" / "a.mask.png")
    (tmp_path / "regions.json").write_text(json.dumps({"1": "head"}))
    ds = read_dataset(tmp_path)
    assert ds.kind == "folder" and ds.labels == ["cat", "dog"]
    assert [i.path for i in ds.items] == ["cat/noext", "cat/sub/c.png", "dog/a.png", "dog/b.png"]
    assert [i.label for i in ds.items] == ["cat", "cat", "dog", "dog"]
    a = ds.items[2]
    assert a.mask == "dog/a.mask.png" and a.legend == ((1, "head"),)
    assert ds.regions() == ["background", "head"]
    assert any(".txt" in n for n in ds.notes) and any("directly in the root" in n for n in ds.notes)
    assert ds.sha256() == read_dataset(tmp_path).sha256()


def test_folder_symlink_outside_root_is_an_error_item(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    png(outside)
    png(tmp_path / "data" / "cls" / "ok.png")
    os.symlink(outside, tmp_path / "data" / "cls" / "link.png")
    ds = read_dataset(tmp_path / "data")
    errors = {i.path: i.error for i in ds.items}
    assert errors["cls/ok.png"] is None
    assert errors["cls/link.png"] is not None and errors["cls/link.png"].startswith("outside root")


def test_folder_without_classes_is_refused(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    with pytest.raises(SalienceError, match="class sub-folders"):
        read_dataset(tmp_path)


def test_manifest_columns_meta_masks_and_outside_paths(tmp_path: Path) -> None:
    png(tmp_path / "img" / "a.png")
    png(tmp_path / "img" / "b.png")
    png(tmp_path / "img" / "c.png")
    Image.fromarray(np.full((6, 8), 2, np.uint8)).save(tmp_path / "img" / "a_mask.png")
    (tmp_path / "img" / "a_mask.json").write_text(json.dumps({"2": "uniform"}))
    rows = [
        {
            "file": "img/a.png",
            "class_name": "chef",
            "mask": "img/a_mask.png",
            "split": "test",
            "Camera Model": "X1",
            "boxes": None,
        },
        {
            "file": "img/b.png",
            "class_name": "nurse",
            "mask": None,
            "split": "train",
            "Camera Model": None,
            "boxes": json.dumps({"head": [0, 0, 2, 2]}),
        },
        {
            "file": "../secret.png",
            "class_name": "chef",
            "mask": None,
            "split": None,
            "Camera Model": None,
            "boxes": None,
        },
        {
            "file": str(tmp_path / "img" / "c.png"),
            "class_name": "x",
            "mask": None,
            "split": None,
            "Camera Model": None,
            "boxes": "[[1, 1]]",
        },
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    ds = read_dataset(tmp_path / "m.csv")
    a, b, secret, absolute = ds.items
    assert (a.path, a.label, a.split, a.mask, a.legend) == (
        "img/a.png",
        "chef",
        "test",
        "img/a_mask.png",
        ((2, "uniform"),),
    )
    assert a.meta == (("meta_camera_model", "X1"),)
    assert b.meta == (("meta_camera_model", None),) and b.boxes == (("head", 0, 0, 2, 2),)
    assert secret.error is not None and "outside the data root" in secret.error
    assert absolute.path == "img/c.png" and absolute.error is None
    assert absolute.warning is not None and "boxes ignored" in absolute.warning
    assert ds.regions() == ["background", "uniform", "head"]
    assert ds.root == tmp_path.resolve() and ds.source_sha256 is not None
    # parquet gives the same items
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    assert read_dataset(tmp_path / "m.parquet").sha256() == ds.sha256()


def test_manifest_without_path_column_or_legend(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SalienceError, match="no path column"):
        read_dataset(tmp_path / "bad.csv")
    png(tmp_path / "a.png")
    Image.fromarray(np.ones((6, 8), np.uint8)).save(tmp_path / "a_m.png")
    pd.DataFrame({"path": ["a.png"], "label": ["c"], "mask": ["a_m.png"]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    item = read_dataset(tmp_path / "m.csv").items[0]
    assert item.mask is None and item.warning is not None and "no legend" in item.warning


def test_unknown_data_path(tmp_path: Path) -> None:
    with pytest.raises(SalienceError, match="does not exist"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SalienceError, match="cannot read"):
        read_dataset(tmp_path / "x.json")


def test_parse_boxes_forms() -> None:
    assert parse_boxes("[[0, 0, 1, 2]]") == (("box", 0, 0, 1, 2),)
    assert parse_boxes('[{"box": [0, 0, 1, 2], "label": "hat"}]') == (("hat", 0, 0, 1, 2),)
    assert parse_boxes('{"a": [[0,0,1,1],[2,2,3,3]], "b": [0,0,4,4]}') == (
        ("a", 0, 0, 1, 1),
        ("a", 2, 2, 3, 3),
        ("b", 0, 0, 4, 4),
    )
    for bad in ("[[0, 0, 0, 2]]", "3", "[]", "{nope"):
        with pytest.raises(SalienceError):
            parse_boxes(bad)


def test_boxes_mask_and_remap() -> None:
    m = boxes_mask((("a", 0.5, 0, 2, 1), ("b", 1, 0, 3, 3)), (4, 3), {"a": 1, "b": 2})
    expected = np.array([[1, 2, 2, 0], [0, 2, 2, 0], [0, 2, 2, 0]])
    np.testing.assert_array_equal(m, expected)
    values = np.array([[0, 5, 7], [9, 5, 0]])
    out, warning = remap(values, ((5, "head"), (7, "uniform")), {"head": 2, "uniform": 1})
    np.testing.assert_array_equal(out, [[0, 2, 1], [0, 2, 0]])
    assert warning is not None and "9" in warning


def test_read_mask_modes(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(arr).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png"), arr)
    Image.fromarray(np.stack([arr] * 3, -1)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "grey_rgb.png"), arr)
    colour = np.stack([arr, arr + 1, arr], -1)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    with pytest.raises(SalienceError, match="single-channel"):
        read_mask(tmp_path / "rgb.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(SalienceError, match="unreadable mask"):
        read_mask(tmp_path / "zero.png")


def test_region_map_wrong_size_is_a_warning(tmp_path: Path) -> None:
    png(tmp_path / "c" / "a.png", size=(8, 6))
    Image.fromarray(np.ones((5, 5), np.uint8)).save(tmp_path / "c" / "a.mask.png")
    (tmp_path / "regions.json").write_text(json.dumps({"1": "head"}))
    item = read_dataset(tmp_path).items[0]
    regions, warning = region_map(tmp_path, item, (8, 6), {"background": 0, "head": 1})
    assert regions is None and warning is not None and warning.startswith("mask size")
    regions, warning = region_map(tmp_path, item, (5, 5), {"background": 0, "head": 1})
    assert warning is None and regions is not None and (regions == 1).all()


def test_manifest_with_a_separate_data_root(tmp_path: Path) -> None:
    png(tmp_path / "images" / "c" / "a.png")
    (tmp_path / "lists").mkdir()
    pd.DataFrame({"path": ["c/a.png", "../lists/x.png"], "label": ["c", "c"]}).to_csv(
        tmp_path / "lists" / "m.csv", index=False
    )
    ds = read_dataset(tmp_path / "lists" / "m.csv", root=tmp_path / "images")
    assert ds.root == (tmp_path / "images").resolve()
    assert ds.items[0].error is None and ds.items[1].error is not None
    with pytest.raises(SalienceError, match="only for manifests"):
        read_dataset(tmp_path / "images", root=tmp_path)


def test_folder_loops_and_undecodable_names_are_error_items(tmp_path: Path) -> None:
    png(tmp_path / "cls" / "ok.png")
    os.symlink("loop.png", tmp_path / "cls" / "loop.png")
    with open(os.path.join(os.fsencode(tmp_path / "cls"), b"caf\xe9.png"), "wb") as f:
        Image.new("RGB", (2, 2)).save(f, format="PNG")
    ds = read_dataset(tmp_path)
    errors = {i.path: i.error for i in ds.items}
    assert errors["cls/ok.png"] is None
    assert errors["cls/loop.png"] is not None and errors["cls/loop.png"].startswith("symlink loop:")
    bad = errors["cls/caf\\xe9.png"]
    assert bad is not None and bad.startswith("bad file name:") and "UTF-8" in bad
    assert len(set(sample_ids(ds.items))) == 3


def test_sample_ids_are_unique_even_for_paths_spelling_a_repeat() -> None:
    items = [
        Item("a.png", None),
        Item("a.png", None),
        Item("a.png\x001", None),
        Item("\udcff", None),
    ]
    ids = sample_ids(items)
    assert len(set(ids)) == 4
    assert ids[:2] == sample_ids(items[:2])  # ids of earlier items do not depend on later ones


def test_relative_to_root_refuses_nul_and_loops(tmp_path: Path) -> None:
    path, error = relative_to_root(tmp_path, "a\x00b.png")
    assert path == "a\\x00b.png" and error is not None and error.startswith("bad path:")
    os.symlink("x", tmp_path / "x")
    path, error = relative_to_root(tmp_path, "x/y.png")
    assert error is not None and error.startswith("symlink loop:")
    assert relative_to_root(tmp_path, "sub/../c.png") == ("c.png", None)
    assert relative_to_root(tmp_path / "sub", "c.png", base=tmp_path)[1] is not None


def test_refused_counts_reasons_with_an_example() -> None:
    items = [
        Item("a", None, error="outside root: '/x/a' is outside the data root '/d'"),
        Item("b", None, error="outside root: '/x/b' is outside the data root '/d'"),
        Item("c", None, error="bad path: 'c\\x00' contains a NUL byte; fix the path"),
        Item("d", None),
    ]
    assert refused(items) == (
        "3 of 4 rows refused: 2 outside root (e.g. '/x/a' is outside the data root '/d'); "
        "1 bad path (e.g. 'c\\x00' contains a NUL byte; fix the path); "
        "pass --root with the folder that holds them"
    )
    assert refused(items[3:]) is None


def test_metadata_names_repeats_and_non_utf8_manifests(tmp_path: Path) -> None:
    names, notes = meta_names(["Camera Model", "camera-model", "CAMERA_MODEL", "iso"])
    assert names == ["meta_camera_model", "meta_camera_model_2", "meta_camera_model_3", "meta_iso"]
    assert len(notes) == 2 and "'CAMERA_MODEL' is stored as meta_camera_model_3" in notes[1]
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    rows = "path,label\na.png,x\n./a.png,x\nb.png,x\nb.png,y\n"
    (tmp_path / "m.csv").write_text(rows)
    errors = [i.error for i in read_dataset(tmp_path / "m.csv").items]
    assert errors[0] is None and errors[1] == "duplicate row: row 3 repeats 'a.png' of row 2"
    assert errors[2] == errors[3] and errors[2] is not None
    assert errors[2].startswith("conflicting labels: 'b.png' is labelled 'x' (row 4), 'y' (row 5)")
    (tmp_path / "latin.csv").write_bytes("path,label\ncaf\xe9.png,x\n".encode("latin-1"))
    with pytest.raises(SalienceError, match="is not UTF-8; save it as UTF-8"):
        read_dataset(tmp_path / "latin.csv")
