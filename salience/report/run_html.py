"""The run report as one HTML file: styles inline, images as data URIs, no script needed
(a confusion-matrix cell links to its images, shown by the CSS ``:target`` rule).

Every string from the run (class, file, method, region and run names, reasons) goes through
:func:`salience.htmlsafe.escape`, and the page's Content-Security-Policy allows no script at
all and images only as data URIs, so markup in the data can neither run nor load anything."""

from __future__ import annotations

import math
from importlib.resources import files
from string import Template

import numpy as np

from salience import __version__
from salience.htmlsafe import CSP_META, escape
from salience.report.run_data import Card, ReportData
from salience.viz import lut

COUNT_MAP = "Blues"


def _pct(x: float | None, digits: int = 1) -> str:
    return (
        "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"
    )


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _colour(t: float) -> tuple[str, str]:
    """Background and text colour for a cell at ``t`` in [0, 1] of the count colormap."""
    table = lut(COUNT_MAP)
    r, g, b = (
        int(v) for v in table[round((0.08 + 0.92 * min(1.0, max(0.0, t))) * (len(table) - 1))]
    )
    ink = "#fff" if (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255 < 0.55 else "#1c2330"
    return f"rgb({r},{g},{b})", ink


def _legend(title: str, lo: str, hi: str) -> str:
    table = lut(COUNT_MAP)
    picks = table[np.linspace(0.08 * (len(table) - 1), len(table) - 1, 7).round().astype(int)]
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in picks)
    return (
        f'<div class="legend"><b>{escape(title)}</b> {escape(lo)}'
        f'<span class="bar" style="background: linear-gradient(90deg, {stops})"></span>'
        f"{escape(hi)}</div>"
    )


def _kpis(d: ReportData) -> str:
    def kpi(label: str, value: str, hint: str) -> str:
        return (
            f'<div class="kpi"><div class="label">{escape(label)}</div>'
            f'<div class="value">{escape(value)}</div><div class="hint">{escape(hint)}</div></div>'
        )

    return (
        '<div class="kpis">'
        + "".join(
            [
                kpi("Accuracy", _pct(d.accuracy), f"{d.count - d.errors:,} images predicted"),
                kpi("Balanced accuracy", _pct(d.balanced_accuracy), "mean recall over classes"),
                kpi(
                    "Images", f"{d.count:,}", f"{d.errors:,} failed" if d.errors else "none failed"
                ),
                kpi("Classes", str(d.all_classes), ""),
                kpi("Methods", str(len(d.methods)), ", ".join(d.methods) or "no maps"),
            ]
        )
        + "</div>"
    )


def _matrix(d: ReportData) -> str:
    cells = {(c.true, c.pred): c for c in d.cells}
    counts = d.matrix.to_numpy()
    top = max(1, int(counts.max(initial=0)))
    head = "".join(
        f'<th title="{escape(str(p))}"><span>{escape(str(p))}</span></th>' for p in d.matrix.columns
    )
    rows = []
    for t in d.matrix.index:
        total = int(d.matrix.loc[t].sum())
        tds = []
        for p in d.matrix.columns:
            n = int(d.matrix.loc[t, p])
            diag = " diag" if t == p else ""
            if n == 0:
                tds.append(f'<td class="zero{diag}">0</td>')
                continue
            bg, ink = _colour(math.sqrt(n / top))
            share = _pct(n / total if total else 0)
            title = f"true {t} → predicted {p}: {n} images ({share} of the class)"
            anchor = cells[(str(t), str(p))].anchor
            tds.append(
                f'<td class="has{diag}" style="background:{bg};color:{ink}" '
                f'title="{escape(title)}" '
                f'data-true="{escape(str(t))}" data-pred="{escape(str(p))}" data-count="{n}">'
                f'<a href="#{anchor}">{n}</a></td>'
            )
        rows.append(f'<tr><th title="{escape(str(t))}">{escape(str(t))}</th>{"".join(tds)}</tr>')
    note = ""
    if len(d.matrix.index) < d.all_classes:
        note = (
            f'<p class="muted">Showing the {len(d.matrix.index)} classes of the top confusions, '
            f"out of {d.all_classes}.</p>"
        )
    return (
        f'<section class="panel" id="matrix"><h2>Confusion matrix</h2><div class="body">{note}'
        '<div class="cm-wrap"><table class="cm"><thead><tr>'
        '<th class="muted">true ↓ / predicted →</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f"{_legend('Images per cell (square-root scale)', '1', str(top))}"
        '<p class="muted">Click a cell to see its images below; the outlined diagonal holds the '
        "correct predictions.</p></div></section>"
    )


def _card(c: Card) -> str:
    figs = "".join(
        f'<figure><img src="{uri}" alt="{escape(cap)}">'
        f"<figcaption>{escape(cap)}</figcaption></figure>"
        for cap, uri in c.images
    )
    if not c.images:
        figs = f'<p class="missing">image not embedded: {escape(c.problem or "unreadable")}</p>'
    mark = '<span class="ok">✓</span>' if c.correct else '<span class="bad">✗</span>'
    return (
        f'<div class="card" data-sample-id="{escape(c.sample_id)}"><div class="strip">{figs}</div>'
        f'<div class="info"><span>{mark} p {c.confidence:.2f}</span>'
        f'<span class="path" title="{escape(c.path)}">{escape(c.path)}</span></div></div>'
    )


def _cells(d: ReportData) -> str:
    parts = []
    for c in d.cells:
        if c.cards:
            shown = (
                f"all {c.count}"
                if len(c.cards) == c.count
                else f"{len(c.cards)} of {c.count}, chosen at random"
            )
            cards = "".join(_card(k) for k in c.cards)
            width = max(1, *(len(k.images) for k in c.cards)) * d.size + 8
            body = (
                f'<p class="muted">{shown}</p>'
                f'<div class="cards" style="--card: {width}px">{cards}</div>'
            )
        else:
            body = (
                '<p class="muted">Not embedded: the report reached its image budget. '
                "Open the run with <code>salience serve</code> to see these.</p>"
            )
        parts.append(
            f'<div class="cell" id="{c.anchor}"><h3>true {escape(c.true)} → predicted '
            f"{escape(c.pred)} · {c.count} images</h3>{body}</div>"
        )
    confusions = "".join(
        f'<li><a href="#{c.anchor}">{escape(c.true)} → {escape(c.pred)}</a> '
        f'<span class="muted">{c.count}</span></li>'
        for c in d.top_confusions
    )
    top = f'<h3>Top confusions</h3><ul class="conf">{confusions}</ul>' if confusions else ""
    return (
        f'<section class="panel" id="samples"><h2>Images by cell</h2><div class="body">{top}'
        f'<div class="cells">{"".join(parts)}</div></div></section>'
    )


def _classes(d: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(r['class']))}</td><td>{_num(r['precision'])}</td><td>{_num(r['recall'])}</td>"
        f"<td>{_num(r['f1'])}</td><td>{int(r['support'])}</td></tr>"
        for r in d.classes.sort_values("f1", na_position="first").to_dict("records")
    )
    return (
        '<section class="panel"><h2>Per-class metrics (weakest first)</h2><div class="body">'
        '<table class="data"><thead><tr><th>Class</th><th>Precision</th><th>Recall</th><th>F1</th>'
        f"<th>Images</th></tr></thead><tbody>{rows}</tbody></table></div></section>"
    )


def _regions(d: ReportData) -> str:
    if d.regions is None or d.regions.empty:
        return ""
    regions = list(dict.fromkeys(d.regions["region"]))
    table = d.regions.set_index(["method", "region"])
    rows = []
    for method in dict.fromkeys(d.regions["method"]):
        for outcome in ("correct", "wrong"):
            cells = "".join(f"<td>{_pct(table.loc[(method, r), outcome])}</td>" for r in regions)
            rows.append(f"<tr><td>{escape(method)} · {outcome} images</td>{cells}</tr>")
    head = "".join(f"<th>{escape(r)}</th>" for r in regions)
    return (
        '<section class="panel"><h2>Where the saliency falls</h2><div class="body">'
        '<p class="muted">Mean share of positive saliency in each annotated region.</p>'
        f'<table class="data"><thead><tr><th>Method</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _shortcuts(d: ReportData) -> str:
    if not d.shortcuts:
        return ""
    items = []
    for c in d.shortcuts:
        shares = ", ".join(
            f"{escape(str(k))} {_pct(v, 0)}" for k, v in (c.get("region_share") or {}).items()
        )
        clusters = len(c.get("clusters") or [])
        kind = escape(str(c.get("kind") or "–"))
        maps = "".join(
            f'<figure><img src="{escape(uri)}" alt="{escape(title)}"><figcaption>'
            f"{escape(title)}</figcaption></figure>"
            for title, uri in c.get("class_wide_maps") or []
        )
        maps = f'<div class="strip">{maps}</div>' if maps else ""
        flag = (
            '<span class="flag">flagged</span>'
            if c.get("flagged")
            else '<span class="flag fine">ok</span>'
        )
        items.append(
            f"<tr><td>{escape(str(c['class']))}</td><td>{flag}</td><td>{kind}</td>"
            f"<td class='text'>{escape(str(c.get('reason') or ''))}{maps}</td>"
            f"<td class='text'>{shares or '–'}</td><td>{clusters}</td></tr>"
        )
    flagged = sum(bool(c.get("flagged")) for c in d.shortcuts)
    return (
        f'<section class="panel" id="shortcuts"><h2>Shortcut findings ({flagged} of '
        f"{len(d.shortcuts)} classes flagged)</h2>"
        '<div class="body"><table class="data"><thead><tr><th>Class</th><th></th><th>Kind</th>'
        "<th class='text'>Reason</th><th class='text'>Saliency share by region</th>"
        "<th>Clusters</th></tr></thead>"
        f"<tbody>{''.join(items)}</tbody></table></div></section>"
    )


def render(d: ReportData) -> str:
    ok = d.count - d.errors
    note = ""
    if d.embedded < ok:
        note = (
            f'<p class="note">This report embeds {d.embedded:,} of {ok:,} images: at most '
            f"{d.per_cell} per confusion-matrix cell, chosen at random (seed {d.seed}), mistakes "
            "and larger cells first.</p>"
        )
    model = d.manifest.recorded_model.spec or "model"
    data = d.manifest.recorded_data.source or ""
    subtitle = f"{model} on {data} · {d.count:,} images · status {d.manifest.status}"
    body = note + _kpis(d) + _matrix(d) + _cells(d) + _classes(d) + _regions(d) + _shortcuts(d)
    template = Template((files("salience.report") / "run_report.html").read_text())
    return template.substitute(
        csp_meta=CSP_META,
        title=escape(d.title),
        subtitle=escape(subtitle),
        body=body,
        version=escape(__version__),
    )
