"""The self-contained ``attack.html`` of ``salience attack``: summary tables and the example
images embedded as data URIs; every user string escaped, no scripts, no external resources."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from salience.attack.files import PAGE
from salience.htmlsafe import escape, page

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px; color: #222; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 4px; text-align: center; font-size: 12px; }
figure img { width: 160px; height: 160px; image-rendering: pixelated; display: block; }
.note { color: #555; }
"""


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(out: Path, rel: str, caption: str) -> str:
    img = f'<img src="{_uri(out / rel)}" alt="{escape(caption)}">'
    return f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"


def _prediction(report: dict[str, Any]) -> str:
    p = report["prediction"]
    rows = []
    for name, a in p["attacks"].items():
        for b, rate in zip(a["budgets"], a["success_rate"], strict=True):
            inp = ", ".join(f"{v:.4g}" for v in b["input"])
            rows.append(
                [
                    escape(name),
                    escape(a["norm"]),
                    f"{b['pixel_255']:.3g}/255 ({b['pixel']:.4g})",
                    escape(inp),
                    _f(rate),
                ]
            )
    s = p["smallest_eps"]
    note = (
        f"<p class=note>{p['attacked']} correctly classified images attacked. Median smallest "
        f"successful {escape(p['attack'])} budget: {_f(s['median'] and s['median'] * 255, 2)}/255 "
        f"(bisection, resolution {_f(s['resolution'] and s['resolution'] * 255, 3)}/255).</p>"
    )
    return (
        "<h2>Predictions</h2>"
        + _table(
            [
                "attack",
                "norm",
                "budget (pixel space)",
                "budget (input space, per channel)",
                "success",
            ],
            rows,
        )
        + note
    )


def _methods(report: dict[str, Any]) -> str:
    rows = []
    for name, m in report.get("methods", {}).items():
        rows.append(
            [
                escape(name),
                escape(m["attacked_through"]),
                str(m["k"]),
                _f(m["topk_intersection_attack"]),
                _f(m["topk_intersection_random"]),
                _f(m["spearman_attack"]),
                _f(m["spearman_random"]),
                _f(m["com_shift_attack"], 1),
                _f(m["com_shift_random"], 1),
                _f(m["labels_kept"]),
            ]
        )
    head = [
        "method",
        "attacked through",
        "k",
        "top-k attack",
        "top-k random",
        "Spearman attack",
        "Spearman random",
        "CoM shift attack (px)",
        "CoM shift random (px)",
        "labels kept",
    ]
    return "<h2>Explanation fragility (Ghorbani et al. 2019)</h2>" + _table(head, rows)


def _others(report: dict[str, Any]) -> str:
    rows = [
        [
            escape(m),
            escape(k),
            _f(v["rho"]),
            f"[{_f(v['interval'][0])}, {_f(v['interval'][1])}]",
            str(v["n"]),
        ]
        for m, c in report.get("concentration", {}).items()
        for k, v in c.items()
    ]
    parts = [
        "<h2>Vulnerability vs saliency concentration</h2><p class=note>Spearman rank "
        "correlation of the clean map's statistic with the smallest successful budget "
        "(bootstrap 95% interval).</p>",
        _table(["method", "statistic", "rho", "interval", "n"], rows),
    ]
    rows = []
    for m, d in report.get("manipulation", {}).items():
        for key in ("real", "smoothed"):
            r = d[key]
            rows.append(
                [
                    escape(m),
                    escape(f"{key} (beta {r['beta']})"),
                    _f(r["similarity_before"]),
                    _f(r["similarity_after"]),
                    _f(r["output_change"], 4),
                    _f(r["labels_kept"]),
                ]
            )
    parts += [
        "<h2>Targeted manipulation (Dombrowski et al. 2019)</h2>",
        _table(
            [
                "method",
                "explanation",
                "similarity to target before",
                "after",
                "output change",
                "labels kept",
            ],
            rows,
        ),
    ]
    rows = []
    for m, d in report.get("detection", {}).items():
        for key in ("saliency", "softmax"):
            r = d[key]
            rows.append(
                [
                    escape(m),
                    escape(key),
                    _f(r["auc"]),
                    f"[{_f(r['interval'][0])}, {_f(r['interval'][1])}]",
                    str(r["n"]),
                ]
            )
    parts += [
        "<h2>Detection</h2>",
        _table(["method", "features", "ROC AUC", "interval", "n"], rows),
    ]
    return "".join(parts)


def _per_class(report: dict[str, Any]) -> str:
    """One row per class: the primary attack's success at each budget (correctly classified
    images) and each method's top-k intersection under the fragility attack (every image)."""
    p = report["prediction"]
    attack = p["attacks"][p["attack"]]
    success = attack.get("per_class", {})
    methods = {m: v.get("per_class", {}) for m, v in report.get("methods", {}).items()}
    classes = sorted(set(success).union(*methods.values()))
    if not classes:
        return ""
    rows = []
    for c in classes:
        hits = success.get(c, {})
        rates = [_f(hits.get(f"success_rate@{e:.5g}"), 2) for e in attack["eps"]]
        kept = [_f(methods[m].get(c, {}).get("topk_intersection_attack"), 2) for m in methods]
        rows.append([escape(c), str(hits.get("n", 0)), *rates, *kept])
    head = ["class", "attacked"]
    head += [f"{p['attack']} {b['pixel_255']:.3g}/255" for b in attack["budgets"]]
    head += [f"{m} top-k (attack)" for m in methods]
    return (
        "<h2>Per class</h2><p class=note>Attack success on the correctly classified images "
        "of each class; top-k intersection of each method's map after the fragility attack."
        "</p>" + _table(head, rows)
    )


def _examples(report: dict[str, Any], out: Path) -> str:
    parts = ["<h2>Examples</h2>"]
    for ex in report.get("examples", []):
        p = ex["prediction"]
        parts.append(f"<h3>{escape(ex['image'])}</h3>")
        parts.append(_figure(out, ex["clean"], f"clean: {p['class']} ({p['probability']:.2f})"))
        for method, files in ex["methods"].items():
            q = files["prediction"]
            parts.append("<div>")
            parts.append(_figure(out, files["map_clean"], f"{method}, clean"))
            parts.append(
                _figure(out, files["attacked"], f"attacked: {q['class']} ({q['probability']:.2f})")
            )
            parts.append(_figure(out, files["perturbation"], "perturbation (±budget)"))
            parts.append(_figure(out, files["map_attacked"], f"{method}, attacked"))
            parts.append("</div>")
    return "".join(parts)


def write_attack_html(report: dict[str, Any], out: Path) -> Path:
    """Write ``out/attack.html`` from ``report`` and the example PNGs under ``out``."""
    title = f"salience attack: {report['model']} on {report['samples']} images"
    body = _prediction(report) + _methods(report) + _others(report) + _per_class(report)
    body += _examples(report, out)
    path = out / PAGE
    path.write_text(page(title, STYLE, f"<h1>{escape(title)}</h1>{body}"), encoding="utf-8")
    return path
