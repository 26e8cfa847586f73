"""``run.json``, typed: the audit writes a :class:`Manifest`, every reader gets one back.

The keys on disk are the ones DESIGN.md lists ("Run directory"); the versions of what
produced the numbers stand at the top level (``"salience"``, ``"torch"``...), and
``method_kinds`` records each method's family and signedness, so that readers never ask the
installed registry about a run's methods. Keys this version does not know are kept as they
are (``extra``) and written back unchanged.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from salience.errors import DamagedRunError, SalienceError
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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _block(value: Any) -> dict[str, Any]:
    """A recorded block (``model``, ``dataset``...), ``{}`` when it is missing or not one."""
    return value if isinstance(value, dict) else {}


class _TextBlock:
    """A recorded block whose fields are all optional texts."""

    @classmethod
    def from_json(cls, block: Any) -> Self:
        """From the recorded block (anything that is not a JSON object reads as empty)."""
        found = _block(block)
        return cls(*(_text(found.get(f.name)) for f in fields(cls)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RecordedModel(_TextBlock):
    """The ``model`` block, typed: None where the run recorded nothing (older runs, or a
    model known by its object rather than a spec)."""

    spec: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    state_sha256: str | None = None
    cam_layer: str | None = None


@dataclass(frozen=True)
class RecordedData(_TextBlock):
    """The ``dataset`` block, typed: None where the run recorded nothing."""

    source: str | None = None
    root: str | None = None
    manifest_sha256: str | None = None


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

    @property
    def recorded_model(self) -> RecordedModel:
        """The model the run was audited with (:attr:`model`, typed)."""
        return RecordedModel.from_json(self.model)

    @property
    def recorded_data(self) -> RecordedData:
        """The data the run was audited on (:attr:`dataset`, typed)."""
        return RecordedData.from_json(self.dataset)

    def params(self, method: str) -> dict[str, Any]:
        """The parameters ``method`` ran with (a copy); ``{}`` for a method the run lacks."""
        return dict(_block(self.methods.get(method)))

    @property
    def preprocess_fields(self) -> dict[str, Any] | None:
        """The recorded preprocessing as ``Preprocess`` keyword arguments (lists as tuples);
        None when the run recorded none."""
        if not isinstance(self.preprocess, dict):
            return None
        return {k: tuple(v) if isinstance(v, list) else v for k, v in self.preprocess.items()}

    @property
    def input_size(self) -> int | None:
        """The side of the model's input the preprocessing crops to (None: not recorded)."""
        size = _block(self.preprocess).get("size")
        return int(size) if isinstance(size, int) else None

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
        _check_shapes(cls, data, where)
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


def _check_shapes(cls: type[Manifest], data: dict[str, Any], where: str) -> None:
    """A field recorded as an object or a list must be one (null reads as not recorded), so
    that a damaged or hand-edited ``run.json`` fails here, in one line, not in a reader."""
    for f in fields(cls):
        if data.get(f.name) is None or f.name in ("versions", "extra"):
            continue
        if f.default_factory is not MISSING:
            kind = type(f.default_factory())
        elif f.name == "preprocess":
            kind = dict
        else:
            continue
        if not isinstance(data[f.name], kind):
            shape = "an object" if kind is dict else "a list"
            raise DamagedRunError(
                f"{where}: {f.name!r} should be {shape}; the file is damaged: rerun the audit "
                "command into a new folder"
            )


def read_manifest(run: Path) -> Manifest:
    """The manifest of the run folder ``run``: :class:`SalienceError` when the folder holds
    none, :class:`~salience.errors.DamagedRunError` when it cannot be read."""
    return Manifest.from_json(read_json(run / MANIFEST), str(run / MANIFEST))


def write_manifest(run: Path, manifest: Manifest) -> Stamp:
    """Write ``run.json`` atomically."""
    return write_json(run / MANIFEST, manifest.to_json())
