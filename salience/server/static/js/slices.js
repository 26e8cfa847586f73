// The Slices tab (`salience slices`): each group of a metadata column against the rest of the
// run: accuracy (Fisher's exact test), every saliency statistic (KS) and the maps (MMD),
// Holm-corrected over every group and test. A row opens the group's images.
import { api, enc, errorBox, fix, go, h, int, pct } from "./util.js";

export function render(main, ctx) {
  const { run, params } = ctx;
  const panel = h("section", { class: "panel", "data-testid": "slices-view" },
    h("header", {}, h("h2", {}, `Slices of ${run.name}`), h("div", { class: "spacer" })),
    h("div", { class: "body" }, h("div", { class: "muted" }, "Loading…")));
  main.replaceChildren(h("div", { class: "stack" }, panel));
  const body = panel.querySelector(".body");
  api(`api/runs/${enc(run.id)}/slices`).then((first) => {
    if (!panel.isConnected) return;
    const columns = first.columns;
    const meta = columns.filter((c) => run.meta.includes(c));
    const by = columns.includes(params.by) ? params.by : meta[0] || null;
    const picker = h("label", { class: "field compact" }, h("span", {}, "Group by"),
      h("select", { "data-testid": "slices-by", onchange: (e) => go("slices", { run: run.id, method: params.method, by: e.target.value }) },
        by ? null : h("option", { value: "" }, "choose a column"),
        columns.map((c) => h("option", { value: c, selected: c === by }, c))));
    panel.querySelector("header").append(picker);
    if (!by) {
      body.replaceChildren(h("div", { class: "empty" }, "This run has no metadata column to slice by (give the manifest columns such as camera or site)."));
      return;
    }
    body.replaceChildren(h("div", { class: "loading" }, `Testing each ${by} group against the rest…`));
    return api(`api/runs/${enc(run.id)}/slices`, { by }).then((r) => panel.isConnected && body.replaceChildren(...table(ctx, r)));
  }).catch((err) => panel.isConnected && body.replaceChildren(errorBox(err)));
  return {};
}

// "ks_gradcam_spread" -> "spread (gradcam, KS)"; "mmd_gradcam" -> "maps (gradcam, MMD)".
function testName(name, methods) {
  if (name === "accuracy") return "accuracy";
  for (const m of methods) {
    if (name === `mmd_${m}`) return `maps (${m}, MMD)`;
    if (name.startsWith(`ks_${m}_`)) return `${name.slice(m.length + 4)} (${m}, KS)`;
  }
  return name;
}

function table(ctx, r) {
  const { run, params } = ctx;
  const isMeta = run.meta.includes(r.by);
  const open = (g) => {
    const filter = isMeta ? { meta: [`${r.by}=${g.value}`] } : r.by === "label" ? { true: g.value } : r.by === "pred" ? { pred: g.value } : { split: g.value };
    go("samples", { run: run.id, method: params.method, ...filter });
  };
  const why = (g) => {
    if (!g.tested) return h("span", { class: "muted" }, "too small to test");
    if (!g.flagged) return h("span", { class: "muted" }, "no difference beyond chance");
    return h("span", { class: "reasons" }, g.reasons.map((n) => {
      const t = g.tests[n];
      const shift = t.shift !== null && t.shift !== undefined ? ` ${t.shift > 0 ? "+" : ""}${fix(t.shift, 2)}` : "";
      return h("span", { class: "chip reason", title: `${n}: statistic ${fix(t.statistic)}, p ${fix(t.p_value, 4)} (Holm)` },
        `${testName(n, r.methods)}${n === "accuracy" ? ` ${t.statistic > 0 ? "+" : ""}${(100 * t.statistic).toFixed(1)} pt` : shift} · p ${pv(t.p_value)}`);
    }));
  };
  const rows = r.groups.map((g) => h("tr", {
    class: g.flagged ? "flagged" : "",
    "data-testid": "slice-group",
    "data-value": g.value,
    "data-flagged": String(g.flagged),
    title: "Open this group's images",
    onclick: () => open(g),
  },
  h("td", {}, h("b", {}, g.value)),
  h("td", { class: "num" }, int(g.n)),
  h("td", { class: "num" }, g.accuracy === null ? "–" : h("span", {}, pct(g.accuracy), h("span", { class: "meter" }, h("i", { style: { width: `${Math.round(100 * g.accuracy)}%` } })))),
  h("td", { class: "num" }, pct(g.accuracy_rest)),
  h("td", {}, g.tested ? h("span", { class: "flag" + (g.flagged ? "" : " ok") }, g.flagged ? "flagged" : "ok") : h("span", { class: "muted" }, "–")),
  h("td", { class: "why" }, why(g))));
  const flagged = r.groups.filter((g) => g.flagged);
  return [
    h("p", { class: "slices-note" },
      flagged.length ? h("b", {}, `${flagged.length} of ${r.groups.length} ${r.by} groups differ from the rest: `) : h("b", {}, `No ${r.by} group differs from the rest beyond chance. `),
      `Each group against the rest of the run: accuracy (Fisher's exact test), each saliency statistic (KS) and the maps (MMD) of ${r.methods.join(", ")}; ${r.correction || "corrected"} at α = ${r.alpha}. `,
      h("span", { class: "muted" }, r.source === "computed" ? "Computed now." : `From ${r.source}.`)),
    h("table", { class: "data slices" },
      h("thead", {}, h("tr", {}, ["Group", "Images", "Accuracy", "Rest of the run", "Flag", "Why"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
  ];
}

const pv = (p) => (p === null || p === undefined ? "–" : p < 1e-3 ? Number(p).toExponential(1) : Number(p).toFixed(3));
