// Small DOM helpers: elements are built with text nodes (never innerHTML), so nothing the API
// returns is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "value") element.value = value;
    else if (name === "checked" || name === "selected" || name === "disabled" || name === "hidden") element[name] = Boolean(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const FINAL_RUN = new Set(["succeeded", "failed", "timed_out", "cancelled"]);
export const FINAL_SWEEP = new Set(["finished", "cancelled"]);

export function statusBadge(status, attrs = {}) {
  return h("span", { class: `status status-${status}`, ...attrs }, status);
}

export function fmtDate(value) {
  if (!value) return "—";
  const date = new Date(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function fmtSeconds(value) {
  if (value === null || value === undefined) return "—";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${+value.toFixed(value < 10 ? 2 : 1)} s`;
  const seconds = Math.round(value % 60);
  return `${Math.floor(value / 60)} min${seconds ? ` ${seconds} s` : ""}`;
}

export function fmtBytes(value) {
  if (value === null || value === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${unit ? n.toFixed(1) : n} ${units[unit]}`;
}

export function fmtValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(+value.toPrecision(8));
  if (Array.isArray(value)) return value.map(fmtValue).join(", ");
  return String(value);
}

export function credits(n) {
  return `${n} credit${n === 1 ? "" : "s"}`;
}

// Ids are prefixed ULIDs: their start is a timestamp, so the end is what tells two apart.
export function shortId(id) {
  if (!id || id.length <= 16) return id;
  const prefix = id.includes("_") ? id.slice(0, id.indexOf("_") + 1) : "";
  return `${prefix}…${id.slice(-8)}`;
}

// An API error as the user should see it: title, detail, code and request id.
export function errorBox(error) {
  if (!error) return null;
  const parts = [h("strong", {}, error.title || "Error")];
  if (error.detail) parts.push(" ", error.detail);
  const meta = [];
  if (error.code) meta.push(h("code", {}, error.code));
  if (error.status) meta.push(` HTTP ${error.status}`);
  if (error.requestId) meta.push(" · request ", h("code", {}, error.requestId));
  if (error.extra?.platforms) meta.push(" · the FMU's platforms: ", error.extra.platforms.join(", "));
  return h("div", { class: "alert alert-error", role: "alert" }, h("div", {}, parts),
    meta.length ? h("div", { class: "small muted" }, meta) : null);
}

export function showError(container, error) {
  if (error?.name === "AbortError") return;
  replace(container, errorBox(error instanceof Error ? error : new Error(String(error))));
  container.hidden = false;
}

// Run an async page action and report its failure instead of leaving a rejected promise.
export function guard(container, action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      if (error?.name === "AbortError") return;
      if (container) showError(container, error);
      else console.warn(error);
    }
  };
}

export function pageHeader(title, ...actions) {
  return h("div", { class: "page-header" }, h("h1", {}, title), h("div", { class: "page-actions" }, actions));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, children);
}

export function emptyRow(columns, text) {
  return h("tr", {}, h("td", { colspan: columns, class: "empty" }, text));
}

export function tableWrap(table) {
  return h("div", { class: "table-wrap" }, table);
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("div", { class: "hint" }, hint) : null);
}

// Make a clickable table row also open with the keyboard (the link inside stays the tab stop).
export function rowLink(row, href) {
  row.classList.add("row-link");
  row.addEventListener("click", (event) => {
    if (event.target.closest("a, button, input, select, label")) return;
    location.hash = href;
  });
  return row;
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy";
  }
  setTimeout(() => {
    button.textContent = "Copy";
  }, 2000);
}

// A form that creates something through the API: `read()` builds the JSON body (what it throws is
// shown as a form error), the body goes to `url`, and the page moves to `route(created)`.
export function createOnSubmit(form, { submit, errors, read, post, url, route }) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.hidden = true;
    let body;
    try {
      body = read();
    } catch (error) {
      showError(errors, { title: "Check the form", detail: error.message });
      return;
    }
    submit.disabled = true;
    try {
      location.hash = route(await post(url, body));
    } catch (error) {
      showError(errors, error);
    } finally {
      submit.disabled = false;
    }
  });
}
