"""The end-of-run summary, computed from the stored run by queries (also ``summary.json``).

Accuracy and balanced accuracy over images with a known label and a prediction; the most
confused (true, predicted) pairs; per method, the classes whose positive saliency falls most
outside their annotated regions; and what was skipped or flagged, grouped by reason.
"""

from __future__ import annotations

from typing import Any

from salience.jsonsafe import finite
from salience.store.filters import quote
from salience.store.run import Run


def _reasons(
    run: Run, table: str, column: str, where: str = "TRUE", params: list[Any] | None = None
) -> dict[str, int]:
    df = run.sql(
        f"SELECT split_part({column}, ':', 1) AS kind, count(*) AS n FROM {table} "
        f"WHERE {column} IS NOT NULL AND {where} GROUP BY kind ORDER BY n DESC, kind",
        params,
    )
    return {str(k): int(n) for k, n in zip(df["kind"], df["n"], strict=True)}


def summarize(run: Run, top: int = 5) -> dict[str, Any]:
    head = run.sql(
        "SELECT count(*) AS images, count(pred_index) AS predicted, "
        "count(correct) AS labelled, count(*) FILTER (WHERE correct) AS right FROM samples"
    ).iloc[0]
    labelled = int(head["labelled"])
    metrics = run.class_metrics()
    supported = metrics[metrics["support"] > 0]
    confused = run.sql(
        "SELECT label, pred, count(*) AS n FROM samples WHERE correct = false "
        "GROUP BY ALL ORDER BY n DESC, label, pred LIMIT ?",
        [top],
    )
    out: dict[str, Any] = {
        "run": str(run.path),
        "status": run.status,
        "images": int(head["images"]),
        "predicted": int(head["predicted"]),
        "labelled": labelled,
        "accuracy": int(head["right"]) / labelled if labelled else None,
        "balanced_accuracy": finite(supported["recall"].mean()) if len(supported) else None,
        "confused_pairs": [
            {"true": t, "pred": p, "count": int(n)} for t, p, n in confused.itertuples(index=False)
        ],
        "skipped": {
            "total": int(
                run.sql("SELECT count(*) AS n FROM samples WHERE error IS NOT NULL")["n"].iloc[0]
            ),
            "reasons": _reasons(run, "samples", "error"),
        },
        "warnings": _reasons(run, "samples", "warning"),
        "map_errors": {},
        "outside_masks": {},
        "si_patterns": {},
    }
    columns = run.region_columns
    gt = [g for g in run.info.ground_truth if g in columns]
    for method in run.methods:
        out["map_errors"][method] = _reasons(
            run, "stats", "error", "method = ? AND error NOT LIKE 'no map%'", [method]
        )
        if not gt:
            continue
        inside = " + ".join(f"st.{quote('share_' + columns[g])}" for g in gt)
        rows = run.sql(
            f"SELECT s.label AS class, avg(1 - ({inside})) AS outside, count(*) AS n "
            "FROM samples s JOIN stats st ON st.sample_id = s.sample_id AND st.method = ? "
            f"WHERE ({inside}) IS NOT NULL AND s.label_index IS NOT NULL "
            "GROUP BY s.label ORDER BY outside DESC, class LIMIT ?",
            [method, top],
        )
        out["outside_masks"][method] = [
            {"class": c, "share_outside": finite(v), "images": int(n)}
            for c, v, n in rows.itertuples(index=False)
        ]
        patterns = run.sql(
            "SELECT si_pattern, count(*) AS n FROM stats WHERE method = ? AND si_pattern IS "
            "NOT NULL GROUP BY ALL ORDER BY n DESC",
            [method],
        )
        out["si_patterns"][method] = {str(p): int(n) for p, n in patterns.itertuples(index=False)}
    return out
