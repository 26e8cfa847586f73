"""Pydantic response models of the explorer API (one per resource, no free-form dicts)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Health(_Model):
    """The version handshake: which salience serves these runs."""

    salience: str
    runs: int
    preloaded: bool = Field(description="whether every run's tables are loaded")
    images_cached: int
    cache_hits: int
    cache_misses: int


class RunSummary(_Model):
    id: str
    name: str
    status: str
    model: str
    dataset: str
    count: int
    errors: int
    accuracy: float | None
    class_names: list[str]
    methods: list[str]
    signed: list[str] = Field(description="methods whose maps are signed (registry)")
    regions: list[str]
    stats: list[str] = Field(description="saliency statistics available for sorting and colouring")
    stat_descriptions: dict[str, str] = Field(
        default_factory=dict, description="what each statistic means, one sentence each"
    )
    meta: list[str] = Field(description="user metadata columns (without the meta_ prefix)")
    splits: list[str]
    map_size: list[int]
    created: str | None
    updated: str | None
    has_shortcuts: bool
    problem: str | None = Field(
        default=None, description="why the run cannot be read (status 'damaged'), one line"
    )


class RunList(_Model):
    runs: list[RunSummary]


class ClassMetric(_Model):
    class_name: str = Field(alias="class")
    precision: float
    recall: float
    f1: float
    support: int


class Confusion(_Model):
    true: str
    pred: str
    count: int
    share: float = Field(description="share of the true class's images")


class ShortcutCluster(_Model):
    size: int
    share: float
    flagged: bool
    centroid: list[float]
    box: list[float] = Field(default_factory=list, description="[y0, x0, y1, x1] fractions")


class ShortcutIntervention(_Model):
    """Shares of decisions that changed when the box was filled or pasted (and controls)."""

    images: int
    others: int
    removed: float | None
    removed_control: float | None
    pasted: float | None
    pasted_control: float | None


class ShortcutClassWide(_Model):
    """Where a class's evidence sits across its images, against the other classes."""

    box: list[float] = Field(description="[y0, x0, y1, x1] as fractions of height and width")
    share: float = Field(description="share of the class's images whose peak is in the box")
    other_share: float | None
    area: float
    flagged: bool
    confirmed: bool | None
    examples: list[str]
    mean_map: list[list[float]] | None = Field(default=None, description="only when flagged")
    others_map: list[list[float]] | None = None
    intervention: ShortcutIntervention | None = None


class ShortcutClass(_Model):
    class_name: str = Field(alias="class")
    flagged: bool
    reason: str
    region_share: dict[str, float]
    clusters: list[ShortcutCluster]
    kind: str | None = Field(default=None, description="class, cluster or region when flagged")
    box: list[float] | None = None
    class_wide: ShortcutClassWide | None = None


class Overview(_Model):
    run: RunSummary
    classes_seen: int = Field(default=0, description="classes present in the data (labels seen)")
    model_classes: int = Field(default=0, description="classes the model can predict")
    accuracy: float | None
    balanced_accuracy: float | None
    macro_f1: float | None
    classes: list[ClassMetric]
    top_confusions: list[Confusion]
    shortcuts: list[ShortcutClass]


class Cell(_Model):
    t: int = Field(description="row index into labels")
    p: int = Field(description="column index into preds")
    count: int
    share: float = Field(description="share of the row (true class)")
    value: float | None = Field(default=None, description="the cell's mean statistic")


class ConfusionMatrix(_Model):
    """Sparse: only cells holding images are listed."""

    labels: list[str] = Field(description="true classes (rows)")
    preds: list[str] = Field(description="predicted classes (columns)")
    row_totals: list[int]
    cells: list[Cell]
    max_count: int
    stat: str | None = None
    method: str | None = None
    stat_range: list[float] | None = None


class Facets(_Model):
    meta: dict[str, list[str]]
    splits: list[str]
    confidence: list[float]


class SampleCard(_Model):
    sample_id: str
    path: str
    label: str | None
    pred: str | None
    confidence: float | None
    correct: bool | None
    loss: float | None
    error: str | None
    value: float | None = Field(default=None, description="the sort key's value when a stat")


class SamplePage(_Model):
    total: int
    offset: int
    limit: int
    sort: str | None
    descending: bool
    method: str | None
    items: list[SampleCard]


class ClassProb(_Model):
    class_name: str = Field(alias="class")
    index: int
    prob: float


class MethodStats(_Model):
    method: str
    stats: dict[str, float | None]
    region_share: dict[str, float | None]
    error: str | None


class SampleDetail(_Model):
    sample_id: str
    path: str
    label: str | None
    pred: str | None
    confidence: float | None
    correct: bool | None
    loss: float | None
    split: str | None
    error: str | None
    meta: dict[str, str]
    topk: list[ClassProb]
    has_mask: bool
    regions: list[str]
    region_colors: dict[str, str]
    methods: list[MethodStats]


class ClassChange(_Model):
    class_name: str = Field(alias="class")
    support: int
    accuracy_a: float
    accuracy_b: float
    delta: float


class CompareSummary(_Model):
    a: str
    b: str
    matched: int
    accuracy_a: float
    accuracy_b: float
    fixed: int
    broken: int
    changed: int
    methods: list[str] = Field(description="methods computed in both runs")
    per_class: list[ClassChange]


class Flip(_Model):
    sample_id: str
    path: str
    label: str
    pred_a: str
    pred_b: str
    confidence_a: float
    confidence_b: float
    kind: str


class FlipPage(_Model):
    total: int
    offset: int
    limit: int
    kind: str
    items: list[Flip]


class Colormap(_Model):
    name: str
    signed: bool
    stops: list[str] = Field(description="CSS colours from low to high, for legends")


class NoiseFloor(_Model):
    kind: str
    region_shift: dict[str, float | None]
    similarity: dict[str, float | None]


class Listed(_Model):
    count: int
    share: float | None = None
    sample_ids: list[str]


class ClassMapChange(_Model):
    class_name: str = Field(alias="class")
    similarity: dict[str, float | None]
    region_shift: dict[str, float | None] = {}


class MapComparison(_Model):
    """Where the two models look (``salience.audit.compare.compare_runs``)."""

    method: str
    matched: int
    similarity: dict[str, dict[str, float | None] | None]
    region_shift: dict[str, float | None]
    region_shift_real: dict[str, bool]
    noise_floor: NoiseFloor
    silent_changes: Listed
    per_class: list[ClassMapChange]


class LiveStatus(_Model):
    """Whether this server computes maps live for a run (``salience serve --model``)."""

    available: bool
    reason: str | None = Field(default=None, description="why not, one line")
    model: str | None = None
    methods: list[str] = Field(description="methods a live map can use (the registry)")
    pixel_methods: list[str] = Field(description="gradient-family methods (full-resolution maps)")
    signed: list[str] = Field(description="methods whose maps are signed (registry)")
    classes: int = Field(description="class indices a live map accepts: 0 .. classes - 1")
    map_size: list[int] = Field(description="the stored maps' [height, width]")
    input_size: int | None = Field(description="the model's input side (the view the maps lie on)")


class LiveMap(_Model):
    """One live map's numbers: the explained class and its probability, and the prediction."""

    method: str
    sample_id: str
    target: int
    class_name: str = Field(alias="class")
    prob: float
    pred: int
    pred_class: str
    pred_prob: float
    map_size: list[int]
    seconds: float
