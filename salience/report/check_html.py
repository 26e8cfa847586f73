"""The self-contained ``report.html`` of ``salience check``: tables, verdicts and plots embedded
as base64 PNG (matplotlib's Agg canvas, no pyplot state), no external resources."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from salience.check import columns, entry_numbers
from salience.htmlsafe import escape, page

GOOD, BAD, GREY = "#1b7837", "#b2182b", "#777777"
CONTROL_STYLE = {"random": ("#999999", "--"), "constant": ("#bbbbbb", ":")}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child, td.text { text-align: left; }
tr.control { color: #777; font-style: italic; }
.verdict { padding: 0.6em 1em; border-left: 5px solid; margin: 0.8em 0; background: #fafafa; }
.trusted { border-color: #1b7837; } .untrusted { border-color: #b2182b; }
.unsure { border-color: #d6a000; } td small { color: #666; }
.control-v { border-color: #999; } .note { color: #555; } img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig: Figure, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{_png(fig)}">'


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return escape(str(value))


def _randomization(ax: Axes, entry: dict[str, Any], controls: dict[str, Any]) -> None:
    r = entry["randomization"]
    stages = list(range(1, len(r["layers"]) + 1))
    ax.plot(stages, r["spearman_abs"], "o-", color="#2166ac", label="Spearman |map|")
    for key, color in (("spearman", "#67a9cf"), ("ssim", "#ef8a62"), ("hog", "#999933")):
        if key in r:
            ax.plot(
                stages,
                r[key],
                ".-",
                color=color,
                alpha=0.8,
                label=key.upper() if key != "spearman" else "Spearman (signed)",
            )
    for name, c in controls.items():
        color, style = CONTROL_STYLE.get(name, (GREY, "-."))
        ax.plot(
            stages,
            c["randomization"]["spearman_abs"],
            style,
            color=color,
            label=f"{name} (control)",
        )
    ax.set_xticks(stages)
    ax.set_xticklabels([_short(n) for n in r["layers"]], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(-0.3, 1.05)
    ax.set_ylabel("similarity to the original map")
    ax.set_title("cascading randomization (logits first)")
    ax.legend(fontsize=7)


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else "…" + name[-width + 1 :]


def _faithfulness(ax: Axes, entry: dict[str, Any], controls: dict[str, Any]) -> None:
    c = entry["curves"]
    ax.plot(c["fraction"], c["deletion"], color=BAD, label="deletion")
    ax.plot(c["fraction"], c["insertion"], color=GOOD, label="insertion")
    random = controls.get("random")
    if random is not None:
        rc = random["curves"]
        ax.plot(rc["fraction"], rc["deletion"], "--", color=BAD, alpha=0.5, label="random: del.")
        ax.plot(rc["fraction"], rc["insertion"], "--", color=GOOD, alpha=0.5, label="random: ins.")
    ax.set_xlabel("fraction of pixels replaced (most salient first)")
    ax.set_ylabel("probability of the predicted class")
    ax.set_title(
        f"deletion {_fmt(entry['deletion_auc'])}, insertion {_fmt(entry['insertion_auc'])}"
    )
    ax.legend(fontsize=7)


def _road(ax: Axes, entry: dict[str, Any], controls: dict[str, Any]) -> None:
    c = entry["curves"]
    ax.plot(c["road_fraction"], c["road_morf"], "o-", color=BAD, label="MoRF")
    ax.plot(c["road_fraction"], c["road_lerf"], "o-", color=GOOD, label="LeRF")
    random = controls.get("random")
    if random is not None:
        rc = random["curves"]
        ax.plot(
            rc["road_fraction"], rc["road_morf"], "--", color=BAD, alpha=0.5, label="random: MoRF"
        )
        ax.plot(
            rc["road_fraction"], rc["road_lerf"], "--", color=GOOD, alpha=0.5, label="random: LeRF"
        )
    ax.set_xlabel("fraction imputed (noisy linear imputation)")
    ax.set_ylabel("probability of the predicted class")
    ax.set_title(f"ROAD: MoRF {_fmt(entry['road_morf'])}, LeRF {_fmt(entry['road_lerf'])}")
    ax.legend(fontsize=7)


def _method_figure(entry: dict[str, Any], controls: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    _randomization(axes[0], entry, controls)
    _faithfulness(axes[1], entry, controls)
    _road(axes[2], entry, controls)
    fig.tight_layout()
    return fig


def _overview_figure(entries: dict[str, dict[str, Any]]) -> Figure:
    panels = [(n.key, n.panel) for n in entry_numbers() if n.panel]
    fig = Figure(figsize=(15, 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = list(entries)
    colors = [GREY if e["control"] else (GOOD if e["trusted"] else BAD) for e in entries.values()]
    for ax, (key, title) in zip(axes, panels, strict=True):
        values = [e[key] if e[key] is not None else 0.0 for e in entries.values()]
        bars = ax.barh(names, values, color=colors)
        ax.bar_label(bars, labels=[_fmt(e[key]) for e in entries.values()], fontsize=7, padding=2)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.2)
    fig.tight_layout()
    return fig


def _cell(entry: dict[str, Any], key: str) -> str:
    span = entry.get("intervals", {}).get(key)
    interval = f"<br><small>[{span[0]:.2f}, {span[1]:.2f}]</small>" if span else ""
    return f"<td>{_fmt(entry.get(key))}{interval}</td>"


def _status(entry: dict[str, Any]) -> str:
    if entry["control"]:
        return "control"
    return str(entry.get("status", "failed" if "error" in entry else _fmt(entry["trusted"])))


def _table(entries: dict[str, dict[str, Any]]) -> str:
    cols = columns()
    head = "".join(
        f"<th title='{escape(c.meaning)}'>{escape(c.label)}<br>"
        f"<small>{c.direction} is better</small></th>"
        for c in cols
    )
    rows = []
    for name, e in entries.items():
        cls = ' class="control"' if e["control"] else ""
        cells = "".join(_cell(e, c.key) for c in cols)
        rows.append(f"<tr{cls}><td>{escape(name)}</td><td>{escape(_status(e))}</td>{cells}</tr>")
    return f"<table><tr><th>method</th><th>verdict</th>{head}</tr>{''.join(rows)}</table>"


def _meanings() -> str:
    items = "".join(
        f"<li><b>{escape(c.label)}</b> ({c.direction} is better): {escape(c.meaning)}</li>"
        for c in columns()
    )
    return f"<ul class='note'>{items}</ul>"


def _note(entry: dict[str, Any]) -> str:
    """The numbers of one method in words (those with a ``Number.note``)."""
    return "; ".join(escape(n.note).format(_fmt(entry[n.key])) for n in entry_numbers() if n.note)


def _verdict_class(entry: dict[str, Any]) -> str:
    if entry.get("status") == "not enough evidence":
        return "unsure"
    return "trusted" if entry["trusted"] else "untrusted"


def render(report: dict[str, Any]) -> str:
    """The HTML page for a ``salience check`` report (the ``report.json`` payload)."""
    methods: dict[str, dict[str, Any]] = {
        n: report["methods"][n] for n in report.get("ranking", report["methods"])
    }
    controls: dict[str, dict[str, Any]] = report.get("controls", {})
    everything = {**methods, **controls}
    parts = [
        f"<h1>Can these saliency maps be trusted for <code>{escape(str(report['model']))}"
        f"</code>?</h1>",
        f"<p>{escape(str(report['samples']))} images on "
        f"{escape(str(report.get('device', '')))}. "
        "Maps explain the class the model predicts. Controls: <code>random</code> (noise) and "
        "<code>constant</code> (a flat map) are reference lines every method must beat.</p>",
        "<h2>Verdicts</h2>",
        f"<p><b>{escape(str(report.get('recommendation', '')))}</b></p>",
    ]
    for name, e in methods.items():
        cls = _verdict_class(e)
        parts.append(
            f"<div class='verdict {cls}' data-method='{escape(name)}'>{escape(e['verdict'])}</div>"
        )
    parts += [
        "<h2>Summary</h2>",
        _table(everything),
        "<p class='note'>Intervals are 95% bootstrap intervals over the images. What each "
        "number means:</p>",
        _meanings(),
        _img(_overview_figure(everything), "robustness, complexity and cost per method"),
        f"<p class='note'>{escape(report.get('caveat', ''))}</p>",
    ]
    for name, e in methods.items():
        if "error" in e:
            parts += [
                f"<h2 id='{escape(name)}'>{escape(name)}</h2>",
                f"<div class='verdict untrusted'>{escape(e['verdict'])}</div>",
            ]
            continue
        parts += [
            f"<h2 id='{escape(name)}'>{escape(name)}</h2>",
            f"<div class='verdict {_verdict_class(e)}'>{escape(e['verdict'])}</div>",
            _img(_method_figure(e, controls), f"{name}: randomization, deletion/insertion, ROAD"),
            f"<p class='note'>{_note(e)}.</p>",
        ]
    config = report.get("config", {})
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td class='text'>{_fmt(v)}</td></tr>" for k, v in config.items()
    )
    parts += ["<h2>Settings</h2>", f"<table>{rows}</table>"]
    return page(f"salience check: {report['model']}", STYLE, "\n".join(parts))


def write_check_html(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`render` to ``path`` atomically."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(out)
    return out
