// API keys: the list, a new key with chosen scopes (its secret shown once), revocation.

import { apiKey, clearApiKey, getJSON, postJSON, query, unauthorized } from "./api.js";
import { card, copyText, emptyRow, field, fmtDate, guard, h, pageHeader, replace, showError, tableWrap } from "./ui.js";

const SCOPES = ["fmus:read", "fmus:write", "runs:read", "runs:write", "billing:read", "billing:write", "keys:read",
  "keys:write"];
const EXPIRIES = [["", "Never"], ["86400", "1 day"], ["604800", "7 days"], ["2592000", "30 days"],
  ["7776000", "90 days"], ["31536000", "1 year"]];

function keyState(key) {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return "expired";
  return "active";
}

export async function keysPage(main, { signal }) {
  const errors = h("div", { hidden: true });
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const secretArea = h("div", {});
  let cursor = null;
  const mine = apiKey() || "";

  function row(key) {
    const state = keyState(key);
    const current = mine.startsWith(key.prefix);
    const revoke = state === "active" ? h("button", { type: "button", class: "btn btn-small btn-danger",
      "data-testid": "key-revoke", "aria-label": `Revoke ${key.name || key.prefix}` }, "Revoke") : null;
    const tr = h("tr", { dataset: { keyId: key.id, state } },
      h("td", {}, key.name || h("span", { class: "muted" }, "(unnamed)"),
        current ? h("span", { class: "chip" }, "this session") : null),
      h("td", { class: "mono" }, `${key.prefix}…`),
      h("td", { class: "scopes" }, key.scopes.map((s) => h("span", { class: "scope" }, s))),
      h("td", {}, fmtDate(key.created_at)),
      h("td", {}, fmtDate(key.last_used_at)),
      h("td", {}, key.expires_at ? fmtDate(key.expires_at) : "never"),
      h("td", {}, h("span", { class: `status status-key-${state}`, "data-testid": "key-state" }, state)),
      h("td", { class: "actions" }, revoke));
    revoke?.addEventListener("click", guard(errors, async () => {
      revoke.disabled = true;
      const revoked = await postJSON(`/v1/api-keys/${key.id}/revoke`, {});
      if (current) {
        clearApiKey();
        unauthorized.dispatchEvent(new CustomEvent("unauthorized", { detail: { detail: "you revoked it" } }));
        return;
      }
      // Updated in place (not replaced): whoever holds the row, a test included, keeps it.
      const next = keyState(revoked);
      tr.dataset.state = next;
      const badge = tr.querySelector('[data-testid="key-state"]');
      badge.textContent = next;
      badge.className = `status status-key-${next}`;
      revoke.remove();
    }));
    return tr;
  }

  async function load(reset) {
    const page = await getJSON(`/v1/api-keys${query({ limit: 50, cursor: reset ? null : cursor })}`, { signal });
    if (reset) body.replaceChildren();
    body.append(...page.data.map(row));
    if (!body.children.length) body.append(emptyRow(8, "No keys."));
    cursor = page.next_cursor;
    more.hidden = !page.has_more;
  }
  more.addEventListener("click", guard(errors, () => load(false)));

  const name = h("input", { type: "text", placeholder: "e.g. CI pipeline", maxlength: "200",
    "data-testid": "key-name", autocomplete: "off" });
  const expiry = h("select", { "data-testid": "key-expiry" }, EXPIRIES.map(([value, label]) => h("option", { value }, label)));
  const boxes = SCOPES.map((scope) => h("input", { type: "checkbox", value: scope, checked: true, name: "scope",
    "data-testid": `key-scope-${scope}` }));
  const formErrors = h("div", { hidden: true });
  const create = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "key-create" }, "Create key");
  const form = h("form", { class: "form", novalidate: true, "data-testid": "key-form" },
    h("div", { class: "grid-fields" }, field("Name", name), field("Expires", expiry)),
    h("fieldset", { class: "fieldset" }, h("legend", {}, "Scopes"),
      h("div", { class: "scope-grid" }, boxes.map((box) => h("label", { class: "check" }, box, h("span", { class: "mono" }, box.value))))),
    formErrors, h("div", { class: "form-actions" }, create));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formErrors.hidden = true;
    const scopes = boxes.filter((box) => box.checked).map((box) => box.value);
    if (!scopes.length) {
      showError(formErrors, { title: "Check the form", detail: "Choose at least one scope" });
      return;
    }
    const request = { scopes };
    if (name.value.trim()) request.name = name.value.trim();
    if (expiry.value) request.expires_in_s = Number(expiry.value);
    create.disabled = true;
    try {
      const created = await postJSON("/v1/api-keys", request);
      // The list first: once the secret shows, the new key's row is already there.
      await load(true);
      const copy = h("button", { type: "button", class: "btn btn-small", "data-testid": "key-copy" }, "Copy");
      copy.addEventListener("click", () => copyText(created.secret, copy));
      replace(secretArea, h("div", { class: "secret", role: "status" },
        h("div", {}, h("strong", {}, `Key “${created.name || created.prefix}” created.`),
          " Copy it now: it is shown only once."),
        h("div", { class: "secret-row" }, h("code", { "data-testid": "key-secret", class: "mono break" }, created.secret), copy)));
      name.value = "";
    } catch (error) {
      showError(formErrors, error);
    } finally {
      create.disabled = false;
    }
  });

  replace(main, pageHeader("API keys"), errors, card("New key", form, secretArea),
    card("Keys", tableWrap(h("table", { class: "table", "data-testid": "key-list" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Prefix"), h("th", {}, "Scopes"), h("th", {}, "Created"),
        h("th", {}, "Last used"), h("th", {}, "Expires"), h("th", {}, "State"),
        h("th", {}, h("span", { class: "visually-hidden" }, "Actions")))), body)), more));
  await load(true);
}
