// Runs: the history with a status filter; a run's page with live status, plot, table, downloads,
// log and cost.

import { download, follow, getJSON, postJSON, query, request } from "./api.js";
import { linePlot, numericColumn } from "./plot.js";
import {
  FINAL_RUN, card, credits, emptyRow, errorBox, fmtBytes, fmtDate, fmtSeconds, fmtValue, guard, h, pageHeader, replace,
  rowLink, shortId, showError, statusBadge, tableWrap,
} from "./ui.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "timed_out", "cancelled"];

// Model names by FMU id (the newest 100 models: enough to label a history page).
export async function modelNames(signal) {
  const page = await getJSON("/v1/fmus?limit=100", { signal });
  return new Map(page.data.map((fmu) => [fmu.id, fmu.model_name]));
}

export async function runsPage(main, { params, signal }) {
  const errors = h("div", { hidden: true });
  const status = h("select", { "aria-label": "Status", "data-testid": "runs-status-filter" },
    h("option", { value: "" }, "All statuses"), STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  let cursor = null;
  const names = await modelNames(signal);

  function row(run) {
    return rowLink(h("tr", { dataset: { runId: run.id } },
      h("td", {}, h("a", { href: `#/runs/${run.id}`, class: "mono", title: run.id }, shortId(run.id))),
      h("td", {}, h("a", { href: `#/models/${run.fmu_id}` }, names.get(run.fmu_id) || shortId(run.fmu_id)),
        run.sweep_id ? h("div", { class: "small muted" }, "sweep ", h("a", { href: `#/sweeps/${run.sweep_id}` },
          `#${run.sweep_index}`)) : null),
      h("td", {}, statusBadge(run.status)),
      h("td", {}, fmtDate(run.created_at)),
      h("td", { class: "num" }, fmtSeconds(run.timings.run_s ?? run.timings.total_s)),
      h("td", { class: "num" }, FINAL_RUN.has(run.status) ? run.credits_charged : `(${run.credits_held} held)`)),
    `#/runs/${run.id}`);
  }

  async function load(reset) {
    const page = await getJSON(`/v1/runs${query({ limit: 50, status: status.value, cursor: reset ? null : cursor })}`,
      { signal });
    if (reset) body.replaceChildren();
    body.append(...page.data.map(row));
    if (!body.children.length) body.append(emptyRow(6, status.value ? `No ${status.value} runs.` : "No runs yet."));
    cursor = page.next_cursor;
    more.hidden = !page.has_more;
  }
  status.addEventListener("change", guard(errors, () => load(true)));
  more.addEventListener("click", guard(errors, () => load(false)));
  replace(main, pageHeader("Runs", status), errors,
    card(null, tableWrap(h("table", { class: "table", "data-testid": "runs-list" },
      h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Model"), h("th", {}, "Status"),
        h("th", {}, "Submitted"), h("th", { class: "num" }, "Duration"), h("th", { class: "num" }, "Cost (credits)"))),
      body)), more));
  await load(true);
}

function summary(run, modelName) {
  const spec = run.spec || {};
  const starts = Object.entries(spec.start_values || {});
  const rows = [
    ["Model", h("a", { href: `#/models/${run.fmu_id}` }, modelName || run.fmu_id)],
    ["Submitted", fmtDate(run.created_at)],
    ["Started", fmtDate(run.started_at)],
    ["Finished", fmtDate(run.finished_at)],
    ["Queued", fmtSeconds(run.timings.queued_s)],
    ["Run time", fmtSeconds(run.timings.run_s)],
    ["CPU", fmtSeconds(run.timings.cpu_s)],
    ["Peak memory", fmtBytes(run.max_rss_bytes)],
    ["Cost", h("span", { "data-testid": "run-cost" }, FINAL_RUN.has(run.status)
      ? credits(run.credits_charged) : `${credits(run.credits_held)} held`)],
    ["Time span", `${fmtValue(spec.start_time)} → ${fmtValue(spec.stop_time)}` +
      (spec.output_interval ? ` every ${fmtValue(spec.output_interval)}` : "")],
    ["Interface", [spec.fmi_type, spec.fmi_type === "ModelExchange" ? spec.solver : null].filter(Boolean).join(", ") || "—"],
    ["Start values", starts.length ? starts.map(([k, v]) => `${k} = ${fmtValue(v)}`).join(", ") : "model defaults"],
  ];
  if (run.sweep_id) rows.splice(1, 0, ["Sweep", h("a", { href: `#/sweeps/${run.sweep_id}` }, `child #${run.sweep_index}`)]);
  return h("dl", { class: "meta" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function resultTable(result) {
  const LIMIT = 1000;
  const columns = result.columns;
  const rows = Math.min(result.rows, LIMIT);
  const body = h("tbody", {});
  for (let i = 0; i < rows; i += 1) {
    body.append(h("tr", {}, columns.map((c) => h("td", { class: "num mono" }, fmtValue(result.data[c][i])))));
  }
  return h("div", {}, result.rows > LIMIT ? h("p", { class: "muted small" },
    `First ${LIMIT} of ${result.rows} rows; download the whole table below.`) : null,
  tableWrap(h("table", { class: "table table-dense", "data-testid": "result-table" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: "num" }, c)))), body)));
}

// The plot of every numeric column over time, and the table view, behind two tabs.
function resultView(result) {
  const plot = h("div", { class: "plot", "data-testid": "plot" });
  const table = h("div", { hidden: true });
  const x = result.columns.includes("time") ? result.data.time.map(Number) : result.data[result.columns[0]].map((_, i) => i);
  const series = result.columns.filter((c) => c !== "time")
    .map((c) => ({ label: c, values: numericColumn(result.data[c]) })).filter((s) => s.values);
  const plotTab = h("button", { type: "button", class: "tab active", role: "tab", "aria-selected": "true",
    "data-testid": "view-plot" }, "Plot");
  const tableTab = h("button", { type: "button", class: "tab", role: "tab", "aria-selected": "false",
    "data-testid": "view-table" }, "Table");
  let tableDrawn = false;
  const select = (showPlot) => {
    plotTab.classList.toggle("active", showPlot);
    tableTab.classList.toggle("active", !showPlot);
    plotTab.setAttribute("aria-selected", String(showPlot));
    tableTab.setAttribute("aria-selected", String(!showPlot));
    plot.hidden = !showPlot;
    table.hidden = showPlot;
    if (!showPlot && !tableDrawn) {
      table.append(resultTable(result));
      tableDrawn = true;
    }
  };
  plotTab.addEventListener("click", () => select(true));
  tableTab.addEventListener("click", () => select(false));
  const element = h("div", {}, h("div", { class: "tabs", role: "tablist" }, plotTab, tableTab),
    h("p", { class: "muted small hint-line" }, "Drag to zoom, double-click to reset, click a legend entry to hide or show it."),
    plot, table);
  return {
    element,
    draw() {
      if (!series.length) {
        replace(plot, h("p", { class: "muted" }, "The result has no numeric column to plot."));
        return;
      }
      linePlot(plot, { x, xLabel: "time", series });
    },
  };
}

export async function runPage(main, { args: [id], signal }) {
  let run = await getJSON(`/v1/runs/${id}`, { signal });
  const names = await modelNames(signal);
  const errors = h("div", { hidden: true });
  const badge = statusBadge(run.status, { "data-testid": "run-status", role: "status", "aria-live": "polite" });
  const cancel = h("button", { type: "button", class: "btn btn-danger", "data-testid": "run-cancel",
    hidden: FINAL_RUN.has(run.status) }, "Cancel run");
  const details = h("div", {});
  const problem = h("div", {});
  const resultCard = h("div", {});
  const logCard = h("div", {});

  cancel.addEventListener("click", guard(errors, async () => {
    cancel.disabled = true;
    update(await postJSON(`/v1/runs/${id}/cancel`, {}));
  }));

  function update(next) {
    run = next;
    badge.textContent = run.status;
    badge.className = `status status-${run.status}`;
    cancel.hidden = FINAL_RUN.has(run.status);
    replace(details, summary(run, names.get(run.fmu_id)));
    replace(problem, run.error ? h("div", { class: "alert alert-error", role: "alert" },
      h("strong", {}, run.error.code), " ", run.error.message || "") : null);
  }

  async function showResult() {
    if (run.status !== "succeeded") return;
    if (run.result_expired_at) {
      replace(resultCard, card("Result", h("p", { class: "muted" },
        `The result was removed on ${fmtDate(run.result_expired_at)} (your tier's retention).`)));
      return;
    }
    const downloads = h("div", { class: "downloads" }, ["csv", "parquet", "arrow"].map((format) => {
      const button = h("button", { type: "button", class: "btn", "data-testid": `download-${format}` },
        `Download ${format === "csv" ? "CSV" : format === "arrow" ? "Arrow" : "Parquet"}`);
      button.addEventListener("click", guard(errors, async () => {
        button.disabled = true;
        try {
          await download(`/v1/runs/${id}/result?format=${format}`, `${id}.${format}`);
        } finally {
          button.disabled = false;
        }
      }));
      return button;
    }));
    const body = h("div", {}, h("p", { class: "muted" }, "Loading the result…"));
    replace(resultCard, card(`Result${run.result ? ` · ${run.result.rows} rows × ${run.result.columns.length} columns` : ""}`,
      body, downloads));
    const result = await getJSON(`/v1/runs/${id}/result?format=json`, { signal });
    const view = resultView(result);
    replace(body, view.element);
    view.draw();
  }

  async function showLog() {
    if (!FINAL_RUN.has(run.status) || run.result_expired_at) return;
    const text = await (await request(`/v1/runs/${id}/log`, { signal })).text();
    replace(logCard, card("Log", h("pre", { class: "log", "data-testid": "run-log", tabindex: "0" },
      text.trim() ? text : "(empty)")));
  }

  replace(main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/runs" }, "Runs"), " / "),
    pageHeader(h("span", {}, "Run ", h("span", { class: "mono" }, id)), badge, cancel),
    errors, problem,
    h("div", { class: "columns columns-wide" }, h("div", { class: "stack" }, resultCard, logCard), card("Details", details)));
  update(run);
  if (!FINAL_RUN.has(run.status)) {
    replace(resultCard, card("Result", h("p", { class: "muted" }, "Waiting for the run to finish…")));
    const end = await follow("run", id, update, signal, (r) => FINAL_RUN.has(r.status));
    if (!end) return;
    update(end);
    if (end.status !== "succeeded") replace(resultCard, "");
  }
  await Promise.all([showResult().catch((error) => {
    if (error.name !== "AbortError") showError(errors, error);
  }), showLog().catch((error) => {
    if (error.name !== "AbortError") replace(logCard, errorBox(error));
  })]);
}
