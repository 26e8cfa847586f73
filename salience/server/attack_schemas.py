"""Pydantic response models of the attack route (``attack.json`` as ``salience attack --run``
wrote it inside a run; DESIGN.md lists its stable keys)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Budget(_Model):
    pixel: float | None  # 0..1 pixel space
    pixel_255: float | None
    input: list[float | None]  # the model's input space, per channel


class PredictionRobustness(_Model):
    attack: str
    norm: str
    attacked: int  # correctly classified images the attack ran on
    steps: int | None
    budgets: list[Budget]
    success_rate: list[float | None]
    median_smallest_eps: float | None  # pixel space


class MethodFragility(_Model):
    method: str
    attacked_through: str | None
    k: int | None
    budget: Budget | None
    topk_intersection_attack: float | None
    topk_intersection_random: float | None
    spearman_attack: float | None
    spearman_random: float | None
    com_shift_attack: float | None
    com_shift_random: float | None
    labels_kept: float | None
    labels_kept_random: float | None
    detection_auc_saliency: float | None = None
    detection_auc_softmax: float | None = None
    manipulation_similarity: float | None = None  # Spearman to the target map after the attack
    manipulation_output_change: float | None = None


class Prediction(_Model):
    class_name: str = Field(alias="class")
    probability: float | None


class ExampleMethod(_Model):
    method: str
    prediction: Prediction


class Example(_Model):
    index: int
    image: str | None
    prediction: Prediction
    methods: list[ExampleMethod]


class AttackResults(_Model):
    available: bool  # False: the run has no attack results (then only ``detail`` says why)
    detail: str | None = None
    model: str = ""
    samples: int | None = None
    correct: int | None = None
    source: str | None = None  # the file inside the run
    prediction: PredictionRobustness | None = None
    methods: list[MethodFragility] = []
    examples: list[Example] = []
