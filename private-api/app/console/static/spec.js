// The run spec's form fields (FMPy's simulate_fmu arguments, as the API names them), shared by the
// run form and the sweep form.

import { field, fmtValue, h } from "./ui.js";

const NUMERIC = new Set(["Real", "Float64", "Float32", "Integer", "Enumeration", "Int8", "UInt8", "Int16",
  "UInt16", "Int32", "UInt32", "Int64", "UInt64"]);
const INTEGER = new Set(["Integer", "Enumeration", "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32",
  "Int64", "UInt64"]);

export function isNumeric(variable) {
  return NUMERIC.has(variable.type);
}

export function isInteger(variable) {
  return INTEGER.has(variable.type);
}

// Variables whose start value a run may set: parameters, and states/initial values given exactly.
const KIND_ORDER = { parameter: 0, structuralParameter: 0, input: 1 };

export function settableVariables(variables) {
  const settable = variables.filter((v) => !Array.isArray(v.start) && v.type !== "Binary" && v.type !== "Clock" && (
    v.causality === "parameter" || v.causality === "structuralParameter" ||
    (v.causality !== "independent" && v.causality !== "calculatedParameter" && v.variability !== "constant" &&
      v.initial === "exact" && v.start !== null && v.start !== undefined)));
  // Parameters first, then inputs, then initial values of states; model order within each.
  return settable.map((v, i) => [KIND_ORDER[v.causality] ?? 2, i, v]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map(([, , v]) => v);
}

export function kindOf(variable) {
  if (variable.causality === "parameter" || variable.causality === "structuralParameter") {
    return `${variable.variability} parameter`;
  }
  return variable.causality === "input" ? "input" : "initial value";
}

// A form value as the variable's type wants it; throws a readable Error when it is not one.
export function parseValue(variable, text) {
  const value = text.trim();
  if (variable.type === "Boolean") {
    if (/^(true|1)$/i.test(value)) return true;
    if (/^(false|0)$/i.test(value)) return false;
    throw new Error(`${variable.name}: expected true or false`);
  }
  if (variable.type === "String") return text;
  const number = Number(value);
  if (value === "" || !Number.isFinite(number)) throw new Error(`${variable.name}: "${text}" is not a number`);
  if (isInteger(variable) && !Number.isInteger(number)) throw new Error(`${variable.name}: expected a whole number`);
  return number;
}

export function valueInput(variable, attrs = {}) {
  if (variable.type === "Boolean") {
    const start = variable.start === true || variable.start === "true";
    return h("select", attrs, h("option", { value: "true", selected: start }, "true"),
      h("option", { value: "false", selected: !start }, "false"));
  }
  return h("input", { type: "text", inputmode: isNumeric(variable) ? "decimal" : "text", spellcheck: "false",
    autocomplete: "off", value: fmtValue(variable.start), ...attrs });
}

function numberInput(attrs) {
  return h("input", { type: "text", inputmode: "decimal", autocomplete: "off", spellcheck: "false", ...attrs });
}

// Stop time, output interval, FMI type, solver, tolerance, timeout; read() gives the spec's fields.
export function experimentFields(fmu) {
  const experiment = fmu.default_experiment || {};
  const startTime = numberInput({ name: "start_time", value: fmtValue(experiment.start_time ?? 0) });
  const stopTime = numberInput({ name: "stop_time", "data-testid": "stop-time", required: true,
    value: fmtValue(experiment.stop_time ?? (experiment.start_time ?? 0) + 1) });
  const interval = numberInput({ name: "output_interval", "data-testid": "output-interval",
    placeholder: experiment.step_size ? `default (${fmtValue(experiment.step_size)})` : "default" });
  const types = [];
  if (fmu.supports_co_simulation) types.push("CoSimulation");
  if (fmu.supports_model_exchange) types.push("ModelExchange");
  const fmiType = h("select", { name: "fmi_type", "data-testid": "fmi-type" },
    h("option", { value: "" }, `default (${types[0] || "—"})`), types.map((t) => h("option", { value: t }, t)));
  const solver = h("select", { name: "solver", "data-testid": "solver" },
    h("option", { value: "" }, "default (CVode)"), h("option", { value: "CVode" }, "CVode"),
    h("option", { value: "Euler" }, "Euler"));
  const tolerance = numberInput({ name: "relative_tolerance", "data-testid": "tolerance",
    placeholder: experiment.tolerance ? `default (${fmtValue(experiment.tolerance)})` : "default" });
  const timeout = numberInput({ name: "timeout_s", placeholder: "tier maximum" });
  const usesSolver = () => (fmiType.value || types[0]) === "ModelExchange";
  const syncSolver = () => {
    solver.disabled = !usesSolver();
  };
  fmiType.addEventListener("change", syncSolver);
  syncSolver();

  const element = h("div", { class: "grid-fields" },
    field("Start time", startTime), field("Stop time", stopTime), field("Output interval", interval),
    field("FMI type", fmiType), field("Solver", solver, "Model exchange only"),
    field("Relative tolerance", tolerance), field("Timeout (s)", timeout));

  function read() {
    const spec = {};
    const number = (input, name, { positive = false } = {}) => {
      const text = input.value.trim();
      if (text === "") return undefined;
      const value = Number(text);
      if (!Number.isFinite(value) || (positive && value <= 0)) {
        input.setAttribute("aria-invalid", "true");
        throw new Error(`${name}: "${text}" is not a ${positive ? "positive " : ""}number`);
      }
      input.removeAttribute("aria-invalid");
      return value;
    };
    const start = number(startTime, "Start time");
    if (start !== undefined && start !== (experiment.start_time ?? 0)) spec.start_time = start;
    spec.stop_time = number(stopTime, "Stop time");
    if (spec.stop_time === undefined) throw new Error("Stop time is required");
    const outputInterval = number(interval, "Output interval", { positive: true });
    if (outputInterval !== undefined) spec.output_interval = outputInterval;
    if (fmiType.value) spec.fmi_type = fmiType.value;
    if (usesSolver() && solver.value) spec.solver = solver.value;
    const rtol = number(tolerance, "Relative tolerance", { positive: true });
    if (rtol !== undefined) spec.relative_tolerance = rtol;
    const timeoutS = number(timeout, "Timeout", { positive: true });
    if (timeoutS !== undefined) spec.timeout_s = timeoutS;
    return spec;
  }

  return { element, read };
}

// Which variables to record: the model's outputs by default (or a few states when it has none).
export function outputPicker(variables) {
  const candidates = variables.filter((v) => v.causality !== "independent" && (isNumeric(v) || v.type === "Boolean")
    && !Array.isArray(v.start));
  const outputs = candidates.filter((v) => v.causality === "output");
  const defaults = new Set((outputs.length ? outputs : candidates.filter((v) => v.causality === "local" &&
    v.variability === "continuous").slice(0, 4)).map((v) => v.name));
  const chosen = new Set(defaults);
  const filter = h("input", { type: "search", placeholder: "Filter variables", "aria-label": "Filter outputs",
    class: "input-small" });
  const list = h("div", { class: "check-list", role: "group", "aria-label": "Outputs to keep" });
  const count = h("span", { class: "muted small" });
  const LIMIT = 300;

  function draw() {
    const q = filter.value.trim().toLowerCase();
    const shown = candidates.filter((v) => !q || v.name.toLowerCase().includes(q) ||
      (v.description || "").toLowerCase().includes(q));
    list.replaceChildren(...shown.slice(0, LIMIT).map((v) => {
      const box = h("input", { type: "checkbox", value: v.name, checked: chosen.has(v.name), name: "output" });
      box.addEventListener("change", () => {
        if (box.checked) chosen.add(v.name);
        else chosen.delete(v.name);
        count.textContent = `${chosen.size} selected`;
      });
      return h("label", { class: "check", title: v.description || "" }, box, h("span", { class: "mono" }, v.name),
        h("span", { class: "muted small" }, ` ${v.causality}${v.unit ? ` · ${v.unit}` : ""}`));
    }), shown.length > LIMIT ? h("div", { class: "muted small" }, `${shown.length - LIMIT} more: filter to find them`) : "");
    count.textContent = `${chosen.size} selected`;
  }
  filter.addEventListener("input", draw);
  draw();
  const element = h("fieldset", { class: "fieldset", "data-testid": "output-picker" },
    h("legend", {}, "Outputs to keep ", count), filter, list);
  return { element, read: () => [...chosen], chosen };
}
