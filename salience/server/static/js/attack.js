// The Attack tab (`salience attack --run RUN`): how far predictions and maps move under
// adversarial perturbations of a stated budget. Prediction robustness per budget, each
// method's fragility against random noise of the same budget, detection and manipulation
// figures, and example pictures: the clean image and map beside the attacked image and map,
// the perturbation (scaled so that ±budget spans black to white) and both predictions.
import { api, enc, errorBox, fix, h, int, pct } from "./util.js";

const KINDS = [
  ["map_clean", "clean map"],
  ["attacked", "attacked image"],
  ["map_attacked", "attacked map"],
  ["perturbation", "perturbation (±budget → black…white)"],
];

export function render(main, ctx) {
  const { run } = ctx;
  const panel = h("section", { class: "panel", "data-testid": "attack-panel" },
    h("header", {}, h("h2", {}, `Adversarial attacks on ${run.name}`), h("div", { class: "spacer" })),
    h("div", { class: "body" }, h("div", { class: "muted" }, "Loading…")));
  main.replaceChildren(h("div", { class: "stack" }, panel));
  const body = panel.querySelector(".body");
  api(`api/runs/${enc(run.id)}/attack`)
    .then((r) => panel.isConnected && body.replaceChildren(...(r.available ? view(run, r) : [
      h("div", { class: "empty", "data-testid": "attack-empty" }, "This run has no attack results. Write them with ",
        h("code", {}, "salience attack --run RUN --model MODEL --data DATA"), ".")])))
    .catch((err) => panel.isConnected && body.replaceChildren(errorBox(err)));
  return {};
}

// A budget in pixel space and in the model's input space (one value per channel).
const budget = (b) => (b ? h("span", { title: "pixel space (0..1 pixels); input space, per channel" },
  `${fix(b.pixel_255, 2)}/255`, h("br"), h("span", { class: "muted" }, `input ${b.input.map((v) => fix(v, 3)).join("/")}`)) : "–");

function view(run, r) {
  const p = r.prediction;
  return [
    h("p", {}, h("b", {}, `${r.model}`), ` · ${int(r.samples)} images, ${int(p.attacked)} correctly classified and attacked · `,
      h("span", { class: "muted" }, `from ${r.source}`)),
    h("h3", {}, `Predictions: ${p.attack} (${p.norm}, ${p.steps ?? "–"} steps)`),
    h("table", { class: "data", "data-testid": "attack-prediction" },
      h("thead", {}, h("tr", {}, ["Budget (pixel space)", "Budget (input space, per channel)", "Success"].map((t) => h("th", {}, t)))),
      h("tbody", {}, p.budgets.map((b, i) => h("tr", { "data-testid": "attack-budget", "data-success": String(p.success_rate[i]) },
        h("td", {}, `${fix(b.pixel_255, 2)}/255 (${fix(b.pixel, 4)})`),
        h("td", { class: "num" }, b.input.map((v) => fix(v, 4)).join(", ")),
        h("td", { class: "num" }, pct(p.success_rate[i])))))),
    h("p", { class: "muted" }, "Median smallest successful budget: ",
      p.median_smallest_eps === null ? "–" : `${fix(p.median_smallest_eps * 255, 2)}/255`),
    h("h3", {}, "Explanations: attack vs random noise of the same budget"),
    h("div", { class: "attack-scroll" }, h("table", { class: "data", "data-testid": "attack-methods" },
      h("thead", {}, h("tr", {}, ["Method", "Budget", "Top-k kept (attack / noise)", "Spearman (attack / noise)",
        "Centre shift px (attack / noise)", "Labels kept", "Detector AUC (maps / softmax)", "Manipulation (similarity / output change)"].map((t) => h("th", {}, t)))),
      h("tbody", {}, r.methods.map((m) => h("tr", { "data-testid": "attack-method", "data-method": m.method },
        h("td", {}, h("b", {}, m.method), m.attacked_through && m.attacked_through !== m.method ? h("span", { class: "muted" }, ` via ${m.attacked_through}`) : null),
        h("td", { class: "num" }, budget(m.budget)),
        h("td", { class: "num" }, `${fix(m.topk_intersection_attack)} / ${fix(m.topk_intersection_random)}`),
        h("td", { class: "num" }, `${fix(m.spearman_attack)} / ${fix(m.spearman_random)}`),
        h("td", { class: "num" }, `${fix(m.com_shift_attack, 1)} / ${fix(m.com_shift_random, 1)}`),
        h("td", { class: "num" }, pct(m.labels_kept)),
        h("td", { class: "num" }, `${fix(m.detection_auc_saliency, 2)} / ${fix(m.detection_auc_softmax, 2)}`),
        h("td", { class: "num" }, `${fix(m.manipulation_similarity, 2)} / ${fix(m.manipulation_output_change, 4)}`)))))),
    h("h3", {}, "Examples"),
    h("div", { "data-testid": "attack-examples" }, r.examples.length ? r.examples.map((e) => example(run, e))
      : h("div", { class: "empty" }, "No example pictures were written (--examples 0).")),
  ];
}

function picture(run, e, kind, method, caption) {
  const q = method ? `?method=${enc(method)}` : "";
  return h("figure", { class: "attack-pic" },
    h("img", { src: `api/runs/${enc(run.id)}/attack/examples/${e.index}/${kind}${q}`, alt: caption, loading: "lazy",
      "data-testid": "attack-picture", "data-kind": kind }),
    h("figcaption", {}, caption));
}

const said = (p) => `${p.class} (${fix(p.probability, 2)})`;

function example(run, e) {
  return h("div", { class: "attack-example", "data-testid": "attack-example", "data-index": String(e.index) },
    h("div", { class: "mono muted" }, e.image || `image ${e.index}`),
    e.methods.map((m) => h("div", { class: "attack-row", "data-testid": "attack-pair", "data-method": m.method,
      "data-changed": String(m.prediction.class !== e.prediction.class) },
      picture(run, e, "clean", null, `clean: ${said(e.prediction)}`),
      KINDS.map(([kind, label]) => picture(run, e, kind, m.method,
        kind === "attacked" ? `${m.method}, attacked: ${said(m.prediction)}` : `${m.method}, ${label}`)))));
}
