// Two runs over the same images: accuracy change per class, flipped predictions, and any
// image's maps from both runs next to each other.
import { api, enc, errorBox, fix, go, h, int, pct, shot, sortableTable } from "./util.js";
import { barOptions, chart, destroyCharts, modal } from "./detail.js";

const PAGE = 48;
const pageCharts = [];
const KINDS = [["all", "All flips"], ["fixed", "Fixed (wrong → right)"], ["broken", "Broken (right → wrong)"], ["changed", "Changed (both wrong)"]];

export function render(main, ctx) {
  const { run, params, app } = ctx;
  while (pageCharts.length) pageCharts.pop().destroy();
  const root = h("div", { class: "stack" });
  main.replaceChildren(root);
  const others = app.runs.filter((r) => r.id !== run.id && r.status !== "damaged");
  if (!others.length) {
    root.append(h("div", { class: "panel empty" }, "Comparing needs two runs: start the explorer with both, e.g. ",
      h("span", { class: "mono" }, "salience serve runs/v1 runs/v2"), "."));
    return {};
  }
  const b = others.some((r) => r.id === params.b) ? params.b : others[0].id;
  if (b !== params.b) {
    go("compare", { ...params, b }, { replace: true });
    return {};
  }
  const kind = KINDS.some(([k]) => k === params.kind) ? params.kind : "all";
  const page = Math.max(1, Number(params.page || 1));
  const picker = h("label", { class: "field compact" }, h("span", {}, "Compare with"),
    h("select", { "data-testid": "compare-select", onchange: (e) => go("compare", { run: run.id, method: params.method, b: e.target.value }) },
      others.map((r) => h("option", { value: r.id, selected: r.id === b }, `${r.name} · ${r.model}`))));
  const head = h("section", { class: "panel" }, h("header", {}, h("h2", {}, `${run.name} (A) vs ${app.byId[b].name} (B)`), h("div", { class: "spacer" }), picker),
    h("div", { class: "body" }, h("div", { class: "muted" }, "Loading…")));
  const flipsBox = h("section", { class: "panel" }, h("header", {}, h("h2", {}, "Images whose prediction changed")), h("div", { class: "body" }, h("div", { class: "muted" }, "Loading…")));
  const mapsBox = h("section", { class: "panel", "data-testid": "map-comparison" },
    h("header", {}, h("h2", {}, `Where the models look (${params.method})`)),
    h("div", { class: "body" }, h("div", { class: "muted" }, "Comparing every shared image's maps…")));
  root.append(head, mapsBox, flipsBox);
  const base = `api/compare/${enc(run.id)}/${enc(b)}`;
  let flipItems = [];

  api(base).then((s) => {
    if (!root.isConnected) return;
    head.querySelector(".body").replaceChildren(...summary(ctx, s));
    drawPerClass(head, s);
  }).catch((err) => root.isConnected && head.querySelector(".body").replaceChildren(errorBox(err)));

  api(`${base}/maps`, { method: params.method }).then((m) => {
    if (root.isConnected) mapsBox.querySelector(".body").replaceChildren(...mapSummary(ctx, b, m));
  }).catch((err) => root.isConnected && mapsBox.querySelector(".body").replaceChildren(errorBox(err)));

  api(`${base}/flips`, { kind, true: params.true, offset: (page - 1) * PAGE, limit: PAGE }).then((f) => {
    if (!root.isConnected) return;
    flipItems = f.items;
    flipsBox.querySelector(".body").replaceChildren(flipTabs(ctx, b, kind, f, page), flipCards(ctx, b, f));
    update(ctx);
  }).catch((err) => root.isConnected && flipsBox.querySelector(".body").replaceChildren(errorBox(err)));

  function update(c) {
    const id = c.params.sample;
    if (!id) { destroyCharts(); document.getElementById("modal-root").replaceChildren(); return; }
    const ids = flipItems.map((x) => x.sample_id);
    const at = ids.indexOf(id);
    const nav = (k) => (at >= 0 && ids[at + k] !== undefined ? () => go("compare", { ...c.params, sample: ids[at + k] }) : null);
    const close = () => { const { sample, ...rest } = c.params; go("compare", rest); };
    pairDetail(c, b, id, { prev: nav(-1), next: nav(1), close });
  }
  return { update };
}

function summary(ctx, s) {
  const d = s.accuracy_b - s.accuracy_a;
  const arrow = (x) => h("span", { class: x > 0 ? "delta-up" : x < 0 ? "delta-down" : "muted" }, (x > 0 ? "+" : "") + (100 * x).toFixed(1) + " pt");
  const kpi = (label, value, sub) => h("div", { class: "panel kpi" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
  const table = sortableTable([
    { key: "class", label: "Class" },
    { key: "accuracy_a", label: "A", num: true, fmt: (v) => pct(v) },
    { key: "accuracy_b", label: "B", num: true, fmt: (v) => pct(v) },
    { key: "delta", label: "Change", num: true, fmt: arrow },
    { key: "support", label: "Images", num: true, fmt: int },
  ], s.per_class, { sortKey: "delta", desc: false, onRow: (r) => go("compare", { ...ctx.params, true: r.class, page: undefined }) });
  return [
    h("div", { class: "kpis" },
      kpi("Accuracy A → B", h("span", {}, pct(s.accuracy_a), " → ", pct(s.accuracy_b)), h("span", {}, arrow(d), ` on ${int(s.matched)} shared images`)),
      kpi("Fixed", int(s.fixed), "wrong in A, right in B"),
      kpi("Broken", int(s.broken), "right in A, wrong in B"),
      kpi("Changed", int(s.changed), "wrong in both, different guess")),
    h("div", { class: "grid-2", style: { gridTemplateColumns: "minmax(0,1fr) minmax(0,1fr)" } },
      h("div", {}, h("h3", {}, "Accuracy change per class"), h("div", { class: "chart-box tall" }, h("canvas", { id: "per-class-chart", "aria-label": "accuracy change per class" }))),
      h("div", {}, h("h3", {}, "Per class (click a row to see its flips)"), h("div", { class: "scroll", style: { maxHeight: "320px" } }, table))),
  ];
}

function mapSummary(ctx, b, m) {
  const { run, params } = ctx;
  const kpi = (label, value, sub) => h("div", { class: "panel kpi" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
  const sim = m.similarity.spearman;
  const floor = m.noise_floor;
  const shifts = Object.entries(m.region_shift).filter(([, v]) => v !== null);
  const shiftRows = shifts.map(([r, v]) => h("div", {},
    `${r} `, h("span", { class: v > 0 ? "delta-up" : v < 0 ? "delta-down" : "muted" }, (v > 0 ? "+" : "") + (100 * v).toFixed(1) + " pt"), " ",
    h("span", { class: "flag" + (m.region_shift_real[r] ? "" : " ok"), title: `noise floor ±${(100 * (floor.region_shift[r] ?? 0)).toFixed(1)} pt` },
      m.region_shift_real[r] ? "real" : "within noise")));
  const silent = m.silent_changes;
  const perClass = sortableTable([
    { key: "class", label: "Class" },
    { key: "spearman", label: "Map similarity (Spearman)", num: true, fmt: (v) => fix(v, 2) },
    ...Object.keys(m.region_shift).map((r) => ({ key: "shift_" + r, label: `${r} shift`, num: true, fmt: (v) => (v === null || v === undefined ? "–" : (v > 0 ? "+" : "") + (100 * v).toFixed(1) + " pt") })),
  ], m.per_class.map((c) => ({ class: c.class, spearman: c.similarity.spearman,
    ...Object.fromEntries(Object.entries(c.region_shift || {}).map(([r, v]) => ["shift_" + r, v])) })), { sortKey: "spearman", desc: false });
  return [
    h("div", { class: "kpis" },
      kpi("Map similarity A vs B", sim ? fix(sim.mean, 2) : "–", sim ? `mean Spearman (median ${fix(sim.median, 2)}); unrelated images: ${fix(floor.similarity.spearman, 2)}` : ""),
      shifts.length ? kpi("Saliency shift, B minus A", h("span", { style: { fontSize: "14px" } }, shiftRows), `share of positive saliency per region; ${floor.kind}`) : null,
      kpi("Silent changes", int(silent.count), `${pct(silent.share)} of images: same prediction, maps no closer than unrelated images`)),
    h("div", { class: "grid-2", style: { gridTemplateColumns: "minmax(0,1fr) minmax(0,1fr)" } },
      h("div", {}, h("h3", {}, "Per class"), h("div", { class: "scroll", style: { maxHeight: "320px" } }, perClass)),
      h("div", {}, h("h3", {}, "Silent changes (most changed first)"), silent.sample_ids.length
        ? h("div", { class: "cards", style: { gridTemplateColumns: "repeat(auto-fill, minmax(220px, 1fr))" } }, silent.sample_ids.slice(0, 12).map((id) =>
            h("div", { class: "card", "data-testid": "silent-card", "data-sample-id": id, onclick: () => go("compare", { ...params, sample: id }) },
              h("div", { class: "vs" },
                h("div", { class: "side" }, shot(run.id, id, m.method, { tag: "A", size: 128, signed: run.signed.includes(m.method) })),
                h("div", { class: "side" }, shot(b, id, m.method, { tag: "B", size: 128, signed: run.signed.includes(m.method) }))))))
        : h("div", { class: "empty" }, "No image kept its prediction while its map changed beyond the noise floor."))),
  ];
}

function drawPerClass(head, s) {
  const canvas = head.querySelector("#per-class-chart");
  if (!canvas) return;
  const rows = [...s.per_class].sort((x, y) => x.delta - y.delta).slice(0, 40);
  chart(canvas, {
    type: "bar",
    data: { labels: rows.map((r) => r.class), datasets: [{ label: "B minus A", data: rows.map((r) => r.delta),
      backgroundColor: rows.map((r) => (r.delta >= 0 ? "#13795b" : "#c2362b")) }] },
    options: { ...barOptions({ horizontal: true, percent: true }), plugins: { legend: { display: false } },
      scales: { x: { grid: { color: "#eef1f5" }, ticks: { callback: (v) => (v > 0 ? "+" : "") + Math.round(v * 100) + " pt" } }, y: { grid: { display: false } } } },
  }, pageCharts);
}

function flipTabs(ctx, b, kind, f, page) {
  const { params } = ctx;
  const pages = Math.max(1, Math.ceil(f.total / PAGE));
  return h("div", { class: "toolbar" },
    h("div", { class: "seg", role: "group" }, KINDS.map(([k, label]) =>
      h("button", { class: k === kind ? "on" : "", "data-kind": k, onclick: () => go("compare", { ...params, kind: k, page: undefined, sample: undefined }) }, label))),
    params.true ? h("span", { class: "chip" }, `true ${params.true}`, h("button", { onclick: () => { const n = { ...params }; delete n.true; go("compare", n); } }, "×")) : null,
    h("span", { class: "count", "data-testid": "flip-count" }, `${int(f.total)} images`),
    h("div", { class: "spacer" }),
    h("div", { class: "pager" },
      h("button", { disabled: page <= 1, onclick: () => go("compare", { ...params, page: page - 1 }) }, "‹"),
      h("span", {}, `page ${page} of ${pages}`),
      h("button", { disabled: page >= pages, onclick: () => go("compare", { ...params, page: page + 1 }) }, "›")));
}

function flipCards(ctx, b, f) {
  const { run, params } = ctx;
  if (!f.items.length) return h("div", { class: "empty" }, "No image changed its prediction here.");
  return h("div", { class: "cards", style: { gridTemplateColumns: "repeat(auto-fill, minmax(300px, 1fr))" } }, f.items.map((x) =>
    h("div", { class: "card", "data-testid": "flip-card", "data-sample-id": x.sample_id, title: x.path, onclick: () => go("compare", { ...params, sample: x.sample_id }) },
      h("div", { class: "vs" },
        h("div", { class: "side" }, shot(run.id, x.sample_id, params.method, { tag: "A", signed: run.signed.includes(params.method) })),
        h("div", { class: "side" }, shot(b, x.sample_id, params.method, { tag: "B", signed: run.signed.includes(params.method) }))),
      h("div", { class: "info" },
        h("div", { class: "line1" }, h("span", { class: "names" }, `true ${x.label}`), h("span", { class: "flag" + (x.kind === "fixed" ? " ok" : "") }, x.kind)),
        h("div", { class: "line2" }, h("span", {}, `A: ${x.pred_a} (${fix(x.confidence_a, 2)})`), h("span", {}, `B: ${x.pred_b} (${fix(x.confidence_b, 2)})`))))));
}

function pairDetail(ctx, b, sampleId, nav) {
  const { run, app } = ctx;
  const runB = app.byId[b];
  const methods = run.methods.filter((m) => runB.methods.includes(m));
  const row = (who, runId) => h("div", { class: "pair-row" }, h("div", { class: "who" }, who),
    methods.map((m) => h("div", { class: "method-tile" }, shot(runId, sampleId, m, { size: 256, lazy: false, signed: run.signed.includes(m) }), h("div", { class: "name" }, m))));
  const facts = h("p", { class: "muted" }, "Loading predictions…");
  const content = modal(sampleId, nav, facts, row(`A · ${run.name}`, run.id), row(`B · ${runB.name}`, b));
  const path = (id) => id.split("/").map(enc).join("/");
  Promise.all([api(`api/runs/${enc(run.id)}/samples/${path(sampleId)}`), api(`api/runs/${enc(b)}/samples/${path(sampleId)}`)])
    .then(([da, db]) => {
      content.parentElement.querySelector("header .title").textContent = da.path;
      facts.className = "";
      facts.replaceChildren(`True ${da.label}. A predicted ${da.pred} (${pct(da.confidence)}); B predicted ${db.pred} (${pct(db.confidence)}).`);
    })
    .catch((err) => facts.replaceChildren(errorBox(err)));
}
