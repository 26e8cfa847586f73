// Image detail (modal): the image with the chosen overlay and mask outlines, every method side
// by side, top-k probabilities, region masses per method and the per-image statistics.
import { api, enc, encPath, errorBox, fix, go, h, legend, pct, shot, statInfo, statTitle } from "./util.js";

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
  Promise.all([
    api(`api/runs/${enc(run.id)}/samples/${sampleId.split("/").map(enc).join("/")}`),
    api(`api/runs/${enc(run.id)}/live`).catch(() => null),
  ])
    .then(([d, live]) => {
      if (!content.isConnected) return;
      content.replaceChildren(...body(run, params, app, d, live));
      const title = content.parentElement.querySelector("header .title");
      title.textContent = d.path;
      title.title = `${d.path} (sample ${d.sample_id})`;
      drawCharts(content, d);
    })
    .catch((err) => content.isConnected && content.replaceChildren(errorBox(err)));
}

// Live maps are computed one at a time by the server: ask for their numbers one after the
// other (each computes the map), then show the PNG, which the server then has in its cache.
let liveChain = Promise.resolve();
function liveInfo(run, method, sampleId, target) {
  const path = `api/runs/${enc(run.id)}/live-info/${enc(method)}/${encPath(sampleId)}`;
  const next = liveChain.then(() => api(path, target === null ? {} : { target }));
  liveChain = next.catch(() => null);
  return next;
}
const liveSrc = (run, method, sampleId, target, size) =>
  `api/runs/${enc(run.id)}/live/${enc(method)}/${encPath(sampleId)}?size=${size}` + (target === null ? "" : `&target=${target}`);

// The big image's overlay: a full-resolution live map for pixel methods when a model is loaded,
// else the stored map smoothed (bilinear) up to the display size; and a note on its resolution.
function bigShot(run, d, method, live, showOutline) {
  const predIndex = d.topk.length ? d.topk[0].index : null;
  const pixel = live && live.pixel_methods.includes(method);
  const isLive = Boolean(live && live.available && pixel && !d.error);
  const base = `api/runs/${enc(run.id)}`;
  const smooth = `${base}/overlay/${enc(method)}/${encPath(d.sample_id)}?size=512&smooth=true`;
  const big = shot(run.id, d.sample_id, d.error ? null : method, { size: 512, outline: showOutline, lazy: false,
    signed: run.signed.includes(method), ovSrc: isLive ? "" : smooth });
  big.classList.add("big");
  let note = null;
  const [mh, mw] = live ? live.map_size : run.map_size;
  const input = live ? live.input_size : null;
  if (isLive) {
    note = h("p", { class: "res-note", "data-testid": "resolution-note" }, `${method}: computing the full-resolution map (${input || "input"} px)…`);
    const ov = big.querySelector("img.ov");
    liveInfo(run, method, d.sample_id, predIndex)
      .then((info) => {
        ov.src = liveSrc(run, method, d.sample_id, predIndex, 512);
        note.textContent = `${method}: full resolution, ${info.map_size.join("×")} computed live (stored at ${mh}×${mw})`;
      })
      .catch((err) => {
        ov.src = smooth;
        note.textContent = `stored map at ${mh}×${mw}, smoothed: ${err.message}`;
      });
  } else if (input && mh && Math.max(mh, mw) < input && !d.error) {
    note = h("p", { class: "res-note", "data-testid": "resolution-note" },
      `Stored at ${mh}×${mw}, shown smoothed; run the audit with --map-size ${input} for full resolution` +
      (pixel ? ", or serve with --model to compute it live." : "."));
  }
  return [big, note];
}

// A map tile for one class: the live map (numbers from /live-info), or the stored map.
function classTile(run, d, { method, target, title, testid, live, stored = false }) {
  const caption = h("span", {}, stored ? "stored map" : "computing…");
  const usable = stored ? run.methods.includes(method) : live && live.available;
  const tile = h("div", { class: "method-tile class-tile", "data-testid": testid, "data-target": target ?? "" },
    usable
      ? shot(run.id, d.sample_id, method, { size: 256, lazy: false, signed: (live ? live.signed : run.signed).includes(method), ovSrc: stored ? null : "" })
      : h("div", { class: "shot needs-model" }, h("p", {}, "start ", h("code", {}, "salience serve --model"), " to compute maps for other classes")),
    h("div", { class: "name" }, title, usable ? caption : h("span", {}, "no model loaded")));
  if (usable && !stored) {
    const ov = tile.querySelector("img.ov");
    ov.dataset.method = method;
    liveInfo(run, method, d.sample_id, target)
      .then((info) => {
        ov.src = liveSrc(run, method, d.sample_id, target, 256);
        caption.textContent = `${method} · p = ${pct(info.prob)}`;
      })
      .catch((err) => { caption.textContent = err.message; ov.style.display = "none"; });
  }
  return tile;
}

// Maps for the predicted class, the true class (when they differ) and any class the user picks,
// with any method: computed live by a loaded model, else a note on what that would need.
function classMaps(run, d, method, live) {
  const names = run.class_names;
  const predIndex = d.topk.length ? d.topk[0].index : names.indexOf(d.pred);
  const trueIndex = d.label === null ? -1 : names.indexOf(d.label);
  const available = Boolean(live && live.available);
  const methods = available ? live.methods : run.methods;
  let current = methods.includes(method) ? method : methods[0];
  let picked = null;
  const tiles = h("div", { class: "class-maps" });
  const draw = () => {
    const stored = !available;
    tiles.replaceChildren(...[
      classTile(run, d, { method: current, target: predIndex, title: `Predicted: ${d.pred ?? "–"}`, testid: "pred-class-map", live, stored }),
      !d.correct && trueIndex >= 0 ? classTile(run, d, { method: current, target: trueIndex, title: `True class: ${d.label}`, testid: "true-class-map", live }) : null,
      picked !== null ? classTile(run, d, { method: current, target: picked, title: `Picked: ${names[picked] ?? "class " + picked}`, testid: "picked-class-map", live }) : null].filter(Boolean));
  };
  const methodSelect = h("select", { "data-testid": "live-method-select", "aria-label": "Method for these maps", disabled: !available,
    onchange: (e) => { current = e.target.value; draw(); } }, methods.map((m) => h("option", { value: m, selected: m === current }, m)));
  const results = h("div", { class: "class-options", role: "listbox", "aria-label": "Classes" });
  const choose = (i) => { picked = i; draw(); };
  const option = (i, extra) => h("button", { type: "button", class: "class-option", role: "option", "data-testid": "class-option", "data-index": i,
    onclick: () => choose(i) }, names[i] ?? `class ${i}`, extra ? h("span", { class: "muted" }, extra) : null);
  const list = (q) => {
    const query = q.trim().toLowerCase();
    const shown = query
      ? names.map((n, i) => [n, i]).filter(([n]) => n.toLowerCase().includes(query)).slice(0, 12).map(([, i]) => option(i))
      : d.topk.slice(0, 5).map((t) => option(t.index, pct(t.prob)));
    if (!available) return;
    results.replaceChildren(...(shown.length ? shown : [h("span", { class: "muted" }, "no class matches")]));
  };
  const search = h("input", { type: "search", "data-testid": "class-picker", disabled: !available, "aria-label": "Search classes",
    placeholder: available ? `Search ${names.length} classes…` : "needs a loaded model",
    oninput: (e) => list(e.target.value),
    onkeydown: (e) => { if (e.key === "Enter") { const first = results.querySelector("button"); if (first) first.click(); } } });
  list("");
  draw();
  return h("section", { class: "panel", "data-testid": "class-maps" },
    h("header", {}, h("h2", {}, "Maps for other classes"),
      h("span", { class: "muted", title: available ? live.model : null }, available ? `computed live by ${live.model.split("/").pop()}` : "stored maps only: no model loaded"),
      h("div", { class: "spacer" }),
      h("label", { class: "field compact" }, h("span", {}, "Method"), methodSelect)),
    h("div", { class: "body class-body" },
      tiles,
      h("div", { class: "picker" }, h("h3", {}, "Map for any class"), search,
        h("div", { class: "muted small" }, available ? "top-5 predictions first; type to search"
          : ["Any class and any method, computed live, once the explorer runs with the audited model: ",
            h("code", {}, "salience serve RUN --model SPEC [--weights FILE]")]), results)));
}

function body(run, params, app, d, live) {
  const method = params.method;
  const showOutline = d.has_mask;
  const [big, resNote] = bigShot(run, d, method, live, showOutline);
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
    h("div", {}, big, resNote, regionKeys, legends),
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
    h("tbody", {}, rows.map(([name, get]) => h("tr", {},
      h("td", { class: statTitle(run, name) ? "stat-name" : "", title: statTitle(run, name), "data-testid": "stat-name" }, name),
      d.methods.map((m) => h("td", { class: "num" }, m.error ? "–" : get(m)))))));
  const bottom = h("div", { class: "grid-2", style: { gridTemplateColumns: d.regions.length ? "minmax(0,1fr) minmax(0,1fr)" : "1fr" } },
    d.regions.length ? h("section", { class: "panel" }, h("header", {}, h("h2", {}, "Share of positive saliency per region")),
      h("div", { class: "body" }, h("div", { class: "chart-box tall" }, h("canvas", { id: "region-chart", "aria-label": "region masses" })))) : null,
    h("section", { class: "panel" }, h("header", {}, h("h2", {}, "Per-image statistics"), h("div", { class: "spacer" }), statInfo(run, rows.map(([n]) => n))),
      h("div", { class: "body", style: { overflowX: "auto" } }, table)));
  return [top, d.error ? null : classMaps(run, d, method, live), tiles, bottom].filter(Boolean);
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
