// Sweeps: the form (grid / list / LHS / Sobol / random over chosen parameters) and the history; a
// sweep's page with live progress, the summary table and its plots.

import { follow, getJSON, postJSON, query } from "./api.js";
import { allVariables } from "./models.js";
import { numericColumn, overlayPlot, scatterPlot } from "./plot.js";
import { modelNames } from "./runs.js";
import { experimentFields, isInteger, isNumeric, outputPicker, parseValue, settableVariables } from "./spec.js";
import {
  FINAL_SWEEP, card, createOnSubmit, credits, emptyRow, field, fmtDate, fmtValue, guard, h, pageHeader,
  replace, rowLink, shortId, showError, statusBadge, tableWrap,
} from "./ui.js";

const METHODS = [
  ["grid", "Grid: every combination of the values"],
  ["list", "List: the i-th value of each parameter together"],
  ["lhs", "Latin hypercube samples in [min, max]"],
  ["sobol", "Sobol' samples in [min, max]"],
  ["random", "Uniform random samples in [min, max]"],
];
const SAMPLED = new Set(["lhs", "sobol", "random"]);

function doneOf(sweep) {
  const c = sweep.counts;
  return c.succeeded + c.failed + c.timed_out + c.cancelled;
}

function defaultValues(variable) {
  if (variable.type === "Boolean") return { values: "false, true", min: "0", max: "1" };
  const start = typeof variable.start === "number" ? variable.start : 0;
  if (isInteger(variable)) return { values: `${start}, ${start + 1}, ${start + 2}`, min: String(start), max: String(start + 2) };
  const low = start === 0 ? 0 : start * 0.5;
  const high = start === 0 ? 1 : start * 1.5;
  return { values: [low, start === 0 ? 0.5 : start, high].map(fmtValue).join(", "), min: fmtValue(low), max: fmtValue(high) };
}

function splitValues(variable, text) {
  const parts = text.split(/[,;\s]+/).filter((part) => part !== "");
  if (!parts.length) throw new Error(`${variable.name}: give at least one value`);
  return parts.map((part) => parseValue(variable, part));
}

function sweepFields(fmu, variables) {
  const candidates = settableVariables(variables).filter((v) => isNumeric(v) || v.type === "Boolean");
  const method = h("select", { name: "method", "data-testid": "sweep-method" },
    METHODS.map(([value, label]) => h("option", { value }, label)));
  const samples = h("input", { type: "text", inputmode: "numeric", value: "8", name: "samples",
    "data-testid": "sweep-samples" });
  const seed = h("input", { type: "text", inputmode: "numeric", placeholder: "server picks", name: "seed" });
  const sampling = h("div", { class: "grid-fields", hidden: true }, field("Samples", samples), field("Seed", seed));
  const rows = [];
  const real = (v) => v.type === "Real" || v.type === "Float64";
  const firstReal = candidates.find((v) => real(v) && v.causality === "parameter") || candidates.find(real) || candidates[0];
  const body = h("tbody", {}, candidates.map((v) => {
    const defaults = defaultValues(v);
    const vary = h("input", { type: "checkbox", checked: v === firstReal, "aria-label": `Vary ${v.name}`,
      "data-testid": `sweep-vary-${v.name}` });
    const values = h("input", { type: "text", value: defaults.values, "aria-label": `${v.name} values`,
      "data-testid": `sweep-values-${v.name}`, class: "values" });
    const min = h("input", { type: "text", inputmode: "decimal", value: defaults.min, "aria-label": `${v.name} min`,
      class: "bound" });
    const max = h("input", { type: "text", inputmode: "decimal", value: defaults.max, "aria-label": `${v.name} max`,
      class: "bound" });
    const tr = h("tr", { dataset: { variable: v.name } },
      h("td", {}, h("label", { class: "check" }, vary, h("span", { class: "mono" }, v.name))),
      h("td", { class: "when-listed" }, values),
      h("td", { class: "when-sampled" }, min, " – ", max),
      h("td", { class: "muted small" }, `${fmtValue(v.start)}${v.unit ? ` ${v.unit}` : ""}`));
    rows.push({ variable: v, vary, values, min, max, tr });
    return tr;
  }));
  const table = h("table", { class: "table table-dense sweep-params" },
    h("thead", {}, h("tr", {}, h("th", {}, "Vary"), h("th", { class: "when-listed" }, "Values"),
      h("th", { class: "when-sampled" }, "Range"), h("th", {}, "Start"))), body);
  const sync = () => {
    const sampled = SAMPLED.has(method.value);
    sampling.hidden = !sampled;
    table.classList.toggle("sampled", sampled);
  };
  method.addEventListener("change", sync);
  sync();

  function read() {
    const chosen = rows.filter((row) => row.vary.checked);
    if (!chosen.length) throw new Error("Choose at least one parameter to vary");
    const body = { method: method.value };
    if (method.value === "grid") {
      body.parameters = Object.fromEntries(chosen.map((r) => [r.variable.name, splitValues(r.variable, r.values.value)]));
    } else if (method.value === "list") {
      const columns = chosen.map((r) => [r.variable.name, splitValues(r.variable, r.values.value)]);
      const length = columns[0][1].length;
      if (columns.some(([, values]) => values.length !== length)) {
        throw new Error("List: every parameter needs the same number of values");
      }
      body.parameters = Array.from({ length }, (_, i) => Object.fromEntries(columns.map(([name, values]) => [name, values[i]])));
    } else {
      body.parameters = Object.fromEntries(chosen.map((r) => {
        const bound = (input) => (r.variable.type === "Boolean" ? parseValue(r.variable, input.value)
          : parseValue({ ...r.variable, type: isInteger(r.variable) ? "Integer" : "Real" }, input.value));
        return [r.variable.name, { min: bound(r.min), max: bound(r.max) }];
      }));
      body.samples = parseValue({ name: "Samples", type: "Integer" }, samples.value);
      if (seed.value.trim()) body.seed = parseValue({ name: "Seed", type: "Integer" }, seed.value);
    }
    return body;
  }

  const element = h("div", {},
    h("div", { class: "grid-fields" }, field("Method", method)), sampling,
    candidates.length ? h("div", { class: "table-wrap params" }, table)
      : h("p", { class: "muted" }, "This model has no parameters to sweep."));
  return { element, read };
}

async function sweepForm(container, fmuId, signal) {
  const fmu = await getJSON(`/v1/fmus/${fmuId}`, { signal });
  const variables = await allVariables(fmu, signal);
  const space = sweepFields(fmu, variables);
  const experiment = experimentFields(fmu);
  const outputs = outputPicker(variables);
  const errors = h("div", { hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "sweep-submit" }, "Start sweep");
  const form = h("form", { class: "form", "data-testid": "sweep-form", novalidate: true },
    h("h3", {}, "Parameter space"), space.element,
    h("h3", {}, "Experiment (every child)"), experiment.element,
    outputs.element, errors, h("div", { class: "form-actions" }, submit));
  createOnSubmit(form, {
    submit, errors, post: postJSON, url: `/v1/fmus/${fmu.id}/sweeps`, route: (sweep) => `#/sweeps/${sweep.id}`,
    read: () => {
      const body = { ...experiment.read(), ...space.read() };
      const output = outputs.read();
      if (output.length) body.output = output;
      return body;
    },
  });
  replace(container, form);
}

function progressBar() {
  const fill = h("div", { class: "progress-fill" });
  const label = h("span", { class: "progress-label" });
  const element = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0",
    "data-testid": "sweep-progress" }, fill, label);
  return {
    element,
    set(sweep) {
      const done = doneOf(sweep);
      const total = sweep.total;
      element.setAttribute("aria-valuemax", String(total));
      element.setAttribute("aria-valuenow", String(done));
      element.setAttribute("value", String(done));
      element.setAttribute("max", String(total));
      element.dataset.done = String(done);
      element.dataset.total = String(total);
      fill.style.width = `${total ? (100 * done) / total : 0}%`;
      label.textContent = `${done} / ${total}`;
      element.classList.toggle("complete", done === total);
    },
  };
}

function counts(sweep) {
  return h("div", { class: "chips" }, Object.entries(sweep.counts).filter(([, n]) => n > 0)
    .map(([status, n]) => h("span", { class: `chip status-${status}` }, `${status} ${n}`)));
}

export async function sweepsPage(main, { params, signal }) {
  const errors = h("div", { hidden: true });
  const names = await modelNames(signal);
  const formArea = h("div", {});
  const model = h("select", { "aria-label": "Model", "data-testid": "sweep-model" },
    [...names].map(([id, name]) => h("option", { value: id, selected: id === params.get("fmu") }, `${name} (${shortId(id)})`)));
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  let cursor = null;

  const loadForm = guard(formArea, async () => {
    replace(formArea, h("p", { class: "muted" }, "Loading the model…"));
    await sweepForm(formArea, model.value, signal);
  });
  model.addEventListener("change", loadForm);

  function row(sweep) {
    return rowLink(h("tr", { dataset: { sweepId: sweep.id } },
      h("td", {}, h("a", { href: `#/sweeps/${sweep.id}`, class: "mono", title: sweep.id }, shortId(sweep.id))),
      h("td", {}, names.get(sweep.fmu_id) || shortId(sweep.fmu_id)),
      h("td", {}, sweep.method, h("span", { class: "muted small" }, ` · ${sweep.parameter_names.join(", ")}`)),
      h("td", {}, statusBadge(sweep.status)),
      h("td", { class: "num" }, `${doneOf(sweep)} / ${sweep.total}`),
      h("td", { class: "num" }, sweep.credits_charged),
      h("td", {}, fmtDate(sweep.created_at))), `#/sweeps/${sweep.id}`);
  }
  async function load(reset) {
    const page = await getJSON(`/v1/sweeps${query({ limit: 25, cursor: reset ? null : cursor })}`, { signal });
    if (reset) body.replaceChildren();
    body.append(...page.data.map(row));
    if (!body.children.length) body.append(emptyRow(7, "No sweeps yet."));
    cursor = page.next_cursor;
    more.hidden = !page.has_more;
  }
  more.addEventListener("click", guard(errors, () => load(false)));

  replace(main, pageHeader("Sweeps"), errors,
    card("New sweep", names.size ? field("Model", model) : h("p", { class: "muted" }, "Upload a model first: ",
      h("a", { href: "#/models" }, "Models"), "."), formArea),
    card("History", tableWrap(h("table", { class: "table", "data-testid": "sweeps-list" },
      h("thead", {}, h("tr", {}, h("th", {}, "Sweep"), h("th", {}, "Model"), h("th", {}, "Method"),
        h("th", {}, "Status"), h("th", { class: "num" }, "Done"), h("th", { class: "num" }, "Cost (credits)"),
        h("th", {}, "Submitted"))), body)), more));
  await Promise.all([load(true), names.size ? loadForm() : null]);
}

function columnOf(summary, name) {
  return summary.columns.includes(name) ? name : `start(${name})`;
}

function summaryTable(summary, parameterNames, outputs) {
  const paramColumns = parameterNames.map((name) => columnOf(summary, name));
  const statColumns = outputs.flatMap((o) => [`final(${o})`, `min(${o})`, `max(${o})`]);
  const head = ["#", "Run", "Status", ...parameterNames, ...statColumns];
  const body = h("tbody", {});
  for (let i = 0; i < summary.rows; i += 1) {
    const d = (c) => summary.data[c]?.[i];
    const status = d("status");
    body.append(h("tr", {},
      h("td", { class: "num" }, d("sweep_index")),
      h("td", {}, h("a", { href: `#/runs/${d("run_id")}`, class: "mono", title: d("run_id") }, shortId(d("run_id")))),
      h("td", {}, statusBadge(status), d("error_code") ? h("span", { class: "small muted" }, ` ${d("error_code")}`) : null),
      paramColumns.map((c) => h("td", { class: "num mono" }, fmtValue(d(c)))),
      statColumns.map((c) => h("td", { class: "num mono" }, fmtValue(d(c))))));
  }
  if (!summary.rows) body.append(emptyRow(head.length, "No children yet."));
  return tableWrap(h("table", { class: "table table-dense", "data-testid": "sweep-summary" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), body));
}

const MAX_OVERLAID = 24;

async function overlay(container, sweep, summary, output, signal) {
  const children = [];
  for (let i = 0; i < summary.rows && children.length < MAX_OVERLAID; i += 1) {
    if (summary.data.status[i] === "succeeded") {
      const sample = sweep.parameter_names.map((name) => `${name}=${fmtValue(summary.data[columnOf(summary, name)]?.[i])}`);
      children.push({ index: summary.data.sweep_index[i], runId: summary.data.run_id[i], sample: sample.join(" ") });
    }
  }
  if (!children.length) {
    replace(container, h("p", { class: "muted" }, "No succeeded child to plot."));
    return;
  }
  replace(container, h("p", { class: "muted" }, `Loading ${children.length} results…`));
  const series = [];
  const queue = [...children];
  const worker = async () => {
    while (queue.length) {
      const child = queue.shift();
      const result = await getJSON(`/v1/runs/${child.runId}/result?format=json`, { signal });
      const values = result.data[output] ? numericColumn(result.data[output]) : null;
      if (values && result.data.time) series.push({ ...child, x: result.data.time.map(Number), values });
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  series.sort((a, b) => a.index - b.index);
  if (!series.length) {
    replace(container, h("p", { class: "muted" }, `No child recorded ${output}.`));
    return;
  }
  const plot = h("div", { class: "plot", "data-testid": "sweep-series-plot" });
  const note = summary.rows > MAX_OVERLAID ? `The first ${MAX_OVERLAID} succeeded children of ${summary.rows}.` : "";
  replace(container, note ? h("p", { class: "muted small" }, note) : null, plot);
  overlayPlot(plot, { series: series.map((s) => ({ label: `#${s.index} ${s.sample}`, x: s.x, values: s.values })) });
}

function finalPlots(container, sweep, summary, output) {
  const finals = numericColumn(summary.data[`final(${output})`] || []);
  if (!finals) {
    replace(container, h("p", { class: "muted" }, "No final values yet."));
    return;
  }
  const plots = sweep.parameter_names.slice(0, 6).map((name) => {
    const xs = numericColumn(summary.data[columnOf(summary, name)] || []);
    const plot = h("div", { class: "plot plot-small", "data-testid": "sweep-final-plot" });
    return { name, xs, plot };
  }).filter((p) => p.xs);
  replace(container, h("div", { class: "plot-grid" }, plots.map((p) => h("div", {}, h("div", { class: "plot-title" }, `final(${output}) vs ${p.name}`), p.plot))));
  for (const p of plots) {
    scatterPlot(p.plot, { xLabel: p.name, yLabel: `final(${output})`, height: 260,
      points: p.xs.map((x, i) => [x, finals[i]]) });
  }
}

export async function sweepPage(main, { args: [id], signal }) {
  let sweep = await getJSON(`/v1/sweeps/${id}`, { signal });
  const names = await modelNames(signal);
  const errors = h("div", { hidden: true });
  const badge = statusBadge(sweep.status, { "data-testid": "sweep-status", role: "status" });
  const cancel = h("button", { type: "button", class: "btn btn-danger", "data-testid": "sweep-cancel",
    hidden: FINAL_SWEEP.has(sweep.status) }, "Cancel sweep");
  const bar = progressBar();
  const countsArea = h("div", {});
  const facts = h("dl", { class: "meta" });
  const summaryArea = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const plotsArea = h("div", {});

  cancel.addEventListener("click", guard(errors, async () => {
    cancel.disabled = true;
    update(await postJSON(`/v1/sweeps/${id}/cancel`, {}));
  }));

  function update(next) {
    sweep = next;
    badge.textContent = sweep.status;
    badge.className = `status status-${sweep.status}`;
    cancel.hidden = FINAL_SWEEP.has(sweep.status);
    bar.set(sweep);
    replace(countsArea, counts(sweep));
    const rows = [
      ["Model", h("a", { href: `#/models/${sweep.fmu_id}` }, names.get(sweep.fmu_id) || sweep.fmu_id)],
      ["Method", `${sweep.method}${sweep.samples ? ` · ${sweep.samples} samples` : ""}${sweep.seed !== null ? ` · seed ${sweep.seed}` : ""}`],
      ["Parameters", sweep.parameter_names.join(", ")],
      ["Children", sweep.total],
      ["Cost", FINAL_SWEEP.has(sweep.status) ? credits(sweep.credits_charged)
        : `${credits(sweep.credits_charged)} so far (${sweep.credits_held} held)`],
      ["Submitted", fmtDate(sweep.created_at)],
      ["Finished", fmtDate(sweep.finished_at)],
    ];
    replace(facts, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    if (!FINAL_SWEEP.has(sweep.status) && summaryAt && Date.now() - summaryAt > 3000) {
      showSummary().catch((error) => showError(errors, error));
    }
  }

  // The table is refreshed at most every few seconds while the sweep runs; the plots are drawn once, at its end.
  let plotted = false;
  let summaryAt = 0;
  async function showSummary(final = false) {
    summaryAt = Date.now();
    const summary = await getJSON(`/v1/sweeps/${id}/summary?format=json`, { signal });
    const outputs = summary.columns.filter((c) => c.startsWith("final(")).map((c) => c.slice(6, -1));
    replace(summaryArea, summaryTable(summary, sweep.parameter_names, outputs));
    if (!final || plotted) return;
    plotted = true;
    if (!outputs.length) {
      replace(plotsArea, card("Plots", h("p", { class: "muted" }, "No numeric output to plot.")));
      return;
    }
    const choice = h("select", { "aria-label": "Output", "data-testid": "sweep-output" },
      outputs.map((o) => h("option", { value: o }, o)));
    const finals = h("div", {});
    const series = h("div", {});
    const draw = guard(errors, async () => {
      finalPlots(finals, sweep, summary, choice.value);
      await overlay(series, sweep, summary, choice.value, signal);
    });
    choice.addEventListener("change", draw);
    replace(plotsArea, card("Plots", h("div", { class: "toolbar" }, field("Output", choice)),
      h("h3", {}, "Final value against each parameter"), finals,
      h("h3", {}, "Every child's time series"), series));
    await draw();
  }

  replace(main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/sweeps" }, "Sweeps"), " / "),
    pageHeader(h("span", {}, "Sweep ", h("span", { class: "mono" }, id)), badge, cancel),
    errors,
    h("div", { class: "columns columns-wide" },
      card("Progress", bar.element, countsArea), card("Details", facts)),
    plotsArea,
    card("Children", summaryArea));
  update(sweep);
  if (!FINAL_SWEEP.has(sweep.status)) {
    await showSummary();
    const end = await follow("sweep", id, update, signal, (s) => FINAL_SWEEP.has(s.status));
    if (!end) return;
    update(end);
  }
  await showSummary(true);
}
