"""Pydantic response models of the monitor and slices routes (``monitor.json`` as DESIGN.md
describes it, and ``salience slices`` results)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class TestResult(_Model):
    statistic: float | None
    p_value: float | None
    alert: bool


class Bbsd(_Model):
    statistic: float | None = None
    p_value: float | None
    alert: bool


class FalseAlarm(_Model):
    target: float | None = None
    measured: float | None = None
    bbsd: float | None = None
    splits: int | None = None
    window: int | None = None
    method: str | None = None
    verified: bool | None = None


class Alert(_Model):
    window: int
    detector: str = Field(description="saliency, bbsd, class or candidate")
    p_value: float | None = None
    tests: list[str] = []
    class_: str | None = Field(default=None, alias="class")
    reason: str | None = None


class WindowPoint(_Model):
    index: int
    start: int | str | None
    end: int | str | None
    n: int
    alert: bool
    p_value: float | None = Field(description="the combined saliency test")
    tests: dict[str, TestResult]
    bbsd: Bbsd
    accuracy: float | None = None
    confidence: float | None = None
    moved: list[str] = Field(description="classes whose maps moved in this window")
    audit: bool = Field(description="whether the window's audit run (images, maps) is on disk")


class MonitorSummary(_Model):
    id: str
    name: str
    baseline: str
    window: int | str
    time_column: str | None
    alpha: float
    methods: list[str]
    windows: int
    alerts: int
    updated: str | None


class MonitorList(_Model):
    monitors: list[MonitorSummary]


class Timeline(_Model):
    monitor: MonitorSummary
    windows: list[WindowPoint]
    alerts: list[Alert]
    false_alarm_rate: FalseAlarm | None


class ClassMove(_Model):
    class_: str = Field(alias="class")
    n: int
    method: str
    moved: bool
    p_value: float | None
    shift: dict[str, float | None]
    embedding_distance: float | None
    examples: list[str]
    baseline_mean_map: list[float | None] = Field(description="8x8, row-major, sums to 1")
    window_mean_map: list[float | None] | None = Field(description="the same over the window")


class WindowSample(_Model):
    sample_id: str
    path: str
    label: str | None
    pred: str | None
    confidence: float | None
    correct: bool | None


class WindowDetail(_Model):
    monitor: str
    window: WindowPoint
    classes: list[ClassMove]
    methods: list[str] = Field(description="methods with maps in the window's audit run")
    samples: list[WindowSample] = Field(description="the window's images (at most 60)")
    total: int = Field(description="images in the window's audit run")


class SliceTest(_Model):
    statistic: float | None
    p_value: float | None
    alert: bool = False
    shift: float | None = None


class SliceGroup(_Model):
    value: str
    n: int
    tested: bool
    flagged: bool = False
    accuracy: float | None = None
    accuracy_rest: float | None = None
    reasons: list[str] = []
    tests: dict[str, SliceTest] = {}


class Slices(_Model):
    columns: list[str] = Field(description="what `by` can name in this run")
    by: str | None
    column: str | None = None
    alpha: float | None = None
    methods: list[str] = []
    correction: str | None = None
    source: str | None = Field(default=None, description="the saved file's name, or 'computed'")
    groups: list[SliceGroup] = []
    flagged: list[str] = []
