// Models: the list with upload and delete; a model's page with its metadata, the run form and the
// variable table.

import { getJSON, postJSON, query, request, uploadFmu } from "./api.js";
import { experimentFields, kindOf, outputPicker, parseValue, settableVariables, valueInput } from "./spec.js";
import {
  card, createOnSubmit, emptyRow, errorBox, fmtBytes, fmtDate, fmtValue, guard, h, pageHeader, replace,
  rowLink, tableWrap,
} from "./ui.js";

function uploader(onUploaded) {
  const input = h("input", { type: "file", accept: ".fmu", id: "fmu-file", class: "visually-hidden",
    "data-testid": "fmu-upload" });
  const bar = h("progress", { max: 1, value: 0, "data-testid": "upload-progress", "aria-label": "Upload progress" });
  const status = h("div", { class: "upload-status", "aria-live": "polite" });
  const errors = h("div", { hidden: true });
  const zone = h("div", { class: "dropzone" },
    input,
    h("label", { for: "fmu-file", class: "btn btn-primary" }, "Choose an FMU…"),
    h("span", { class: "muted" }, " or drop a .fmu file here (FMI 2.0 or 3.0)"),
    h("div", { class: "upload-progress", hidden: true }, bar, status));
  const progressRow = zone.querySelector(".upload-progress");

  async function send(file) {
    errors.hidden = true;
    progressRow.hidden = false;
    bar.value = 0;
    replace(status, `Uploading ${file.name}…`);
    zone.classList.add("busy");
    try {
      const { fmu, existing } = await uploadFmu(file, (fraction) => {
        bar.value = fraction;
        if (fraction >= 1) replace(status, `Checking ${file.name}…`);
      });
      bar.value = 1;
      replace(status, existing ? "Already uploaded: " : "Uploaded ",
        h("a", { href: `#/models/${fmu.id}` }, fmu.model_name), ` (${fmu.variable_count} variables)`);
      onUploaded(fmu);
    } catch (error) {
      progressRow.hidden = true;
      replace(errors, h("div", { class: "small muted" }, `${file.name} was rejected:`), errorBox(error));
      errors.hidden = false;
    } finally {
      zone.classList.remove("busy");
      input.value = "";
    }
  }

  input.addEventListener("change", () => {
    if (input.files.length) send(input.files[0]);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer?.files?.[0];
    if (file) send(file);
  });
  return h("div", {}, zone, errors);
}

// A delete button that asks once more before it acts (no blocking dialogs).
function confirmButton(label, confirmLabel, action) {
  let armed = null;
  const button = h("button", { type: "button", class: "btn btn-small btn-danger" }, label);
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = confirmLabel;
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });
  return button;
}

export async function modelsPage(main, { signal }) {
  const errors = h("div", { hidden: true });
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  let cursor = null;

  function row(fmu) {
    const remove = confirmButton("Delete", "Confirm delete", guard(errors, async () => {
      await request(`/v1/fmus/${fmu.id}`, { method: "DELETE" });
      tr.remove();
      if (!body.children.length) body.append(emptyRow(7, "No models yet: upload an FMU."));
    }));
    const tr = rowLink(h("tr", { dataset: { fmuId: fmu.id } },
      h("td", {}, h("a", { href: `#/models/${fmu.id}` }, fmu.model_name),
        h("div", { class: "muted small", "data-testid": fmu.shared_by ? "shared-by" : null },
          fmu.shared_by ? `shared by ${fmu.shared_by} · ${fmu.price_credits_per_run} credit(s) a run` : fmu.filename || "")),
      h("td", {}, `FMI ${fmu.fmi_version}`),
      h("td", {}, [fmu.supports_co_simulation ? "CS" : "", fmu.supports_model_exchange ? "ME" : ""].filter(Boolean).join(" · ")),
      h("td", { class: "num" }, fmu.variable_count),
      h("td", { class: "num" }, fmtBytes(fmu.size)),
      h("td", {}, fmtDate(fmu.created_at)),
      h("td", { class: "actions" }, fmu.shared_by ? "" : remove)), `#/models/${fmu.id}`);
    return tr;
  }

  async function load(reset) {
    const page = await getJSON(`/v1/fmus${query({ limit: 50, cursor: reset ? null : cursor })}`, { signal });
    if (reset) body.replaceChildren();
    body.append(...page.data.map(row));
    if (!body.children.length) body.append(emptyRow(7, "No models yet: upload an FMU."));
    cursor = page.next_cursor;
    more.hidden = !page.has_more;
  }
  more.addEventListener("click", guard(errors, () => load(false)));

  replace(main,
    pageHeader("Models"),
    card("Upload", uploader(guard(errors, () => load(true)))),
    errors,
    card(null, tableWrap(h("table", { class: "table", "data-testid": "fmu-list" },
      h("thead", {}, h("tr", {}, h("th", {}, "Model"), h("th", {}, "FMI"), h("th", {}, "Interfaces"),
        h("th", { class: "num" }, "Variables"), h("th", { class: "num" }, "Size"), h("th", {}, "Uploaded"),
        h("th", {}, h("span", { class: "visually-hidden" }, "Actions")))),
      body)), more));
  await load(true);
}

async function allVariables(fmu, signal) {
  if (fmu.variable_count <= fmu.variables.length) return fmu.variables;
  const variables = [];
  let cursor = null;
  do {
    const page = await getJSON(`/v1/fmus/${fmu.id}/variables${query({ limit: 1000, cursor })}`, { signal });
    variables.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && variables.length < 20000);
  return variables;
}

function metadata(fmu) {
  const experiment = fmu.default_experiment || {};
  const rows = [
    ["Id", h("code", {}, fmu.id)],
    ...(fmu.shared_by ? [["Shared by", `${fmu.shared_by}: ${fmu.price_credits_per_run} credit(s) a succeeded run`]] : []),
    ["File", fmu.filename || "—"],
    ["FMI version", fmu.fmi_version],
    ["Interfaces", [fmu.supports_co_simulation ? "Co-Simulation" : "", fmu.supports_model_exchange ? "Model Exchange" : ""]
      .filter(Boolean).join(", ")],
    ["Generated by", fmu.generation_tool || "—"],
    ["Platforms", fmu.platforms.join(", ")],
    ["Default experiment", ["start_time", "stop_time", "tolerance", "step_size"]
      .filter((k) => experiment[k] !== null && experiment[k] !== undefined)
      .map((k) => `${k} ${fmtValue(experiment[k])}`).join(" · ") || "—"],
    ["Variables", fmu.variable_count],
    ["Size", fmtBytes(fmu.size)],
    ["SHA-256", h("code", { class: "small break" }, fmu.sha256)],
    ["GUID", h("code", { class: "small break" }, fmu.guid)],
    ["Uploaded", fmtDate(fmu.created_at)],
  ];
  return h("dl", { class: "meta" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

const COLUMNS = [
  ["name", "Name"], ["causality", "Causality"], ["variability", "Variability"], ["type", "Type"],
  ["start", "Start"], ["unit", "Unit"], ["description", "Description"],
];

function variablesTable(variables) {
  const search = h("input", { type: "search", placeholder: "Search name or description",
    "aria-label": "Search variables", "data-testid": "variables-search" });
  const causality = h("select", { "aria-label": "Causality", "data-testid": "variables-causality" },
    h("option", { value: "" }, "any causality"),
    [...new Set(variables.map((v) => v.causality))].sort().map((c) => h("option", { value: c }, c)));
  const body = h("tbody", {});
  const count = h("span", { class: "muted small" });
  let sortKey = null;
  let ascending = true;
  const headers = COLUMNS.map(([key, label]) => {
    const button = h("button", { type: "button", class: "sort" }, label);
    const th = h("th", { "aria-sort": "none", scope: "col" }, button);
    button.addEventListener("click", () => {
      ascending = sortKey === key ? !ascending : true;
      sortKey = key;
      for (const other of headers) other.setAttribute("aria-sort", "none");
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      draw();
    });
    return th;
  });
  const LIMIT = 1000;

  function draw() {
    const q = search.value.trim().toLowerCase();
    let shown = variables.filter((v) => (!q || v.name.toLowerCase().includes(q) ||
      (v.description || "").toLowerCase().includes(q)) && (!causality.value || v.causality === causality.value));
    if (sortKey) {
      const value = (v) => (sortKey === "start" ? fmtValue(v.start) : v[sortKey] ?? "");
      const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
      shown = [...shown].sort((a, b) => collator.compare(String(value(a)), String(value(b))) * (ascending ? 1 : -1));
    }
    body.replaceChildren(...shown.slice(0, LIMIT).map((v) => h("tr", { dataset: { variable: v.name } },
      h("td", { class: "mono" }, v.name), h("td", {}, v.causality), h("td", {}, v.variability),
      h("td", {}, v.type), h("td", { class: "num mono" }, fmtValue(v.start)), h("td", {}, v.unit || ""),
      h("td", { class: "desc" }, v.description || ""))));
    if (!shown.length) body.append(emptyRow(COLUMNS.length, "No variable matches."));
    count.textContent = shown.length > LIMIT ? `${LIMIT} of ${shown.length} shown: refine the search`
      : `${shown.length} of ${variables.length}`;
  }
  search.addEventListener("input", draw);
  causality.addEventListener("change", draw);
  draw();
  return h("div", {}, h("div", { class: "toolbar" }, search, causality, count),
    tableWrap(h("table", { class: "table table-dense", "data-testid": "variables-table" },
      h("thead", {}, h("tr", {}, headers)), body)));
}

function runForm(fmu, variables) {
  const errors = h("div", { hidden: true });
  const experiment = experimentFields(fmu);
  const outputs = outputPicker(variables);
  const settable = settableVariables(variables);
  const inputs = new Map();
  const filter = h("input", { type: "search", placeholder: "Filter parameters", "aria-label": "Filter parameters",
    class: "input-small" });
  const paramBody = h("tbody", {});
  for (const v of settable) {
    const input = valueInput(v, { "aria-label": v.name, name: `start:${v.name}`, "data-testid": `start-${v.name}`,
      id: `start-${v.name}` });
    inputs.set(v.name, input);
    paramBody.append(h("tr", { dataset: { variable: v.name } },
      h("td", {}, h("label", { for: input.id, class: "mono", title: v.description || "" }, v.name),
        v.description ? h("div", { class: "muted small desc" }, v.description) : null),
      h("td", {}, input), h("td", { class: "muted small" }, v.unit || ""),
      h("td", { class: "muted small" }, kindOf(v))));
  }
  filter.addEventListener("input", () => {
    const q = filter.value.trim().toLowerCase();
    for (const tr of paramBody.children) tr.hidden = Boolean(q) && !tr.dataset.variable.toLowerCase().includes(q);
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "run-submit" }, "Run");
  const form = h("form", { class: "form", "data-testid": "run-form", novalidate: true },
    h("h3", {}, "Experiment"), experiment.element,
    h("h3", {}, "Start values ", h("span", { class: "muted small" }, `${settable.length} settable`)),
    settable.length > 8 ? filter : null,
    settable.length ? h("div", { class: "table-wrap params" }, h("table", { class: "table table-dense" },
      h("thead", {}, h("tr", {}, h("th", {}, "Variable"), h("th", {}, "Start value"), h("th", {}, "Unit"),
        h("th", {}, "Kind"))), paramBody)) : h("p", { class: "muted" }, "This model has no parameters."),
    outputs.element, errors, h("div", { class: "form-actions" }, submit));

  createOnSubmit(form, {
    submit, errors, post: postJSON, url: `/v1/fmus/${fmu.id}/runs`, route: (run) => `#/runs/${run.id}`,
    read: () => {
      const body = experiment.read();
      const startValues = {};
      for (const v of settable) {
        const input = inputs.get(v.name);
        input.removeAttribute("aria-invalid");
        if (input.value === fmtValue(v.start) || (v.type === "Boolean" && parseValue(v, input.value) === v.start)) continue;
        try {
          startValues[v.name] = parseValue(v, input.value);
        } catch (error) {
          input.setAttribute("aria-invalid", "true");
          throw error;
        }
      }
      if (Object.keys(startValues).length) body.start_values = startValues;
      const output = outputs.read();
      if (output.length) body.output = output;
      return body;
    },
  });
  return form;
}

export async function modelPage(main, { args: [id], signal }) {
  const fmu = await getJSON(`/v1/fmus/${id}`, { signal });
  const variables = await allVariables(fmu, signal);
  const errors = h("div", { hidden: true });
  const remove = confirmButton("Delete model", "Confirm delete", guard(errors, async () => {
    await request(`/v1/fmus/${fmu.id}`, { method: "DELETE" });
    location.hash = "#/models";
  }));
  const runs = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  replace(main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/models" }, "Models"), " / "),
    pageHeader(fmu.model_name, h("a", { class: "btn", href: `#/sweeps?fmu=${fmu.id}`, "data-testid": "new-sweep" },
      "New sweep"), remove),
    fmu.description ? h("p", { class: "lead" }, fmu.description) : null,
    errors,
    h("div", { class: "columns" },
      card("Run", runForm(fmu, variables)),
      h("div", { class: "stack" }, card("Model", metadata(fmu)), card("Recent runs", runs))),
    card(`Variables (${fmu.variable_count})`, variablesTable(variables)));
  const recent = await getJSON(`/v1/runs${query({ fmu_id: fmu.id, limit: 5 })}`, { signal });
  replace(runs, recent.data.length ? h("ul", { class: "plain" }, recent.data.map((run) => h("li", {},
    h("a", { href: `#/runs/${run.id}`, class: "mono" }, run.id), " ", h("span", { class: `status status-${run.status}` },
      run.status), " ", h("span", { class: "muted small" }, fmtDate(run.created_at)))))
    : h("p", { class: "muted" }, "No runs yet."));
}

export { allVariables, confirmButton };
