"""``run.json``, typed: the audit writes a :class:`Manifest`, every reader gets one back.

The keys on disk are the ones DESIGN.md lists ("Run directory"); the versions of what
produced the numbers stand at the top level (``"salience"``, ``"torch"``...), and
``method_kinds`` records each method's family and signedness, so that readers never ask the
installed registry about a run's methods. Keys this version does not know are kept as they
are (``extra``) and written back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from salience.errors import SalienceError
from salience.store.layout import MANIFEST, Stamp, read_json, write_json

VERSION_KEYS = (
    "salience",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "duckdb",
    "pyarrow",
    "python",
)


@dataclass(frozen=True)
class MethodKind:
    """What a reader needs to know of a method without the registry."""

    family: str  # "gradient", "cam", "perturbation", "relevance", "attention" or "control"
    signed: bool


@dataclass
class Manifest:
    """The run's fixed decisions and provenance, plus its status."""

    methods: dict[str, dict[str, Any]]  # name -> the parameters it ran with
    class_names: list[str]
    versions: dict[str, str | None] = field(default_factory=dict)
    format: int = 1
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    class_source: str | None = None
    regions: list[str] = field(default_factory=list)
    region_columns: dict[str, str] = field(default_factory=dict)
    ground_truth: list[str] = field(default_factory=list)
    method_kinds: dict[str, MethodKind] = field(default_factory=dict)
    target: str = "predicted"
    map_size: list[int] = field(default_factory=list)
    shard_size: int | None = None
    batch_size: int | None = None
    top_k: int = 5
    preprocess: dict[str, Any] | None = None
    meta_columns: list[str] = field(default_factory=list)
    stat_columns: list[str] = field(default_factory=list)
    device: str | None = None
    status: str = "running"  # running | complete | failed
    created: str | None = None
    updated: str | None = None
    notes: list[Any] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not name

    def to_json(self) -> dict[str, Any]:
        """The ``run.json`` object (versions at the top level)."""
        out: dict[str, Any] = dict(self.versions)
        for f in fields(self):
            if f.name not in ("versions", "extra", "method_kinds"):
                out[f.name] = getattr(self, f.name)
        out["method_kinds"] = {
            n: {"family": k.family, "signed": k.signed} for n, k in self.method_kinds.items()
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = MANIFEST) -> Manifest:
        """A manifest from the ``run.json`` object; :class:`SalienceError` when it is not one."""
        if "salience" not in data or not isinstance(data.get("methods"), dict):
            raise SalienceError(f"{where} is not a salience run manifest")
        named = {f.name for f in fields(cls)} - {"versions", "extra", "method_kinds"}
        kinds = data.get("method_kinds")
        return cls(
            **{k: v for k, v in data.items() if k in named},
            versions={k: data[k] for k in VERSION_KEYS if k in data},
            method_kinds={
                str(n): MethodKind(str(k.get("family", "")), bool(k.get("signed", False)))
                for n, k in (kinds.items() if isinstance(kinds, dict) else ())
                if isinstance(k, dict)
            },
            extra={
                k: v
                for k, v in data.items()
                if k not in named and k not in VERSION_KEYS and k != "method_kinds"
            },
        )


def read_manifest(run: Path) -> Manifest:
    """The manifest of the run folder ``run``: :class:`SalienceError` when the folder holds
    none, :class:`~salience.errors.DamagedRunError` when it cannot be read."""
    return Manifest.from_json(read_json(run / MANIFEST), str(run / MANIFEST))


def write_manifest(run: Path, manifest: Manifest) -> Stamp:
    """Write ``run.json`` atomically."""
    return write_json(run / MANIFEST, manifest.to_json())
