"""The self-contained ``cost.html``: per method, the cost/fidelity plane as a static SVG (ms
per image on a log axis, Spearman to the reference) with the frontier and the threshold, and
the table behind it. No script, nothing loaded; every string from the data is escaped."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from salience.htmlsafe import escape, page

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
tr.best td { font-weight: bold; }
.note { color: #555; }
svg text { font: 11px system-ui, sans-serif; }
"""
W, H, PAD = 640, 320, 48
COLUMNS = (
    "ms_per_image",
    "peak_mb",
    "spearman",
    "topk_iou",
    "deletion_delta",
    "insertion_delta",
    "agreement",
)


def _f(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.3f}"


def _plot(rows: dict[str, dict[str, Any]], front: list[str], threshold: float) -> str:
    pts = [
        (math.log10(max(r["ms_per_image"], 1e-3)), r["spearman"], name)
        for name, r in rows.items()
        if isinstance(r.get("ms_per_image"), int | float)
        and isinstance(r.get("spearman"), int | float)
        and math.isfinite(r["spearman"])
    ]
    if not pts:
        return "<p class=note>nothing measured</p>"
    lo, hi = min(p[0] for p in pts), max(p[0] for p in pts)
    lo, hi = (lo - 0.1, hi + 0.1) if hi - lo < 0.2 else (lo, hi)
    ymin = min(0.0, min(p[1] for p in pts))

    def sx(v: float) -> float:
        return PAD + (v - lo) / (hi - lo) * (W - 2 * PAD)

    def sy(v: float) -> float:
        return H - PAD - (v - ymin) / (1 - ymin) * (H - 2 * PAD)

    parts = [f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">']
    parts.append(
        f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" '
        'fill="none" stroke="#ccc"/>'
    )
    ty = sy(threshold)
    parts.append(
        f'<line x1="{PAD}" x2="{W - PAD}" y1="{ty:.1f}" y2="{ty:.1f}" '
        'stroke="#c33" stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<text x="{W - PAD}" y="{ty - 4:.1f}" text-anchor="end" fill="#c33">'
        f"min Spearman {escape(threshold)}</text>"
    )
    on = sorted((p for p in pts if p[2] in front), key=lambda p: p[0])
    if len(on) > 1:
        path = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b, _ in on)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#36c"/>')
    for a, b, name in pts:
        colour = "#36c" if name in front else "#888"
        parts.append(
            f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="4" fill="{colour}">'
            f"<title>{escape(name)}</title></circle>"
        )
        right = sx(a) > W / 2  # labels in the right half end at their point: never clipped
        x, anchor = (sx(a) - 6, "end") if right else (sx(a) + 6, "start")
        parts.append(
            f'<text x="{x:.1f}" y="{sy(b) - 6:.1f}" text-anchor="{anchor}">{escape(name)}</text>'
        )
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<text x="{sx(v):.1f}" y="{H - PAD + 16}" text-anchor="middle">{10**v:.3g}</text>'
        )
    for v in (ymin, (ymin + 1) / 2, 1.0):
        parts.append(f'<text x="{PAD - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">ms per image (log)</text>')
    parts.append(f'<text x="12" y="{PAD - 12}">Spearman |map| vs reference</text></svg>')
    return "".join(parts)


def _table(rows: dict[str, dict[str, Any]], best: str | None) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in ("setting", *COLUMNS, "note"))
    body = []
    for name, r in rows.items():
        cls = ' class="best"' if name == best else ""
        cells = "".join(f"<td>{_f(r.get(c))}</td>" for c in COLUMNS)
        note = escape(r.get("error", ""))
        body.append(f"<tr{cls}><td>{escape(name)}</td>{cells}<td>{note}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_cost_html(report: dict[str, Any], path: Path) -> Path:
    """Write the page for a ``cost.json`` payload to ``path``."""
    threshold = float(report["thresholds"]["min_spearman"])
    title = f"salience cost: {report.get('model', 'model')} on {report['samples']} images"
    parts = [
        f"<p class=note>Recommended: the cheapest setting whose Spearman to the reference is at "
        f"least {escape(threshold)} (bold). Blue: the cost/fidelity frontier. Deletion/insertion "
        "deltas are the setting's score minus the reference's, on the reference model; agreement "
        "is the share of images for which the setting's model predicts the reference's class.</p>"
    ]
    for name, rows in report["methods"].items():
        best = report["recommended"].get(name)
        parts.append(f"<h2>{escape(name)}: {escape(best or 'nothing reaches the threshold')}</h2>")
        parts.append(_plot(rows, report["frontier"].get(name, []), threshold))
        parts.append(_table(rows, best))
    body = f"<h1>{escape(title)}</h1>{''.join(parts)}"
    path.write_text(page(title, STYLE, body), encoding="utf-8")
    return path
