"""A run as a FiftyOne dataset: labels, predictions, one ``fo.Heatmap`` per method, statistics.

Each sample's image is the model's view of the photo (resized and centre-cropped like the
preprocessing, written by :mod:`salience.export.media`), so FiftyOne, which stretches a
heatmap over the sample's image, lays every map exactly where the model looked. The original
photo's path is kept in ``source_path``. Heatmaps are 8-bit PNG files at the view's size with
``range`` set to their pixel values: ``[0, 255]`` for unsigned maps, ``[1, 255]`` for signed
ones, whose zero is the middle value 128 (the label's ``signed`` attribute says which).

Fields: ``ground_truth`` and ``predictions`` (``fo.Classification``), ``top_k``
(``fo.Classifications``), ``correct``, ``salience_id``, ``source_path``, ``error``, ``meta``
(the run's metadata columns), and per method ``saliency_<method>`` (``fo.Heatmap``) and
``stats_<method>`` (the statistics of :meth:`Run.stats`). Field names are reduced to letters,
digits and ``_``; the summary maps each method to its fields.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from salience.errors import SalienceError
from salience.export.media import Exported, Skipped, export_media, safe_name
from salience.store import Run
from salience.store.layout import write_json

INSTALL = "exporting to FiftyOne needs fiftyone: pip install 'salience[fiftyone]'"
SUMMARY = "export.json"
BATCH = 256  # samples added to the database at once
_SAMPLE_COLUMNS = ("loss", "split", "warning", "error")


def _fiftyone() -> Any:
    try:
        import fiftyone
    except ImportError:
        raise SalienceError(INSTALL) from None
    return fiftyone


def field_name(text: str, prefix: str, used: set[str]) -> str:
    """``prefix + text`` reduced to ``[A-Za-z0-9_]``, made unique among ``used``."""
    base = prefix + (re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x")
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def _open_dataset(fo: Any, name: str, overwrite: bool) -> Any:
    """A new persistent dataset ``name`` (an old one is replaced only with ``overwrite``)."""
    from fiftyone.core.service import ServiceException
    from pymongo.errors import PyMongoError

    try:
        exists = fo.dataset_exists(name)
    except (ServiceException, PyMongoError) as exc:
        raise SalienceError(
            f"FiftyOne's database is unreachable ({type(exc).__name__}); install the "
            "fiftyone-db build for this OS or set FIFTYONE_DATABASE_URI"
        ) from None
    if exists and not overwrite:
        raise SalienceError(
            f"a FiftyOne dataset named {name!r} exists; pass --overwrite or choose --name"
        )
    if exists:
        fo.delete_dataset(name)
    try:
        dataset = fo.Dataset(name)
    except ValueError as exc:
        raise SalienceError(f"FiftyOne refused the dataset name {name!r}: {exc}") from None
    dataset.persistent = True
    return dataset


def _sample(fo: Any, item: Exported, fields: dict[str, dict[str, str]], names: list[str]) -> Any:
    row = item.row

    def label(value: Any, **extra: Any) -> Any:
        return None if value is None else fo.Classification(label=str(value), **extra)

    top = [
        fo.Classification(label=names[i] if 0 <= i < len(names) else f"class {i}", confidence=p)
        for i, p in zip(row.get("topk_index") or [], row.get("topk_prob") or [], strict=False)
    ]
    sample = fo.Sample(
        filepath=str(item.image),
        metadata=fo.ImageMetadata(
            width=item.width, height=item.height, num_channels=3, mime_type="image/png"
        ),
        ground_truth=label(row["label"]),
        predictions=label(row["pred"], confidence=row["confidence"]),
        top_k=fo.Classifications(classifications=top) if top else None,
        correct=row["correct"],
        salience_id=str(row["sample_id"]),
        source_path=str(row["path"]),
        **{c: row.get(c) for c in _SAMPLE_COLUMNS},
    )
    if fields["meta"]:
        sample["meta"] = fo.DynamicEmbeddedDocument(
            **{f: row.get(c) for c, f in fields["meta"].items()}
        )
    for method, heatmap in item.maps.items():
        sample[fields["saliency"][method]] = fo.Heatmap(
            map_path=str(heatmap.path), range=list(heatmap.range), signed=heatmap.signed
        )
    for method, stats in item.stats.items():
        if stats:
            values = {f: stats.get(c) for c, f in fields["stats"].items()}
            sample[fields["stats_of"][method]] = fo.DynamicEmbeddedDocument(**values)
    return sample


def _fields(run: Run, methods: Sequence[str]) -> dict[str, dict[str, str]]:
    used = {"ground_truth", "predictions", "top_k", "correct", "salience_id", "source_path"}
    used |= {*_SAMPLE_COLUMNS, "meta", "id", "filepath", "tags", "metadata"}
    stat_names: set[str] = set()
    meta_names: set[str] = set()
    return {
        "saliency": {m: field_name(m, "saliency_", used) for m in methods},
        "stats_of": {m: field_name(m, "stats_", used) for m in methods},
        "stats": {c: field_name(c, "", stat_names) for c in [*run.stat_columns(), "error"]},
        "meta": {c: field_name(c, "", meta_names) for c in run.info.meta_columns},
    }


def export_fiftyone(
    run: Run | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    methods: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Export ``run`` to a persistent FiftyOne dataset ``name`` (default ``salience-<run
    folder>``), writing its images and heatmaps under ``out`` (default ``RUN/fiftyone``) and
    the returned summary as ``out/export.json``. ``progress()`` is called once per sample."""
    fo = _fiftyone()
    run = run if isinstance(run, Run) else Run.open(run)
    chosen = list(methods) if methods else run.methods
    unknown = [m for m in chosen if m not in run.methods]
    if unknown:
        raise SalienceError(f"the run has no method {unknown[0]!r}; it has {run.methods}")
    folder = (Path(out) if out is not None else run.path / "fiftyone").absolute()
    dataset_name = name or f"salience-{safe_name(run.path.name)}"
    dataset = _open_dataset(fo, dataset_name, overwrite)
    fields = _fields(run, chosen)
    dataset.default_classes = run.class_names
    dataset.info = {"salience_run": str(run.path), "map_size": list(run.map_size)}
    dataset.save()
    batch: list[Any] = []
    skipped: Counter[str] = Counter()
    added = 0
    media = export_media(run, folder, chosen, fields["saliency"], progress)
    for item in media:
        if isinstance(item, Skipped):
            skipped[item.reason] += 1
            continue
        batch.append(_sample(fo, item, fields, run.class_names))
        if len(batch) >= BATCH:
            added += len(dataset.add_samples(batch, progress=False))
            batch.clear()
    if batch:
        added += len(dataset.add_samples(batch, progress=False))
    summary = {
        "dataset": dataset_name,
        "run": str(run.path),
        "out": str(folder),
        "samples": added,
        "skipped": {"total": sum(skipped.values()), "reasons": dict(skipped)},
        "methods": {
            m: {"heatmap": fields["saliency"][m], "stats": fields["stats_of"][m]} for m in chosen
        },
        "stats": fields["stats"],
    }
    write_json(folder / SUMMARY, summary)
    return summary
