"""Slices: metadata groups inside one run compared with the rest of the run.

Per group (e.g. each camera): accuracy against the rest (Fisher's exact test), each saliency
statistic (KS) and the map embeddings (MMD, Gretton et al., JMLR 2012) against the rest. The
p-values of every group and test form one family, Holm-corrected, so a flag means "different
beyond chance" at the family-wise level ``alpha``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import fisher_exact

from salience.data.manifest import meta_name
from salience.errors import SalienceError
from salience.monitor import features as feat
from salience.monitor.twosample import SortedBaseline, holm, mmd_test
from salience.store import Run

MIN_GROUP = 5


def _column(run: Run, by: str) -> str:
    cols = run.sample_columns()
    for name in (by, meta_name(by)):
        if name in cols:
            return name
    meta = [c for c in cols if c.startswith("meta_")] + ["label", "pred", "split"]
    raise SalienceError(f"the run has no column {by!r}; slice by one of: {', '.join(meta)}")


def slice_columns(run: Run) -> list[str]:
    """What ``by`` can name in this run: its metadata columns (manifest names), then label,
    pred and split where the run has them."""
    cols = run.sample_columns()
    meta = [c[len("meta_") :] for c in cols if c.startswith("meta_")]
    return meta + [c for c in ("label", "pred", "split") if c in cols]


def slices_file(run: str | os.PathLike[str], by: str) -> Path:
    """Where ``salience slices RUN --by BY`` writes its result by default."""
    return Path(run) / f"slices-{by}.json"


def slices(
    run: Run | str | os.PathLike[str],
    by: str,
    methods: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_size: int = MIN_GROUP,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``slices.json`` payload: one entry per group of ``by`` against the rest."""
    run = run if isinstance(run, Run) else Run.open(run)
    column = _column(run, by)
    chosen = list(methods) if methods else list(run.methods)
    f = feat.from_run(run, chosen)
    samples = run.samples(["sample_id", column, "correct"]).set_index("sample_id")
    groups = samples[column].reindex(f.sample_ids).astype(object).fillna("(missing)")
    values = groups.astype(str).to_numpy()
    correct = samples["correct"].reindex(f.sample_ids).to_numpy()
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    p_raw: list[list[float]] = []
    for value in sorted(set(values)):
        inside = values == value
        if inside.sum() < min_size or (~inside).sum() < min_size:
            rows.append({"value": value, "n": int(inside.sum()), "tested": False})
            p_raw.append([])
            continue
        row, ps = _group(f, inside, correct, chosen, rng)
        rows.append({"value": value, "n": int(inside.sum()), "tested": True, **row})
        p_raw.append(ps)
    adjusted = holm(np.asarray([p for ps in p_raw for p in ps]))
    k = 0
    for row, ps in zip(rows, p_raw, strict=True):
        if not row["tested"]:
            continue
        names = list(row["tests"])
        for name, p in zip(names, adjusted[k : k + len(ps)], strict=True):
            row["tests"][name]["p_value"] = float(p)
            row["tests"][name]["alert"] = bool(p < alpha)
        k += len(ps)
        row["reasons"] = [n for n in names if row["tests"][n]["alert"]]
        row["flagged"] = bool(row["reasons"])
    return {
        "run": str(run.path),
        "by": by,
        "column": column,
        "alpha": alpha,
        "methods": chosen,
        "correction": "Holm over every group and test",
        "groups": rows,
        "flagged": [r["value"] for r in rows if r.get("flagged")],
    }


def _group(
    f: feat.Features,
    inside: np.ndarray,
    correct: np.ndarray,
    methods: Sequence[str],
    rng: np.random.Generator,
) -> tuple[dict[str, Any], list[float]]:
    tests: dict[str, dict[str, float | bool]] = {}
    ps: list[float] = []
    known = np.array([c is not None and c == c for c in correct])
    acc_in = acc_out = None
    if (known & inside).any() and (known & ~inside).any():
        c = correct.astype(object)
        a = [int(np.sum(c[known & inside] == True)), int(np.sum(c[known & inside] == False))]  # noqa: E712
        b = [int(np.sum(c[known & ~inside] == True)), int(np.sum(c[known & ~inside] == False))]  # noqa: E712
        acc_in, acc_out = a[0] / max(1, sum(a)), b[0] / max(1, sum(b))
        p = float(fisher_exact([a, b]).pvalue)
        tests["accuracy"] = {"statistic": acc_in - acc_out, "p_value": p}
        ps.append(p)
    for m in methods:
        d, p_ks = SortedBaseline(f.stats[m][~inside]).ks(f.stats[m][inside])
        for j, s in enumerate(feat.STATS):
            delta = float(np.nanmean(f.stats[m][inside, j]) - np.nanmean(f.stats[m][~inside, j]))
            tests[f"ks_{m}_{s}"] = {
                "statistic": float(d[j]),
                "p_value": float(p_ks[j]),
                "shift": delta,
            }
            ps.append(float(p_ks[j]))
        stat, p = mmd_test(f.embed[m][~inside], f.embed[m][inside], rng)
        tests[f"mmd_{m}"] = {"statistic": stat, "p_value": p}
        ps.append(p)
    return {"accuracy": acc_in, "accuracy_rest": acc_out, "tests": tests}, ps
