// Run overview: headline numbers, the confusion matrix heatmap, top confusions, per-class table
// and the shortcut findings.
import { api, colorAt, enc, errorBox, fix, go, h, inkFor, int, legend, pct, sortableTable, statInfo, statTitle } from "./util.js";

const MANY = 30; // above this many classes the matrix starts from the most confused ones

export function render(main, ctx) {
  const root = h("div", { class: "stack" });
  main.replaceChildren(root);
  const { run, params } = ctx;
  const mode = params.cm === "share" ? "share" : "count";
  const stat = params.color || "";
  Promise.all([
    api(`api/runs/${enc(run.id)}/overview`),
    api(`api/runs/${enc(run.id)}/confusion`, stat ? { stat, method: params.method } : {}),
  ])
    .then(([ov, cm]) => {
      if (!root.isConnected) return;
      root.replaceChildren(
        kpis(ov),
        h("div", { class: "grid-2" }, matrixPanel(ctx, ov, cm, mode, stat), confusionsPanel(ctx, ov)),
        h("div", { class: "grid-2" }, classPanel(ctx, ov), shortcutsPanel(ctx, ov)),
      );
    })
    .catch((err) => root.isConnected && root.replaceChildren(errorBox(err)));
  return {};
}

function kpis(ov) {
  const r = ov.run;
  const kpi = (label, value, sub) =>
    h("div", { class: "panel kpi" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub", title: sub || "" }, sub || "\u00a0"));
  return h(
    "div",
    { class: "kpis" },
    kpi("Accuracy", pct(ov.accuracy), `${int(r.count - r.errors)} images predicted`),
    kpi("Balanced accuracy", pct(ov.balanced_accuracy), "mean recall over classes"),
    kpi("Macro F1", fix(ov.macro_f1, 3), classCount(ov)),
    kpi("Images", int(r.count), r.errors ? `${int(r.errors)} failed to load` : "none failed"),
    kpi("Methods", String(r.methods.length), r.methods.join(", ") || "no saliency maps"),
    h("div", { class: "panel kpi" },
      h("div", { class: "label" }, "Run"),
      h("div", { class: "value", style: { fontSize: "15px", marginTop: "6px" } }, h("span", { class: "status " + r.status }, r.status)),
      h("div", { class: "sub", title: `${r.model} on ${r.dataset}` }, `${r.model} · ${r.dataset}`)),
  );
}

// The classes in the data, and the model's when they differ ("60 of the model's 1000 classes").
function classCount(ov) {
  const seen = ov.classes_seen || ov.model_classes;
  if (!ov.model_classes || seen === ov.model_classes) return `${int(seen)} classes`;
  return `${int(seen)} of the model's ${int(ov.model_classes)} classes`;
}

function matrixPanel(ctx, ov, cm, mode, stat) {
  const { run, params, app } = ctx;
  const n = cm.labels.length;
  const search = (params.q || "").toLowerCase();
  let shown;
  if (search) {
    shown = cm.labels.map((l, i) => i).filter((i) => cm.labels[i].toLowerCase().includes(search));
  } else if (n > MANY) {
    const set = new Set();
    for (const c of ov.top_confusions) {
      set.add(cm.labels.indexOf(c.true));
      set.add(cm.labels.indexOf(c.pred));
      if (set.size >= MANY) break;
    }
    shown = [...set].filter((i) => i >= 0).sort((a, b) => a - b);
  } else {
    shown = cm.labels.map((l, i) => i);
  }
  const cols = shown.map((i) => cm.preds.indexOf(cm.labels[i])).filter((j) => j >= 0);
  const extraCols = cm.preds.map((p, j) => j).filter((j) => !cm.labels.includes(cm.preds[j]) && cm.cells.some((c) => c.p === j));
  const colIdx = [...cols, ...extraCols];
  const cellAt = new Map(cm.cells.map((c) => [c.t * 100003 + c.p, c]));

  const countStops = app.colormaps.Blues.stops;
  const statStops = app.colormaps.viridis.stops;
  const [lo, hi] = cm.stat_range || [0, 1];
  const colour = (cell) => {
    if (stat && cm.stat_range) {
      if (!cell || cell.value === null) return null;
      return colorAt(statStops, hi > lo ? (cell.value - lo) / (hi - lo) : 0.5);
    }
    if (!cell) return null;
    const t = mode === "share" ? cell.share : Math.sqrt(cell.count / Math.max(1, cm.max_count));
    return colorAt(countStops, 0.08 + 0.92 * t);
  };
  const small = colIdx.length > 20;
  const table = h("table", { class: "cm" + (small ? " small" : "") },
    h("thead", {}, h("tr", {},
      h("th", { class: "corner" }, "true ↓ / predicted →"),
      colIdx.map((j) => h("th", { title: cm.preds[j] }, h("span", { class: "vert" }, cm.preds[j]))))),
    h("tbody", {}, shown.map((i) => h("tr", {},
      h("th", { title: `${cm.labels[i]} (${int(cm.row_totals[i])} images)` }, cm.labels[i]),
      colIdx.map((j) => {
        const cell = cellAt.get(i * 100003 + j);
        const count = cell ? cell.count : 0;
        const bg = colour(cell);
        const text = !cell ? "0" : mode === "share" ? Math.round(100 * cell.share) + "%" : int(count);
        const title = `true ${cm.labels[i]} → predicted ${cm.preds[j]}: ${int(count)} images (${pct(cell ? cell.share : 0)} of the class)` +
          (stat && cell && cell.value !== null ? `; mean ${stat} = ${fix(cell.value)}` : "");
        return h("td", {
          class: [count ? "has" : "zero", cm.labels[i] === cm.preds[j] ? "diag" : ""].join(" "),
          style: bg ? { background: bg, color: inkFor(bg) } : {},
          title,
          "data-testid": "confusion-cell",
          "data-true": cm.labels[i],
          "data-pred": cm.preds[j],
          "data-count": String(count),
          onclick: count ? () => go("samples", { run: run.id, method: params.method, true: cm.labels[i], pred: cm.preds[j] }) : null,
        }, text);
      })))));

  const statOptions = [h("option", { value: "" }, mode === "share" ? "Row share" : "Image count"),
    ...run.stats.map((s) => h("option", { value: s, selected: s === stat, title: statTitle(run, s) }, `Mean ${s} (${params.method})`))];
  const setParam = (k, v) => go("overview", { ...params, [k]: v || undefined });
  const header = h("header", {},
    h("h2", {}, "Confusion matrix"),
    h("div", { class: "seg", role: "group", "aria-label": "Cell values" },
      h("button", { class: mode === "count" ? "on" : "", onclick: () => setParam("cm", "") }, "Counts"),
      h("button", { class: mode === "share" ? "on" : "", onclick: () => setParam("cm", "share") }, "Row %")),
    h("label", { class: "field compact" }, h("span", {}, "Colour by"),
      h("select", { "aria-label": "Colour cells by", title: stat ? statTitle(run, stat) : "Colour the cells by image count or by a statistic's mean",
        onchange: (e) => setParam("color", e.target.value) }, statOptions)),
    statInfo(run),
    n > 12 ? h("input", { type: "search", placeholder: `Search ${n} classes…`, value: params.q || "", "aria-label": "Search classes",
      onchange: (e) => setParam("q", e.target.value.trim()) }) : null);
  const key = stat && cm.stat_range
    ? legend(`Mean ${stat} (${cm.method})`, statStops, fix(lo, 2), fix(hi, 2))
    : mode === "share"
      ? legend("Share of the true class", countStops.slice(1), "0%", "100%")
      : legend("Images per cell (square-root scale)", countStops.slice(1), "1", int(cm.max_count));
  const note = (search || n > MANY)
    ? h("p", { class: "axis-note" }, `Showing ${shown.length} of ${n} classes` + (search ? ` matching “${params.q}”.` : " (those in the top confusions); search to choose others."))
    : h("p", { class: "axis-note" }, "Click a cell to see its images. The outlined diagonal holds the correct predictions.");
  return h("section", { class: "panel" }, header,
    h("div", { class: "body" }, shown.length ? h("div", { class: "cm-wrap" }, table) : h("div", { class: "empty" }, "No class matches."), key, note));
}

function confusionsPanel(ctx, ov) {
  const { run, params } = ctx;
  const top = ov.top_confusions.slice(0, 15);
  const max = Math.max(1, ...top.map((c) => c.count));
  return h("section", { class: "panel" },
    h("header", {}, h("h2", {}, "Top confusions")),
    h("div", { class: "body" }, top.length
      ? h("ul", { class: "confusions" }, top.map((c) => h("li", {
          title: `${c.count} ${c.true} images predicted as ${c.pred}`,
          onclick: () => go("samples", { run: run.id, method: params.method, true: c.true, pred: c.pred }),
        },
        h("span", { class: "pair" }, c.true, h("span", { class: "arrow" }, "→"), c.pred),
        h("span", { class: "num" }, int(c.count), h("span", { class: "muted" }, ` · ${pct(c.share, 0)}`)),
        h("span", { class: "bar" }, h("i", { style: { width: (100 * c.count / max).toFixed(1) + "%" } })))))
      : h("div", { class: "empty" }, "No mistakes.")));
}

function classPanel(ctx, ov) {
  const { run, params } = ctx;
  const meter = (v) => h("span", {}, fix(v, 3), h("span", { class: "meter" }, h("i", { style: { width: (100 * (v || 0)).toFixed(0) + "%" } })));
  const table = sortableTable([
    { key: "class", label: "Class" },
    { key: "precision", label: "Precision", num: true, fmt: meter },
    { key: "recall", label: "Recall", num: true, fmt: meter },
    { key: "f1", label: "F1", num: true, fmt: meter },
    { key: "support", label: "Images", num: true, fmt: int },
  ], ov.classes, { sortKey: "f1", desc: false, onRow: (r) => go("samples", { run: run.id, method: params.method, true: r.class }) });
  return h("section", { class: "panel" },
    h("header", {}, h("h2", {}, "Per-class metrics"), h("span", { class: "muted" }, "click a header to sort, a row to see its images")),
    h("div", { class: "body scroll" }, table));
}

const KINDS = { class: "class-wide", cluster: "cluster", region: "region" };

// A class-wide finding: the class's mean map beside the other classes' (box outlined), what
// masking and pasting the box did, and links to images whose evidence sits in it.
function classWide(ctx, s) {
  const w = s.class_wide;
  if (!w || !w.mean_map) return null;
  const { run, params, app } = ctx;
  const stops = app.colormaps.inferno.stops;
  const fig = (title, grid) => h("figure", {}, gridCanvas(grid, w.box, stops), h("figcaption", {}, title));
  const iv = w.intervention;
  const told = !iv
    ? h("span", { class: "muted" }, "not tested on a model")
    : h("span", {}, `box filled: ${pct(iv.removed, 0)} of decisions changed (elsewhere ${pct(iv.removed_control, 0)}) · pasted into other classes: ${pct(iv.pasted, 0)} (elsewhere ${pct(iv.pasted_control, 0)})`);
  const verdict = w.confirmed === true ? "confirmed" : w.confirmed === false ? "refuted" : "not confirmed";
  return h("div", { class: "class-wide", "data-testid": "shortcut-class-wide", "data-class": s.class },
    h("div", { class: "cw-maps" }, fig("this class", w.mean_map), w.others_map ? fig("other classes", w.others_map) : null),
    h("div", { class: "cw-facts" },
      h("div", {}, `${pct(w.share, 0)} of its images peak in the box, ${pct(w.other_share, 0)} of other classes' images`),
      h("div", {}, h("span", { class: "flag" + (w.confirmed === false ? " ok" : "") }, verdict), " ", told),
      w.examples.length ? h("div", { class: "cw-examples" }, "images: ", w.examples.map((id) =>
        h("a", { href: "#", class: "mono", onclick: (e) => { e.preventDefault(); go("samples", { run: run.id, method: params.method, true: s.class, sample: id }); } }, id))) : null));
}

function gridCanvas(grid, box, stops) {
  const px = 6;
  const rows = grid.length;
  const cols = rows ? grid[0].length : 0;
  const canvas = h("canvas", { width: cols * px, height: rows * px, "aria-label": "mean saliency map" });
  const g = canvas.getContext && canvas.getContext("2d");
  if (!g) return canvas;
  grid.forEach((row, y) => row.forEach((v, x) => { g.fillStyle = colorAt(stops, v); g.fillRect(x * px, y * px, px, px); }));
  if (box && box.length === 4) {
    const [y0, x0, y1, x1] = box;
    g.strokeStyle = "#38bdf8";
    g.lineWidth = 2;
    g.strokeRect(x0 * cols * px + 1, y0 * rows * px + 1, (x1 - x0) * cols * px - 2, (y1 - y0) * rows * px - 2);
  }
  return canvas;
}

function shortcutsPanel(ctx, ov) {
  const { run, params } = ctx;
  const flagged = ov.shortcuts.filter((s) => s.flagged);
  const body = !ov.shortcuts.length
    ? h("div", { class: "empty" }, "No shortcut analysis for this run. Run ", h("span", { class: "mono" }, "salience shortcuts"), " to look for recurring saliency strategies.")
    : h("div", {}, (flagged.length ? flagged : ov.shortcuts.slice(0, 8)).map((s) => h("div", { class: "shortcut" },
        h("div", { class: "row" },
          h("a", { href: "#", onclick: (e) => { e.preventDefault(); go("samples", { run: run.id, method: params.method, true: s.class }); } }, h("b", {}, s.class)),
          h("span", { class: "flag" + (s.flagged ? "" : " ok") }, s.flagged ? "flagged" : "ok"),
          s.kind ? h("span", { class: "kind", "data-kind": s.kind }, KINDS[s.kind] || s.kind) : null,
          Object.entries(s.region_share).map(([k, v]) => h("span", { class: "muted" }, `${k} ${pct(v, 0)}`))),
        h("div", { class: "reason" }, s.reason),
        classWide(ctx, s))));
  return h("section", { class: "panel" },
    h("header", {}, h("h2", {}, "Shortcut findings"), ov.shortcuts.length ? h("span", { class: "muted" }, `${flagged.length} of ${ov.shortcuts.length} classes flagged`) : null),
    h("div", { class: "body" }, body));
}
