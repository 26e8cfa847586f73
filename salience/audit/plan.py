"""What an audit will do, fixed before any image is read: classes, sample ids, shards, batches,
and the run manifest with its provenance. Resuming compares this plan with the stored one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Protocol

import torch
from torch import nn

from salience.audit.stats import region_columns, stat_columns
from salience.data.dataset import Dataset, Item
from salience.errors import SalienceError
from salience.models.settings import ModelSettings, memory_format
from salience.models.sources import imagenet_classes, imagenet_wnids
from salience.store.manifest import Manifest, MethodKind

FORMAT = 1
# Keys of run.json that must match for a rerun to resume instead of being refused.
RESUME_KEYS = (
    "format",
    "model",
    "dataset",
    "class_names",
    "regions",
    "ground_truth",
    "methods",
    "map_size",
    "shard_size",
    "top_k",
    "preprocess",
    "target",
)


class ModelLike(Protocol):
    """What the audit needs of :class:`salience.models.LoadedModel`."""

    module: nn.Module
    class_names: list[str]
    cam_layer: str | None

    def preprocess(self, img: Any) -> torch.Tensor: ...


@dataclass(frozen=True)
class Batch:
    shard: int
    start: int  # within the shard
    stop: int

    def positions(self, shard_size: int) -> range:
        base = self.shard * shard_size
        return range(base + self.start, base + self.stop)


@dataclass
class Plan:
    """The audit's fixed decisions; ``manifest`` is the initial ``run.json``."""

    dataset: Dataset
    class_names: list[str]
    label_index: list[int | None]  # per item
    label_names: list[str | None]  # per item: canonical class name, else the raw label
    label_warnings: list[str | None]
    sample_ids: list[str]
    regions: list[str]
    meta_columns: list[str]
    shard_size: int
    batch_size: int
    manifest: Manifest

    @property
    def shards(self) -> int:
        return -(-len(self.dataset.items) // self.shard_size)

    def shard_items(self, shard: int) -> range:
        n = len(self.dataset.items)
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, n))

    def batches(self, shard: int) -> Iterator[Batch]:
        size = len(self.shard_items(shard))
        for a in range(0, size, self.batch_size):
            yield Batch(shard, a, min(a + self.batch_size, size))


def unique_names(names: Sequence[str]) -> list[str]:
    """Class names made unique: a repeated name gets its index, e.g. ``"crane (517)"``."""
    counts = Counter(names)
    return [f"{n} ({i})" if counts[n] > 1 else n for i, n in enumerate(names)]


def map_labels(
    items: Sequence[Item], original: Sequence[str]
) -> tuple[list[int | None], list[str | None], list[str | None]]:
    """Each label -> class index by exact name, then case-insensitive name, then as an index;
    for the ImageNet-1k classes also by WordNet id (folders named ``n02391049``)."""
    names = unique_names(original)
    wnids = imagenet_wnids() if list(original) == imagenet_classes() else {}
    exact: dict[str, list[int]] = {}
    lower: dict[str, list[int]] = {}
    for i, n in enumerate(original):
        exact.setdefault(n, []).append(i)
        lower.setdefault(n.lower(), []).append(i)
    index: list[int | None] = []
    label: list[str | None] = []
    warning: list[str | None] = []
    for item in items:
        raw = item.label
        hits = [] if raw is None else exact.get(raw) or lower.get(raw.lower()) or []
        if raw is not None and not hits and raw.isdigit() and int(raw) < len(names):
            hits = [int(raw)]
        if raw is not None and not hits and raw in wnids:
            hits = [wnids[raw]]
        if len(hits) == 1:
            index.append(hits[0])
            label.append(names[hits[0]])
            warning.append(None)
            continue
        index.append(None)
        label.append(raw)
        if raw is None:
            warning.append(None)
        elif hits:
            warning.append(f"ambiguous label: {raw!r} names classes {hits}")
        elif re.fullmatch(r"n\d{8}", raw):
            warning.append(
                f"unknown label: {raw!r} looks like an ImageNet WordNet id, but the model's "
                f"{len(names)} classes are not the ImageNet-1k ones; pass --classes"
            )
        else:
            warning.append(f"unknown label: {raw!r} is not one of the {len(names)} classes")
    return index, label, warning


def sample_ids(items: Sequence[Item]) -> list[str]:
    """Stable ids: a hash of the relative path (plus the occurrence, for repeated paths); an
    id already taken (a path that spells another's key) is hashed again until it is unique."""
    seen: Counter[str] = Counter()
    taken: set[str] = set()
    out = []
    for item in items:
        key = item.path if not seen[item.path] else f"{item.path}\0{seen[item.path]}"
        seen[item.path] += 1
        digest = _sha1(key)
        while digest in taken:
            key += "\0"
            digest = _sha1(key)
        taken.add(digest)
        out.append(digest)
    return out


def _sha1(key: str) -> str:
    # surrogatepass: a file name that is not UTF-8 (os.walk's surrogate escapes) still hashes
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def state_sha256(module: nn.Module) -> str:
    """Hash of the model's parameters and buffers (names, shapes, dtypes, values)."""
    digest = hashlib.sha256()
    for name, t in module.state_dict().items():
        arr = t.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(arr.shape)}:{arr.dtype}".encode())
        digest.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes() if arr.numel() else b"")
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    """Versions of what produced the numbers (read from package metadata, no imports)."""
    import salience

    out: dict[str, str | None] = {"salience": salience.__version__}
    for name in ("torch", "torchvision", "numpy", "pillow", "duckdb", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["torch"] = torch.__version__  # with its build tag, e.g. +cu130
    out["python"] = platform.python_version()
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_plan(
    model: ModelLike,
    dataset: Dataset,
    methods: dict[str, dict[str, Any]],
    *,
    class_names: Sequence[str] | None,
    map_size: tuple[int, int],
    shard_size: int,
    batch_size: int,
    top_k: int,
    ground_truth: Sequence[str] | None,
    device: torch.device,
    kinds: dict[str, MethodKind] | None = None,
) -> Plan:
    """``methods``: name -> parameters; ``kinds``: name -> family and signedness (recorded in
    ``run.json`` for readers)."""
    if shard_size < 1 or batch_size < 1:
        raise SalienceError("batch size and shard size must be at least 1")
    if min(map_size) < 2:
        raise SalienceError(f"map size {map_size} is too small; use at least 2x2")
    if class_names:
        original, source = list(class_names), "given"
    elif model.class_names:
        original, source = list(model.class_names), "model"
    else:
        original, source = list(dataset.labels), "data"
    if not original:
        raise SalienceError(
            "no class names: the data has no labels and the model none; pass --classes FILE"
        )
    names = unique_names(original)
    regions = dataset.regions()
    if len(regions) > 255:
        raise SalienceError(f"{len(regions)} mask regions; at most 255 are supported")
    unknown_gt = sorted(set(ground_truth or ()) - set(regions))
    if unknown_gt:
        raise SalienceError(
            f"ground-truth region(s) {', '.join(unknown_gt)} not in the masks' regions "
            f"({', '.join(regions) or 'none'})"
        )
    index, labels, warnings = map_labels(dataset.items, original)
    meta_columns = [k for k, _ in dataset.items[0].meta] if dataset.items else []
    preprocess = model.preprocess
    describe = getattr(preprocess, "describe", None)
    weights = getattr(model, "weights_path", None)
    manifest = Manifest(
        versions=versions(),
        format=FORMAT,
        model={
            "spec": getattr(model, "spec", type(model.module).__name__),
            "architecture": getattr(model, "architecture", type(model.module).__name__),
            "weights": str(weights) if weights else None,
            "weights_sha256": getattr(model, "weights_sha256", None),
            "state_sha256": state_sha256(model.module),
            "cam_layer": model.cam_layer,
            "memory_format": memory_format(model.module),
            "settings": getattr(model, "settings", ModelSettings()).describe(),
        },
        dataset={
            "source": dataset.source,
            "kind": dataset.kind,
            "root": str(dataset.root),
            "manifest_sha256": dataset.sha256(),
            "file_sha256": dataset.source_sha256,
            "count": len(dataset.items),
        },
        class_names=names,
        class_source=source,
        regions=regions,
        region_columns=region_columns(regions),
        ground_truth=list(ground_truth) if ground_truth else regions[1:],
        methods=methods,
        method_kinds=dict(kinds or {}),
        target="predicted",
        map_size=list(map_size),
        shard_size=shard_size,
        batch_size=batch_size,
        top_k=top_k,
        preprocess=describe() if callable(describe) else None,
        meta_columns=meta_columns,
        stat_columns=stat_columns(regions),
        device=str(device),
        status="running",
        created=now(),
        updated=now(),
        notes=dataset.notes,
        counts={},
    )
    return Plan(
        dataset,
        names,
        index,
        labels,
        warnings,
        sample_ids(dataset.items),
        regions,
        meta_columns,
        shard_size,
        batch_size,
        manifest,
    )


def check_resume(stored: Manifest, plan: Plan) -> None:
    """Refuse to continue a run made by a different command (model, data, methods...)."""
    fresh = json.loads(json.dumps(plan.manifest.to_json(), default=str))
    old = stored.to_json()
    differs = [k for k in RESUME_KEYS if _comparable(k, old.get(k)) != _comparable(k, fresh[k])]
    if differs:
        raise SalienceError(
            f"the run folder already holds an audit made with a different {', '.join(differs)}; "
            "choose another --out (or delete the folder to start over)"
        )


def _comparable(key: str, value: Any) -> Any:
    if key == "dataset" and isinstance(value, dict):
        return {k: value.get(k) for k in ("manifest_sha256", "root", "count")}
    if key == "model" and isinstance(value, dict):
        return {k: value.get(k) for k in ("spec", "state_sha256", "cam_layer")}
    if key == "preprocess" and isinstance(value, dict):  # a safety cap changes no numbers
        return {k: v for k, v in value.items() if k != "max_side"}
    return value
