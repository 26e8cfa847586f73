"""Attack: what ``salience attack --run RUN`` found for a run (``RUN/attack/attack.json``):
prediction robustness, each method's fragility, detection and manipulation figures, and the
example pictures (clean, attacked, perturbation, both maps), each checked to lie in the
attack's ``examples`` folder and served only as the picture its first bytes say it is."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse

from salience.attack.files import REPORT, example_file, read_report
from salience.errors import SalienceError
from salience.jsonsafe import finite
from salience.server import attack_schemas as s
from salience.server.routes.images import refuse, sniff
from salience.server.run_cache import RunEntry, get_entry
from salience.store.layout import ATTACK

router = APIRouter(prefix="/api/runs/{run_id}/attack", tags=["attack"])

Entry = Annotated[RunEntry, Depends(get_entry)]
Kind = Literal["clean", "attacked", "perturbation", "map_clean", "map_attacked"]
NO_CACHE = {"Cache-Control": "no-cache"}  # a new `salience attack --run` rewrites the files


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    f = finite(v)
    return None if f is None else int(f)


def _budget(b: Any) -> s.Budget:
    b = _dict(b)
    return s.Budget(
        pixel=finite(b.get("pixel")),
        pixel_255=finite(b.get("pixel_255")),
        input=[finite(v) for v in _list(b.get("input"))],
    )


def _prediction(p: dict[str, Any]) -> s.PredictionRobustness:
    smallest = _dict(p.get("smallest_eps"))
    return s.PredictionRobustness(
        attack=str(p.get("attack", "")),
        norm=str(p.get("norm", "")),
        attacked=_int(p.get("attacked")) or 0,
        steps=_int(p.get("steps")),
        budgets=[_budget(b) for b in _list(p.get("budgets"))],
        success_rate=[finite(v) for v in _list(p.get("success_rate"))],
        median_smallest_eps=finite(smallest.get("median")),
    )


def _method(name: str, m: dict[str, Any], report: dict[str, Any]) -> s.MethodFragility:
    keys = ("topk_intersection", "spearman", "com_shift")
    figures = {f"{k}_{w}": finite(m.get(f"{k}_{w}")) for k in keys for w in ("attack", "random")}
    detection = _dict(_dict(report.get("detection")).get(name))
    manipulation = _dict(_dict(_dict(report.get("manipulation")).get(name)).get("real"))
    return s.MethodFragility(
        method=name,
        attacked_through=None if m.get("attacked_through") is None else str(m["attacked_through"]),
        k=_int(m.get("k")),
        budget=_budget(m["budget"]) if isinstance(m.get("budget"), dict) else None,
        labels_kept=finite(m.get("labels_kept")),
        labels_kept_random=finite(m.get("labels_kept_random")),
        detection_auc_saliency=finite(_dict(detection.get("saliency")).get("auc")),
        detection_auc_softmax=finite(_dict(detection.get("softmax")).get("auc")),
        manipulation_similarity=finite(manipulation.get("similarity_after")),
        manipulation_output_change=finite(manipulation.get("output_change")),
        **figures,
    )


def _said(p: Any) -> s.Prediction:
    p = _dict(p)
    return s.Prediction.model_validate(
        {"class": str(p.get("class", "")), "probability": finite(p.get("probability"))}
    )


def _example(e: Any) -> s.Example | None:
    e = _dict(e)
    index = _int(e.get("index"))
    if index is None:
        return None
    methods = [
        s.ExampleMethod(method=str(name), prediction=_said(_dict(m).get("prediction")))
        for name, m in _dict(e.get("methods")).items()
    ]
    image = e.get("image")
    return s.Example(
        index=index,
        image=None if image is None else str(image),
        prediction=_said(e.get("prediction")),
        methods=methods,
    )


MISSING = "this run has no attack results (salience attack --run RUN ...)"


def _report(entry: RunEntry) -> dict[str, Any]:
    """The run's ``attack.json``; 404 when there is none, one line (400) when it is damaged."""
    if not (entry.path / ATTACK / REPORT).is_file():
        raise HTTPException(404, MISSING)
    return read_report(entry.path / ATTACK)


@router.get("", response_model=s.AttackResults)
def attack_results(entry: Entry) -> s.AttackResults:
    """The run's attack report; ``available`` is false when ``salience attack --run`` has
    not written one (a run without one is normal, not an error)."""
    if not (entry.path / ATTACK / REPORT).is_file():
        return s.AttackResults(available=False, detail=MISSING)
    report = _report(entry)
    examples = [_example(e) for e in _list(report.get("examples"))]
    return s.AttackResults(
        available=True,
        model=str(report.get("model", "")),
        samples=_int(report.get("samples")),
        correct=_int(report.get("correct")),
        source=f"{ATTACK}/{REPORT}",
        prediction=_prediction(report["prediction"]),
        methods=[
            _method(str(k), _dict(m), report) for k, m in _dict(report.get("methods")).items()
        ],
        examples=[e for e in examples if e is not None],
    )


@router.get("/examples/{index}/{kind}")
def example_picture(
    entry: Entry,
    index: int,
    kind: Kind,
    method: Annotated[str | None, Query(max_length=200)] = None,
) -> FileResponse:
    """One example picture; ``method`` names the method for every kind but ``clean``."""
    report = _report(entry)
    found = [e for e in _list(report.get("examples")) if _dict(e).get("index") == index]
    if not found:
        raise HTTPException(404, f"no attack example {index}")
    record = _dict(found[0])
    if kind != "clean":
        record = _dict(_dict(record.get("methods")).get(method or ""))
    try:
        path = example_file(entry.path / ATTACK, record.get(kind))
        with path.open("rb") as f:
            media = sniff(f.read(16))
    except (SalienceError, OSError):
        raise refuse(entry, f"attack example {index}/{kind}") from None
    if media is None:
        raise refuse(entry, f"attack example {index}/{kind} (not a picture)")
    return FileResponse(path, media_type=media, headers=NO_CACHE)
