// The image grid: filters (all in the URL), server-side sorting and paging, cards with the
// chosen method's overlay, the selection's mean saliency map, and the image detail on click.
import { api, enc, errorBox, fix, go, h, int, legend, query, shot, statInfo, statTitle } from "./util.js";
import { openDetail } from "./detail.js";

export const PAGE = 60;
const FILTER_KEYS = ["true", "pred", "correct", "conf_min", "conf_max", "split", "meta", "region", "share_min", "share_max", "errors"];

export function filtersOf(params) {
  const f = {};
  for (const k of FILTER_KEYS) if (params[k] !== undefined && params[k] !== "") f[k] = params[k];
  return f;
}

export function render(main, ctx) {
  const { run, params } = ctx;
  const root = h("div", { class: "samples-layout" });
  main.replaceChildren(root);
  const page = Math.max(1, Number(params.page || 1));
  const filters = filtersOf(params);
  const sort = params.sort || "confidence";
  const desc = params.desc !== "0";
  const list = { items: [] };

  const sidebar = h("aside", { class: "panel filters" }, h("header", {}, h("h2", {}, "Filters"),
    h("button", { onclick: () => go("samples", { run: run.id, method: params.method }), title: "Clear every filter" }, "Clear")),
    h("div", { class: "body" }, h("div", { class: "muted" }, "Loading…")));
  const content = h("section", {}, h("div", { class: "loading" }, "Loading images…"));
  root.append(sidebar, content);

  api(`api/runs/${enc(run.id)}/facets`)
    .then((facets) => root.isConnected && sidebar.querySelector(".body").replaceChildren(...filterControls(ctx, facets).filter(Boolean)))
    .catch((err) => sidebar.querySelector(".body").replaceChildren(errorBox(err)));

  const q = { ...filters, method: params.method, sort, desc: desc ? "true" : "false", offset: (page - 1) * PAGE, limit: PAGE };
  api(`api/runs/${enc(run.id)}/samples`, q)
    .then((res) => {
      if (!root.isConnected) return;
      list.items = res.items;
      content.replaceChildren(toolbar(ctx, res, page, sort, desc), cards(ctx, res));
      sidebar.querySelector(".body").append(meanMap(ctx, filters, res.total));
      update(ctx);
    })
    .catch((err) => root.isConnected && content.replaceChildren(errorBox(err)));

  function update(c) {
    const id = c.params.sample;
    document.querySelectorAll(".card.selected").forEach((el) => el.classList.remove("selected"));
    if (!id) { document.getElementById("modal-root").replaceChildren(); return; }
    const ids = list.items.map((s) => s.sample_id);
    const at = ids.indexOf(id);
    const nav = (k) => (at >= 0 && ids[at + k] !== undefined ? () => go("samples", { ...c.params, sample: ids[at + k] }) : null);
    openDetail(c, id, { prev: nav(-1), next: nav(1), close: () => { const { sample, ...rest } = c.params; go("samples", rest); } });
  }
  return { update };
}

function filterControls(ctx, facets) {
  const { run, params } = ctx;
  const set = (patch) => {
    const next = { ...params, ...patch, page: undefined, sample: undefined };
    for (const [k, v] of Object.entries(patch)) if (v === "" || v === null) delete next[k];
    go("samples", next);
  };
  const classSelect = (key, label) => h("label", { class: "field" }, label,
    h("select", { "data-filter": key, onchange: (e) => set({ [key]: e.target.value }) },
      h("option", { value: "" }, "any"),
      run.class_names.map((c) => h("option", { value: c, selected: params[key] === c }, c))));
  const seg = (key, options) => h("div", { class: "seg", role: "group" }, options.map(([v, text]) =>
    h("button", { class: (params[key] || "") === v ? "on" : "", "data-filter": key, "data-value": v, onclick: () => set({ [key]: v }) }, text)));
  const num = (key, placeholder) => h("input", { type: "number", min: 0, max: 1, step: 0.05, placeholder, value: params[key] ?? "",
    "data-filter": key, "aria-label": key, onchange: (e) => set({ [key]: e.target.value }) });
  const metaSel = Object.entries(facets.meta).map(([name, values]) => {
    const current = (params.meta || []).find((m) => m.startsWith(name + "="));
    const others = (params.meta || []).filter((m) => !m.startsWith(name + "="));
    return h("label", { class: "field" }, name,
      h("select", { "data-filter": "meta:" + name, onchange: (e) => set({ meta: e.target.value ? [...others, `${name}=${e.target.value}`] : others }) },
        h("option", { value: "" }, "any"),
        values.map((v) => h("option", { value: v, selected: current === `${name}=${v}` }, v))));
  });
  return [
    classSelect("true", "True class"),
    classSelect("pred", "Predicted class"),
    h("div", { class: "field" }, "Outcome", seg("correct", [["", "All"], ["true", "Correct"], ["false", "Wrong"]])),
    h("div", { class: "field" }, "Confidence", h("div", { class: "pair" }, num("conf_min", "min"), num("conf_max", "max"))),
    facets.splits.length > 1 ? h("label", { class: "field" }, "Split", h("select", { "data-filter": "split", onchange: (e) => set({ split: e.target.value }) },
      h("option", { value: "" }, "any"), facets.splits.map((s) => h("option", { value: s, selected: params.split === s }, s)))) : null,
    ...metaSel,
    run.regions.length ? h("div", { class: "field" }, `Share of ${params.method} saliency in a region`,
      h("select", { "data-filter": "region", onchange: (e) => set({ region: e.target.value, ...(e.target.value ? {} : { share_min: "", share_max: "" }) }) },
        h("option", { value: "" }, "choose a region"), run.regions.map((r) => h("option", { value: r, selected: params.region === r }, r))),
      params.region ? h("div", { class: "pair" }, num("share_min", "min"), num("share_max", "max")) : null) : null,
    run.errors ? h("label", { class: "field compact" }, h("input", { type: "checkbox", checked: params.errors === "true",
      onchange: (e) => set({ errors: e.target.checked ? "true" : "" }) }), `Only images that failed (${run.errors})`) : null,
  ];
}

function toolbar(ctx, res, page, sort, desc) {
  const { run, params } = ctx;
  const pages = Math.max(1, Math.ceil(res.total / PAGE));
  const to = (p) => go("samples", { ...params, page: p > 1 ? p : undefined, sample: undefined });
  const label = { true: "true", pred: "pred", correct: "correct", conf_min: "conf ≥", conf_max: "conf ≤", split: "split", region: "region", share_min: "share ≥", share_max: "share ≤", errors: "errors" };
  const chips = [];
  for (const [k, v] of Object.entries(filtersOf(params))) {
    if (k === "meta") {
      for (const m of v) chips.push(h("span", { class: "chip" }, m, h("button", { title: "Remove", onclick: () => go("samples", { ...params, meta: v.filter((x) => x !== m), page: undefined }) }, "×")));
    } else {
      const text = k === "correct" ? (v === "true" ? "correct" : "wrong") : `${label[k] || k} ${v}`;
      chips.push(h("span", { class: "chip", "data-testid": "filter-chip" }, text,
        h("button", { title: "Remove", onclick: () => { const n = { ...params }; delete n[k]; delete n.page; go("samples", n); } }, "×")));
    }
  }
  const sorts = [["confidence", "confidence"], ["loss", "loss"], ...run.stats.map((s) => [s, `${s} (${params.method})`])];
  return h("div", { class: "toolbar" },
    h("span", { class: "count", "data-testid": "result-count" }, `${int(res.total)} images`),
    h("div", { class: "chips" }, chips),
    h("div", { class: "spacer" }),
    h("label", { class: "field compact" }, h("span", {}, "Sort by"),
      h("select", { "data-testid": "sort-select", title: statTitle(run, sort), onchange: (e) => go("samples", { ...params, sort: e.target.value, page: undefined }) },
        sorts.map(([v, t]) => h("option", { value: v, selected: v === sort, title: statTitle(run, v) }, t)))),
    statInfo(run),
    h("button", { title: "Reverse the order", onclick: () => go("samples", { ...params, desc: desc ? "0" : "1", page: undefined }) }, desc ? "↓ high first" : "↑ low first"),
    h("div", { class: "pager" },
      h("button", { disabled: page <= 1, onclick: () => to(page - 1), "aria-label": "Previous page" }, "‹"),
      h("span", { class: "num" }, `page ${page} of ${int(pages)}`),
      h("button", { disabled: page >= pages, onclick: () => to(page + 1), "aria-label": "Next page" }, "›")));
}

function cards(ctx, res) {
  const { run, params } = ctx;
  if (!res.items.length) return h("div", { class: "empty panel" }, "No image matches these filters.");
  const statSort = run.stats.includes(res.sort);
  return h("div", { class: "cards" }, res.items.map((s) => {
    const mark = s.error ? h("span", { class: "mark err", title: s.error }, "!") : s.correct
      ? h("span", { class: "mark ok", title: "correct" }, "✓") : h("span", { class: "mark bad", title: "wrong" }, "✗");
    return h("div", {
      class: "card" + (params.sample === s.sample_id ? " selected" : ""),
      "data-testid": "sample-card",
      "data-sample-id": s.sample_id,
      title: s.path,
      onclick: () => go("samples", { ...params, sample: s.sample_id }),
    },
    shot(run.id, s.sample_id, s.error ? null : params.method, { signed: run.signed.includes(params.method) }),
    h("div", { class: "info" },
      h("div", { class: "line1" }, mark, h("span", { class: "names" }, s.error ? "failed" : s.correct ? s.label : `${s.label} → ${s.pred}`)),
      h("div", { class: "line2" },
        h("span", {}, s.confidence === null ? "" : `p ${fix(s.confidence, 2)}`),
        h("span", { title: statSort ? statTitle(run, res.sort) : null }, statSort && s.value !== null ? `${res.sort} ${fix(s.value, 2)}` : s.loss === null ? "" : `loss ${fix(s.loss, 2)}`))));
  }));
}

function meanMap(ctx, filters, total) {
  const { run, params, app } = ctx;
  if (!params.method || !total) return h("div");
  const src = `api/runs/${enc(run.id)}/mean/${enc(params.method)}?${query({ ...filters, size: 256 })}`;
  return h("div", { class: "field meanmap" },
    h("h3", {}, "Mean saliency of the selection"),
    h("img", { src, alt: `mean ${params.method} map of ${total} images`, "data-testid": "mean-map" }),
    h("span", { class: "muted" }, `${params.method}, averaged over ${int(total)} images`),
    run.signed.includes(params.method)
      ? legend("", app.colormaps.RdBu_r.stops, "against", "for", { small: true })
      : legend("", app.colormaps.inferno.stops, "low", "high", { small: true }));
}
