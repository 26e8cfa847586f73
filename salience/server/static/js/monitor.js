// The Monitor tab: each monitor folder's drift timeline (every test's p-value per window, the
// false-alarm level, alarms marked), and one window's classes and images on click: the
// window's mean map of each class next to the baseline's, and the images that moved most.
import { api, colorAt, enc, encPath, errorBox, fix, go, h, int, pct } from "./util.js";

const charts = [];
const FLOOR = 1e-6; // p-values below this are drawn on the floor of the log axis
const KS_COLORS = ["#8da0cb", "#a6d854", "#e78ac3", "#66c2a5", "#fc8d62", "#b3b3b3", "#ffd92f", "#e5c494"];
const BLUE = "#2458d6", ORANGE = "#e69f00", GREEN = "#009e73", RED = "#c2362b";

export function render(main, ctx) {
  const { app, params } = ctx;
  while (charts.length) charts.pop().destroy();
  const root = h("div", { class: "stack monitor-view" });
  main.replaceChildren(root);
  root.append(h("div", { class: "loading" }, "Loading monitors…"));
  api("api/monitors").then((list) => {
    if (!root.isConnected) return;
    const monitors = list.monitors;
    if (!monitors.length) {
      root.replaceChildren(h("div", { class: "panel empty", "data-testid": "monitor-empty" },
        "No monitor folder is served. Start the explorer with one next to the runs, e.g. ",
        h("span", { class: "mono" }, "salience serve runs/ref monitor/prod"), "."));
      return;
    }
    const id = monitors.some((m) => m.id === params.monitor) ? params.monitor : monitors[0].id;
    if (id !== params.monitor) {
      go("monitor", { ...params, monitor: id }, { replace: true });
      return;
    }
    return api(`api/monitors/${enc(id)}`).then((t) => root.isConnected && show(root, ctx, monitors, t));
  }).catch((err) => root.isConnected && root.replaceChildren(errorBox(err)));
  return {};
}

function show(root, ctx, monitors, t) {
  const { params } = ctx;
  const m = t.monitor;
  const picker = monitors.length > 1 ? h("label", { class: "field compact" }, h("span", {}, "Monitor"),
    h("select", { "data-testid": "monitor-select", onchange: (e) => go("monitor", { run: params.run, monitor: e.target.value }) },
      monitors.map((x) => h("option", { value: x.id, selected: x.id === m.id }, x.name)))) : null;
  const alarms = t.windows.filter((w) => w.alert || w.bbsd.alert);
  const far = t.false_alarm_rate;
  const kpi = (label, value, sub, cls = "") => h("div", { class: "panel kpi " + cls }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
  const head = h("section", { class: "panel" },
    h("header", {}, h("h2", {}, `Monitor ${m.name}`), h("span", { class: "muted mono", title: m.baseline }, `baseline ${m.baseline.split("/").pop()}`),
      h("div", { class: "spacer" }), picker),
    h("div", { class: "body" }, h("div", { class: "kpis" },
      kpi("Windows", int(t.windows.length), typeof m.window === "number" ? `${int(m.window)} images each` : `${m.window} each (${m.time_column})`),
      kpi("Windows with an alarm", int(alarms.length), alarms.length ? `last: window ${alarms[alarms.length - 1].index}` : "none", alarms.length ? "alarm" : ""),
      kpi("False-alarm level", pct(m.alpha, 1), "per window and test"),
      far && far.measured !== null && far.measured !== undefined
        ? kpi("Measured false alarms", pct(far.measured, 1), `saliency; BBSD ${pct(far.bbsd, 1)} on ${int(far.splits)} baseline self-splits`, far.verified === false ? "warn" : "")
        : kpi("Measured false alarms", "–", "not calibrated yet"),
      kpi("Methods", m.methods.join(", "), `updated ${m.updated ? m.updated.replace("T", " ").slice(0, 19) : "–"}`))));
  const timeline = h("section", { class: "panel", "data-testid": "monitor-timeline", "data-alarms": alarms.map((w) => w.index).join(" ") },
    h("header", {}, h("h2", {}, "Drift timeline"),
      h("span", { class: "muted" }, "p-value of every test per window (log scale); below the dashed line is an alarm; click a window")),
    h("div", { class: "body" },
      t.windows.length ? h("div", { class: "chart-box timeline-box" }, h("canvas", { "aria-label": "p-values per window" })) : h("div", { class: "empty" }, "No window recorded yet."),
      windowStrip(ctx, t)));
  const detail = h("section", { class: "panel window-detail" }, h("div", { class: "body muted" }, "Click a window to see its classes and images."));
  root.replaceChildren(head, timeline, detail);
  if (t.windows.length) drawTimeline(timeline.querySelector("canvas"), ctx, t);
  const index = Number(params.window);
  if (params.window !== undefined && t.windows.some((w) => w.index === index)) showWindow(detail, ctx, m, index);
}

function windowStrip(ctx, t) {
  const selected = Number(ctx.params.window);
  return h("div", { class: "window-strip", role: "list" }, t.windows.map((w) => h("button", {
    class: "win" + (w.alert || w.bbsd.alert ? " alarm" : "") + (w.index === selected && ctx.params.window !== undefined ? " on" : ""),
    role: "listitem",
    "data-testid": "monitor-window",
    "data-index": w.index,
    "data-alert": String(w.alert),
    title: `window ${w.index}: ${when(w)} · saliency p ${pval(w.p_value)} · BBSD p ${pval(w.bbsd.p_value)}`,
    onclick: () => go("monitor", { ...ctx.params, window: w.index }),
  }, h("b", {}, `#${w.index}`), h("span", {}, `${int(w.n)} img`),
  h("span", { class: "mini" }, w.alert && w.bbsd.alert ? "saliency + BBSD" : w.alert ? "saliency alarm" : w.bbsd.alert ? "BBSD alarm" : `p ${pval(w.p_value)}`))));
}

const pval = (p) => (p === null || p === undefined ? "–" : p < 1e-4 ? Number(p).toExponential(1) : Number(p).toPrecision(2));
const when = (w) => (typeof w.start === "number" ? `rows ${w.start}–${w.end}` : `${String(w.start ?? "").replace("T", " ").slice(0, 16)} → ${String(w.end ?? "").replace("T", " ").slice(0, 16)}`);
// "ks_gradcam_spread" -> "KS spread" (one method) or "KS gradcam spread" (several).
const ksLabel = (name, methods) => {
  const m = methods.find((x) => name.startsWith(`ks_${x}_`));
  if (!m) return name;
  return methods.length > 1 ? `KS ${m} ${name.slice(m.length + 4)}` : `KS ${name.slice(m.length + 4)}`;
};
const floor = (p) => (p === null || p === undefined ? null : Math.max(FLOOR, p));

function drawTimeline(canvas, ctx, t) {
  if (!window.Chart) return;
  const ws = t.windows;
  const labels = ws.map((w) => `#${w.index}`);
  const selected = ctx.params.window !== undefined ? ws.findIndex((w) => w.index === Number(ctx.params.window)) : -1;
  const names = Object.keys(ws[ws.length - 1].tests);
  const mmd = names.filter((n) => n.startsWith("mmd_"));
  const ks = names.filter((n) => n.startsWith("ks_"));
  const marked = (alerts, color, base) => ({
    pointRadius: alerts.map((a) => (a ? 7 : 3)),
    pointHoverRadius: alerts.map((a) => (a ? 9 : 5)),
    pointStyle: alerts.map((a) => (a ? "triangle" : "circle")),
    pointBackgroundColor: alerts.map((a) => (a ? RED : base)),
    pointBorderColor: alerts.map((a) => (a ? RED : base)),
    borderColor: color,
    backgroundColor: color,
  });
  const datasets = [
    { label: "saliency (combined)", data: ws.map((w) => floor(w.p_value)), raw: ws.map((w) => w.p_value), borderWidth: 2.5, order: 0,
      ...marked(ws.map((w) => w.alert), BLUE, BLUE) },
    { label: "BBSD (softmax outputs)", data: ws.map((w) => floor(w.bbsd.p_value)), raw: ws.map((w) => w.bbsd.p_value), borderWidth: 2, order: 1,
      ...marked(ws.map((w) => w.bbsd.alert), ORANGE, ORANGE) },
    ...mmd.map((n) => ({ label: n.replace("mmd_", "MMD "), data: ws.map((w) => floor(w.tests[n]?.p_value)), raw: ws.map((w) => w.tests[n]?.p_value),
      borderWidth: 1.5, order: 2, ...marked(ws.map((w) => !!w.tests[n]?.alert), GREEN, GREEN) })),
    ...ks.map((n, i) => ({ label: ksLabel(n, t.monitor.methods), data: ws.map((w) => floor(w.tests[n]?.p_value)),
      raw: ws.map((w) => w.tests[n]?.p_value), borderWidth: 1, borderDash: [3, 3], pointRadius: 0, pointHoverRadius: 3, order: 3,
      borderColor: KS_COLORS[i % KS_COLORS.length], backgroundColor: KS_COLORS[i % KS_COLORS.length] })),
    { label: `false-alarm level α = ${t.monitor.alpha}`, data: ws.map(() => t.monitor.alpha), raw: ws.map(() => t.monitor.alpha),
      borderColor: RED, backgroundColor: RED, borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0, pointHoverRadius: 0, order: 4 },
  ];
  const shade = {
    id: "alarmShade",
    beforeDatasetsDraw(chart) {
      const { ctx: g, chartArea: a, scales: { x } } = chart;
      const step = ws.length > 1 ? x.getPixelForValue(1) - x.getPixelForValue(0) : a.right - a.left;
      g.save();
      ws.forEach((w, i) => {
        if (!(w.alert || w.bbsd.alert) && i !== selected) return;
        g.fillStyle = i === selected ? "rgba(36, 88, 214, .12)" : "rgba(194, 54, 43, .08)";
        const cx = x.getPixelForValue(i);
        g.fillRect(Math.max(a.left, cx - step / 2), a.top, Math.min(step, a.right - a.left), a.bottom - a.top);
      });
      g.restore();
    },
  };
  charts.push(new window.Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    plugins: [shade],
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      onClick: (evt, _els, chart) => {
        const hit = chart.getElementsAtEventForMode(evt, "index", { intersect: false }, true);
        if (hit.length) go("monitor", { ...ctx.params, window: ws[hit[0].index].index });
      },
      onHover: (evt, els) => { evt.native.target.style.cursor = els.length ? "pointer" : "default"; },
      scales: {
        y: { type: "logarithmic", min: FLOOR / 2, max: 1.5, title: { display: true, text: "p-value" }, grid: { color: "#eef1f5" },
          ticks: { callback: (v) => ([1, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6].includes(v) ? (v >= 0.001 ? String(v) : Number(v).toExponential(0)) : "") } },
        x: { grid: { display: false }, title: { display: true, text: "window" } },
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 14, usePointStyle: false } },
        tooltip: { callbacks: {
          title: (items) => { const w = ws[items[0].dataIndex]; return `window ${w.index} · ${when(w)} · ${int(w.n)} images`; },
          label: (c) => { const raw = c.dataset.raw[c.dataIndex]; return `${c.dataset.label}: ${pval(raw)}`; },
        } },
      },
    },
  }));
}

// --- one window -----------------------------------------------------------------------------

function showWindow(panel, ctx, m, index) {
  panel.dataset.testid = "monitor-window-detail";
  panel.dataset.index = String(index);
  panel.replaceChildren(h("div", { class: "body muted" }, `Loading window ${index}…`));
  api(`api/monitors/${enc(m.id)}/windows/${index}`).then((d) => {
    if (!panel.isConnected) return;
    const w = d.window;
    const method = d.methods.includes(ctx.params.method) ? ctx.params.method : d.methods[0] || null;
    const base = `api/monitors/${enc(m.id)}/windows/${index}`;
    const flag = (on, text, okText) => h("span", { class: "flag" + (on ? "" : " ok") }, on ? text : okText);
    const moved = d.classes.filter((c) => c.moved);
    const tests = Object.entries(w.tests).sort((a, b) => (a[1].p_value ?? 1) - (b[1].p_value ?? 1));
    const table = h("table", { class: "data" },
      h("thead", {}, h("tr", {}, h("th", {}, "Test"), h("th", {}, "Statistic"), h("th", {}, "p (corrected)"), h("th", {}, ""))),
      h("tbody", {},
        h("tr", { class: w.alert ? "alarm-row" : "" }, h("td", {}, h("b", {}, "saliency (combined)")), h("td", { class: "num" }, "–"), h("td", { class: "num" }, pval(w.p_value)), h("td", {}, w.alert ? flag(true, "alarm") : "")),
        h("tr", { class: w.bbsd.alert ? "alarm-row" : "" }, h("td", {}, h("b", {}, "BBSD")), h("td", { class: "num" }, fix(w.bbsd.statistic)), h("td", { class: "num" }, pval(w.bbsd.p_value)), h("td", {}, w.bbsd.alert ? flag(true, "alarm") : "")),
        tests.map(([name, r]) => h("tr", { class: r.alert ? "alarm-row" : "" }, h("td", { class: "mono" }, name), h("td", { class: "num" }, fix(r.statistic)),
          h("td", { class: "num" }, pval(r.p_value)), h("td", {}, r.alert ? flag(true, "alarm") : "")))));
    const kpi = (label, value, sub) => h("div", { class: "panel kpi" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
    const classes = d.classes.length
      ? d.classes.map((c) => classBlock(ctx, base, method, c))
      : [h("div", { class: "empty" }, "No class had enough images on both sides to test.")];
    const images = d.samples.length
      ? h("div", { class: "cards" }, d.samples.map((s) => h("div", { class: "card", "data-testid": "window-image", "data-sample-id": s.sample_id, title: s.path },
          windowShot(base, s.sample_id, method),
          h("div", { class: "info" }, h("div", { class: "line1" }, h("span", { class: "names" }, s.label ? (s.correct ? s.label : `${s.label} → ${s.pred}`) : `→ ${s.pred ?? "–"}`)),
            h("div", { class: "line2" }, h("span", {}, s.confidence === null ? "" : `p ${fix(s.confidence, 2)}`), h("span", { class: "mono" }, s.sample_id))))))
      : h("div", { class: "empty" }, "This window was observed in memory: its images were not kept.");
    panel.replaceChildren(
      h("header", {}, h("h2", {}, `Window ${w.index}`), h("span", { class: "muted" }, `${when(w)} · ${int(w.n)} images`),
        flag(w.alert, "saliency alarm", "saliency steady"), flag(w.bbsd.alert, "BBSD alarm", "BBSD steady"),
        h("div", { class: "spacer" }), method ? h("span", { class: "muted" }, `maps: ${method}`) : null),
      h("div", { class: "body stack" },
        h("div", { class: "kpis" },
          kpi("Saliency p", pval(w.p_value), w.alert ? "below the level: alarm" : "above the level"),
          kpi("BBSD p", pval(w.bbsd.p_value), w.bbsd.alert ? "below the level: alarm" : "above the level"),
          kpi("Accuracy", pct(w.accuracy), w.accuracy === null ? "no labels in this window" : "on labelled images"),
          kpi("Mean confidence", pct(w.confidence), "top-1 probability"),
          kpi("Classes whose maps moved", int(moved.length), moved.map((c) => c.class).join(", ") || "none")),
        h("div", { class: "window-grid" },
          h("div", { class: "stack" }, h("h3", {}, "Classes: the window's mean map next to the baseline's"), ...classes),
          h("div", {}, h("h3", {}, "Tests"), h("div", { class: "scroll" }, table))),
        h("div", { class: "stack" }, h("h3", {}, d.total > d.samples.length ? `Images in this window (first ${d.samples.length} of ${int(d.total)})` : `Images in this window (${int(d.total)})`), images)));
  }).catch((err) => panel.isConnected && panel.replaceChildren(h("div", { class: "body" }, errorBox(err))));
}

function windowShot(base, sampleId, method, size = 192) {
  return h("div", { class: "shot" },
    h("img", { class: "base", src: `${base}/thumb/${encPath(sampleId)}?size=${size}`, alt: sampleId, loading: "lazy",
      onerror: (e) => e.target.parentElement.classList.add("missing") }),
    method ? h("img", { class: "ov", src: `${base}/overlay/${enc(method)}/${encPath(sampleId)}?size=${size}`, alt: `${method} saliency`,
      loading: "lazy", "data-testid": "saliency-overlay", "data-method": method, onerror: (e) => { e.target.style.display = "none"; } }) : null);
}

function classBlock(ctx, base, method, c) {
  const stops = ctx.app.colormaps.inferno.stops;
  const maps = [c.baseline_mean_map, c.window_mean_map].filter(Boolean);
  const top = Math.max(1e-12, ...maps.flat().filter((v) => v !== null));
  const fig = (title, values) => h("figure", {}, embedCanvas(values, top, stops), h("figcaption", {}, title));
  const arrow = (v, pos, neg) => (v === null || v === undefined ? "" : `${v > 0 ? pos : neg}${Math.abs(v).toFixed(2)}`);
  const s = c.shift;
  return h("div", { class: "mclass" + (c.moved ? " moved" : ""), "data-testid": "window-class", "data-class": c.class, "data-moved": String(c.moved) },
    h("div", { class: "row" }, h("b", {}, c.class), h("span", { class: "flag" + (c.moved ? "" : " ok") }, c.moved ? "maps moved" : "steady"),
      h("span", { class: "muted" }, `p ${pval(c.p_value)} · ${int(c.n)} images`),
      h("span", { class: "muted", title: "change of the mean centre of mass (fractions of the image) and spread against the baseline" },
        ["centre", arrow(s.com_y, "↓", "↑"), arrow(s.com_x, "→", "←"), "· spread", arrow(s.spread, "+", "−")].filter(Boolean).join(" "))),
    h("div", { class: "mclass-maps" },
      fig("baseline", c.baseline_mean_map),
      c.window_mean_map ? fig("this window", c.window_mean_map) : null,
      c.examples.length ? h("div", { class: "examples" }, c.examples.map((id) => h("figure", {}, windowShot(base, id, method, 128),
        h("figcaption", { class: "mono", title: id }, id)))) : null));
}

// An 8x8 map embedding (row-major, sums to 1) as a small heatmap, scaled by ``top``.
function embedCanvas(values, top, stops) {
  const side = Math.round(Math.sqrt(values.length)) || 1;
  const px = 12;
  const canvas = h("canvas", { width: side * px, height: side * px, "aria-label": "mean saliency map" });
  const g = canvas.getContext && canvas.getContext("2d");
  if (!g) return canvas;
  values.forEach((v, k) => {
    g.fillStyle = v === null ? "#0f172a" : colorAt(stops, v / top);
    g.fillRect((k % side) * px, Math.floor(k / side) * px, px, px);
  });
  return canvas;
}
