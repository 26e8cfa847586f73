// Image detail (modal): the image with the chosen overlay and mask outlines, every method side
// by side, top-k probabilities, region masses per method and the per-image statistics.
import { api, enc, errorBox, fix, go, h, legend, pct, shot } from "./util.js";

const charts = [];
const PALETTE = ["#2458d6", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7a8699", "#f0e442"];

export function destroyCharts() {
  while (charts.length) charts.pop().destroy();
}

// The modal dialog for one image; ``sampleId`` is its first title (the path replaces it).
export function modal(sampleId, { prev, next, close }, ...body) {
  const title = sampleId;
  destroyCharts();
  const root = document.getElementById("modal-root");
  const back = h("div", { class: "modal-back", onclick: (e) => e.target === back && close() });
  const dialog = h("div", { class: "modal", role: "dialog", "aria-modal": "true", "aria-label": title, "data-testid": "sample-detail", "data-sample-id": sampleId },
    h("header", {},
      h("span", { class: "title", title }, title),
      h("button", { disabled: !prev, onclick: prev, "aria-label": "Previous image", title: "Previous image" }, "‹ prev"),
      h("button", { disabled: !next, onclick: next, "aria-label": "Next image", title: "Next image" }, "next ›"),
      h("button", { onclick: close, "aria-label": "Close", title: "Close (Esc)" }, "✕")),
    h("div", { class: "content" }, ...body));
  back.append(dialog);
  root.replaceChildren(back);
  return dialog.querySelector(".content");
}

// A chart in the image dialog (destroyed with it), or in ``owner`` when given.
export function chart(canvas, config, owner = charts) {
  if (!window.Chart) return;
  owner.push(new window.Chart(canvas, config));
}

export function barOptions({ horizontal = false, max = null, percent = false } = {}) {
  const value = { beginAtZero: true, ...(max !== null ? { max } : {}), grid: { color: "#eef1f5" },
    ticks: { callback: (v) => (percent ? Math.round(v * 100) + "%" : v) } };
  return {
    indexAxis: horizontal ? "y" : "x",
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
      tooltip: { callbacks: { label: (c) => `${c.dataset.label ? c.dataset.label + ": " : ""}${percent ? pct(c.parsed[horizontal ? "x" : "y"]) : fix(c.parsed[horizontal ? "x" : "y"])}` } } },
    scales: horizontal ? { x: value, y: { grid: { display: false } } } : { y: value, x: { grid: { display: false } } },
  };
}

export function openDetail(ctx, sampleId, nav) {
  const { run, params, app } = ctx;
  const content = modal(sampleId, nav, h("div", { class: "loading" }, "Loading image…"));
  api(`api/runs/${enc(run.id)}/samples/${sampleId.split("/").map(enc).join("/")}`)
    .then((d) => {
      if (!content.isConnected) return;
      content.replaceChildren(...body(run, params, app, d));
      const title = content.parentElement.querySelector("header .title");
      title.textContent = d.path;
      title.title = `${d.path} (sample ${d.sample_id})`;
      drawCharts(content, d);
    })
    .catch((err) => content.isConnected && content.replaceChildren(errorBox(err)));
}

function body(run, params, app, d) {
  const method = params.method;
  const showOutline = d.has_mask;
  const big = shot(run.id, d.sample_id, d.error ? null : method, { size: 512, outline: showOutline, lazy: false, signed: run.signed.includes(method) });
  big.classList.add("big");
  const outcome = d.error ? h("span", { class: "flag" }, "failed: " + d.error)
    : h("span", { class: "flag" + (d.correct ? " ok" : "") }, d.correct ? "correct" : "wrong");
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "True class"), h("dd", {}, d.label ?? "–"),
    h("dt", {}, "Predicted"), h("dd", {}, d.pred ?? "–", " ", outcome),
    h("dt", {}, "Confidence"), h("dd", { class: "num" }, pct(d.confidence)),
    h("dt", {}, "Loss"), h("dd", { class: "num" }, fix(d.loss)),
    d.split ? [h("dt", {}, "Split"), h("dd", {}, d.split)] : null,
    Object.entries(d.meta).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    h("dt", {}, "File"), h("dd", { class: "mono" }, h("a", { href: `api/runs/${enc(run.id)}/files/${d.path.split("/").map(enc).join("/")}`, target: "_blank", rel: "noopener" }, d.path)),
    app.runs.length > 1 ? [h("dt", {}, "Other runs"), h("dd", {}, h("a", { href: "#", "data-testid": "compare-link",
      onclick: (e) => { e.preventDefault(); go("compare", { run: run.id, method, sample: d.sample_id }); } }, "this image's maps in two runs side by side"))] : null);
  const regionKeys = showOutline ? h("div", { class: "region-keys" }, "Mask outlines:",
    Object.entries(d.region_colors).map(([name, color]) => h("span", {}, h("i", { style: { background: color } }), name)),
    h("label", {}, h("input", { type: "checkbox", checked: true, onchange: (e) => big.querySelector(".outline").style.display = e.target.checked ? "" : "none" }), " show")) : null;
  const legends = h("div", {},
    legend("Saliency", app.colormaps.inferno.stops, "low", "high", { small: true }),
    legend("Signed maps", app.colormaps.RdBu_r.stops, "against", "for", { small: true }));
  const top = h("div", { class: "detail-top" },
    h("div", {}, big, regionKeys, legends),
    h("div", { class: "stack" },
      h("section", { class: "panel" }, h("div", { class: "body" }, facts)),
      d.topk.length ? h("section", { class: "panel" }, h("header", {}, h("h2", {}, `Top-${d.topk.length} probabilities`)),
        h("div", { class: "body" }, h("div", { class: "chart-box" }, h("canvas", { id: "topk-chart", "aria-label": "top-k probabilities" })))) : null));
  const tiles = h("section", {},
    h("h3", { style: { marginBottom: "8px" } }, `Every method (${d.methods.length})`),
    h("div", { class: "methods-strip" }, d.methods.map((m) => {
      const first = Object.entries(m.region_share).filter(([, v]) => v !== null).sort((a, b) => b[1] - a[1])[0];
      return h("div", { class: "method-tile" + (m.method === method ? " current" : "") },
        shot(run.id, d.sample_id, m.error ? null : m.method, { size: 256, outline: showOutline, lazy: false, signed: run.signed.includes(m.method) }),
        h("div", { class: "name" }, m.method, h("span", {}, m.error ? m.error : first ? `${first[0]} ${pct(first[1], 0)}` : "")));
    })));
  const statNames = [...new Set(d.methods.flatMap((m) => Object.keys(m.stats)))];
  const rows = [...d.regions.map((r) => [`share in ${r}`, (m) => pct(m.region_share[r])]), ...statNames.map((s) => [s, (m) => fix(m.stats[s])])];
  const table = h("table", { class: "data" },
    h("thead", {}, h("tr", {}, h("th", {}, "Statistic"), d.methods.map((m) => h("th", {}, m.method)))),
    h("tbody", {}, rows.map(([name, get]) => h("tr", {}, h("td", {}, name), d.methods.map((m) => h("td", { class: "num" }, m.error ? "–" : get(m)))))));
  const bottom = h("div", { class: "grid-2", style: { gridTemplateColumns: d.regions.length ? "minmax(0,1fr) minmax(0,1fr)" : "1fr" } },
    d.regions.length ? h("section", { class: "panel" }, h("header", {}, h("h2", {}, "Share of positive saliency per region")),
      h("div", { class: "body" }, h("div", { class: "chart-box tall" }, h("canvas", { id: "region-chart", "aria-label": "region masses" })))) : null,
    h("section", { class: "panel" }, h("header", {}, h("h2", {}, "Per-image statistics")), h("div", { class: "body", style: { overflowX: "auto" } }, table)));
  return [top, tiles, bottom];
}

function drawCharts(content, d) {
  const topk = content.querySelector("#topk-chart");
  if (topk) {
    chart(topk, {
      type: "bar",
      data: { labels: d.topk.map((t) => t.class), datasets: [{ data: d.topk.map((t) => t.prob),
        backgroundColor: d.topk.map((t) => (t.class === d.label ? "#13795b" : t.class === d.pred ? "#c2362b" : "#9aa8bd")) }] },
      options: { ...barOptions({ horizontal: true, max: 1, percent: true }), plugins: { ...barOptions({ horizontal: true, percent: true }).plugins, legend: { display: false } } },
    });
  }
  const regions = content.querySelector("#region-chart");
  if (regions) {
    chart(regions, {
      type: "bar",
      data: { labels: d.regions, datasets: d.methods.map((m, i) => ({ label: m.method, data: d.regions.map((r) => m.region_share[r]), backgroundColor: PALETTE[i % PALETTE.length] })) },
      options: barOptions({ max: 1, percent: true }),
    });
  }
}
