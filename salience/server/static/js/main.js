// The explorer's shell: loads the runs, keeps the header controls in sync with the URL and
// hands the page to one view. Everything a user sees is described by the URL hash.
import { api, errorBox, go, h, readHash } from "./util.js";
import * as overview from "./overview.js";
import * as samples from "./samples.js";
import * as compare from "./compare.js";
import * as monitor from "./monitor.js";
import * as slices from "./slices.js";
import * as attack from "./attack.js";

const VIEWS = { overview, samples, compare, monitor, slices, attack };
export const app = { runs: [], byId: {}, colormaps: {} };

const $ = (id) => document.getElementById(id);
let current = { key: null, view: null, handle: null };

async function start() {
  const main = $("main");
  try {
    const [runs, maps] = await Promise.all([api("api/runs"), api("api/colormaps")]);
    app.runs = runs.runs;
    app.byId = Object.fromEntries(app.runs.map((r) => [r.id, r]));
    app.colormaps = Object.fromEntries(maps.map((m) => [m.name, m]));
  } catch (err) {
    main.replaceChildren(errorBox(err));
    return;
  }
  $("run-select").replaceChildren(...app.runs.map((r) => h("option", { value: r.id },
    r.status === "damaged" ? `${r.name} · damaged` : `${r.name} · ${r.model || "model"}`)));
  $("run-select").addEventListener("change", (e) => {
    const { view } = readHash();
    go(view, { run: e.target.value });
  });
  $("method-select").addEventListener("change", (e) => {
    const { view, params } = readHash();
    go(view, { ...params, method: e.target.value });
  });
  const saved = Number(stored("salience.opacity") ?? 60);
  $("opacity").value = String(saved);
  setOpacity(saved);
  $("opacity").addEventListener("input", (e) => {
    setOpacity(Number(e.target.value));
    store("salience.opacity", e.target.value);
  });
  document.addEventListener("keydown", (e) => {
    const dialog = document.querySelector("[data-testid=sample-detail]");
    if (dialog && (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
      const button = dialog.querySelector(`header button[aria-label="${e.key === "ArrowLeft" ? "Previous" : "Next"} image"]`);
      if (button && !button.disabled) button.click();
    }
    if (e.key === "Escape" && document.querySelector(".modal-back")) {
      const { view, params } = readHash();
      const { sample, ...rest } = params;
      go(view, rest);
    }
  });
  window.addEventListener("hashchange", route);
  route();
}

function setOpacity(value) {
  document.documentElement.style.setProperty("--overlay-opacity", String(value / 100));
}

function route() {
  const { view: rawView, params } = readHash();
  const view = VIEWS[rawView] ? rawView : "overview";
  const usable = app.runs.find((r) => r.status !== "damaged") || app.runs[0];
  const run = app.byId[params.run] ? params.run : usable.id;
  const summary = app.byId[run];
  const method = summary.methods.includes(params.method) ? params.method : summary.methods[0] || "";
  if (view !== rawView || run !== params.run || (method && method !== params.method)) {
    go(view, { ...params, run, ...(method ? { method } : {}) }, { replace: true });
    return;
  }
  $("run-select").value = run;
  const ms = $("method-select");
  const options = summary.methods.join("|");
  if (ms.dataset.options !== options) {
    ms.replaceChildren(...summary.methods.map((m) => h("option", { value: m }, m)));
    ms.dataset.options = options;
  }
  ms.value = method;
  ms.disabled = summary.methods.length === 0;
  document.querySelectorAll(".tabs a").forEach((a) => {
    a.classList.toggle("active", a.dataset.view === view);
    a.href = `#/${a.dataset.view}?run=${encodeURIComponent(run)}`;
  });
  if (summary.status === "damaged") {  // listed with its reason; its views cannot be read
    current = { key: null, view, handle: null };
    document.getElementById("modal-root").replaceChildren();
    $("main").replaceChildren(h("div", { class: "error-box", "data-testid": "damaged-run" },
      `Run ${summary.name} cannot be shown: ${summary.problem || "damaged"}`));
    return;
  }
  const { sample, ...rest } = params;
  const key = view + "?" + JSON.stringify(rest);
  const ctx = { app, run: summary, params, view };
  if (key === current.key && current.handle && current.handle.update) {
    current.handle.update(ctx);
    return;
  }
  document.getElementById("modal-root").replaceChildren();
  const main = $("main");
  main.replaceChildren(h("div", { class: "loading" }, "Loading…"));
  current = { key, view, handle: VIEWS[view].render(main, ctx) };
}

start();

// Storage is unavailable in some frames (a notebook on another origin) and private windows:
// the explorer then simply forgets the setting.
function stored(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    /* not kept */
  }
}
