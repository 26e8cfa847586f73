// Small DOM, fetch, URL-state and formatting helpers shared by the views.
// Everything from the data (class, file, metadata and run names, sample ids) reaches the page
// as text nodes or attribute values through h(); nothing is parsed as HTML (no innerHTML), and
// an "on..." attribute takes only a function, never a string of script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("on")) { if (typeof v === "function") el.addEventListener(k.slice(2), v); }
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class ApiError extends Error {}

export async function api(path, params) {
  const url = path + (params ? "?" + query(params) : "");
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch { /* not JSON */ }
    throw new ApiError(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return res.json();
}

// Query string from an object; arrays repeat the key; empty values are dropped.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  return q.toString();
}

export const enc = (s) => encodeURIComponent(s);
// A sample id may contain slashes: encode each segment, keep the slashes.
export const encPath = (s) => String(s).split("/").map(encodeURIComponent).join("/");

export const pct = (x, d = 1) => (x === null || x === undefined ? "–" : (100 * x).toFixed(d) + "%");
export const fix = (x, d = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
export const int = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US"));

// --- URL state: "#/<view>?a=1&b=2" --------------------------------------------------------
export function readHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [view, qs] = raw.split("?");
  const params = {};
  for (const [k, v] of new URLSearchParams(qs || "")) {
    if (k === "meta") (params.meta ||= []).push(v);
    else params[k] = v;
  }
  return { view: view || "overview", params };
}

export function hashFor(view, params) {
  const qs = query(params);
  return "#/" + view + (qs ? "?" + qs : "");
}

export function go(view, params, { replace = false } = {}) {
  const target = hashFor(view, params);
  if (target === location.hash) return;
  if (replace) history.replaceState(null, "", target);
  else location.hash = target;
  if (replace) window.dispatchEvent(new HashChangeEvent("hashchange"));
}

export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("show"), 2600);
}

export function errorBox(err) {
  return h("div", { class: "error-box" }, err instanceof Error ? err.message : String(err));
}

// Colour helpers for heatmap cells and legends (stops come from the server's colormaps).
export function hexToRgb(hex) {
  const c = hex.replace("#", "");
  return [0, 2, 4].map((i) => parseInt(c.slice(i, i + 2), 16));
}

export function colorAt(stops, t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = hexToRgb(stops[i]);
  const b = hexToRgb(stops[i + 1]);
  const rgb = a.map((v, k) => Math.round(v + (b[k] - v) * f));
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

export function inkFor(rgbCss) {
  const [r, g, b] = rgbCss.match(/\d+/g).map(Number);
  const lum = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  return lum < 0.55 ? "#ffffff" : "#1c2330";
}

export function legend(title, stops, lo, hi, { small = false } = {}) {
  return h(
    "div",
    { class: "legend" + (small ? " small" : ""), "data-testid": "legend" },
    h("span", { class: "title" }, title),
    h("span", { class: "num" }, lo),
    h("span", { class: "bar", style: { background: `linear-gradient(90deg, ${stops.join(", ")})` } }),
    h("span", { class: "num" }, hi),
  );
}

// Sortable table: columns [{key, label, fmt, num}], rows of objects; onRow(row) on click.
export function sortableTable(columns, rows, { sortKey, desc = true, onRow, rowAttrs } = {}) {
  let key = sortKey || columns[0].key;
  let descending = desc;
  const table = h("table", { class: "data" });
  const render = () => {
    const sorted = [...rows].sort((a, b) => {
      const x = a[key], y = b[key];
      const cmp = typeof x === "string" ? x.localeCompare(y) : (x ?? -Infinity) - (y ?? -Infinity);
      return descending ? -cmp : cmp;
    });
    table.replaceChildren(
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {
        class: c.key === key ? "sorted" + (descending ? "" : " asc") : "",
        title: "Sort by " + c.label,
        onclick: () => { descending = c.key === key ? !descending : c.key !== "class"; key = c.key; render(); },
      }, c.label)))),
      h("tbody", {}, sorted.map((r) => h("tr", { onclick: onRow ? () => onRow(r) : null, ...(rowAttrs ? rowAttrs(r) : {}) },
        columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.fmt ? c.fmt(r[c.key], r) : r[c.key]))))),
    );
  };
  render();
  return table;
}

// An image with its saliency overlay (and optionally mask outlines) stacked on top.
// Signed maps go on a light grey copy of the image (as in salience.viz), so red and blue read.
// ``ovSrc`` replaces the stored overlay's address (a live or smoothed map); "" leaves it unset.
export function shot(runId, sampleId, method, { size = 192, tag = null, outline = false, lazy = true, signed = false, ovSrc = null } = {}) {
  const base = `api/runs/${enc(runId)}`;
  const src = ovSrc ?? `${base}/overlay/${enc(method)}/${encPath(sampleId)}?size=${size}`;
  return h("div", { class: "shot" + (method && signed ? " signed" : "") },
    h("img", { class: "base", src: `${base}/thumb/${encPath(sampleId)}?size=${size}`, alt: sampleId, loading: lazy ? "lazy" : "eager",
      onerror: (e) => e.target.parentElement.classList.add("missing") }),
    method ? h("img", { class: "ov", src: src || null, alt: `${method} saliency`,
      loading: lazy ? "lazy" : "eager", "data-testid": "saliency-overlay", "data-method": method,
      onerror: (e) => { e.target.style.display = "none"; } }) : null,
    outline ? h("img", { class: "outline", src: `${base}/outline/${encPath(sampleId)}?size=${size}`, alt: "region outlines" }) : null,
    tag ? h("span", { class: "tag" }, tag) : null);
}

// --- statistics: what each one means (the run summary's stat_descriptions, from the library) ---
const slug = (name) => name.toLowerCase().replace(/[^0-9a-z_]+/g, "_").replace(/^_+|_+$/g, "") || "region";

// One sentence on a statistic column, or on "share in <region>" rows; null when unknown.
export function statTitle(run, name) {
  const d = run.stat_descriptions || {};
  return d[name] || (name.startsWith("share in ") ? d["share_" + slug(name.slice(9))] : null) || null;
}

// An "(i)" disclosure listing what the statistics mean, for menus and tables that name them.
export function statInfo(run, names = run.stats, { label = "What the statistics mean" } = {}) {
  const known = names.filter((n) => statTitle(run, n));
  if (!known.length) return null;
  return h("details", { class: "stat-info", "data-testid": "stat-legend" },
    h("summary", { title: label, "aria-label": label }, "i"),
    h("div", { class: "stat-info-body" }, h("h3", {}, label),
      h("dl", {}, known.map((n) => [h("dt", { class: "mono" }, n), h("dd", {}, statTitle(run, n))]))));
}
