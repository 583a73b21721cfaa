// Billing: balance, tier and its limits, credit packs (Stripe Checkout), usage by day, the ledger.

import { getJSON, listAll, postJSON, query } from "./api.js";
import {
  card, emptyRow, fmtBytes, fmtDate, fmtSeconds, guard, h, pageHeader, replace, shortId, showError, tableWrap,
} from "./ui.js";

const usd = (value) => (value === null || value === undefined ? "by contract"
  : value.toLocaleString(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 2 }));

function tierTable(pricing, current, checkout) {
  const limits = [
    ["Price / month", (t) => usd(t.monthly_price_usd)],
    ["Credits included / month", (t) => t.monthly_included_credits.toLocaleString()],
    ["Concurrent runs", (t) => t.max_concurrent_runs],
    ["Longest run", (t) => fmtSeconds(t.max_run_seconds)],
    ["Largest FMU", (t) => fmtBytes(t.max_fmu_bytes)],
    ["Storage", (t) => fmtBytes(t.storage_quota_bytes)],
    ["Results kept", (t) => `${t.result_retention_days} days`],
    ["Requests / minute", (t) => t.requests_per_minute.toLocaleString()],
    ["Children per sweep", (t) => t.max_sweep_children.toLocaleString()],
  ];
  const head = h("tr", {}, h("th", {}, ""), pricing.tiers.map((t) => h("th", { class: t.id === current ? "current" : "" },
    t.name, t.id === current ? h("div", { class: "small" }, "your tier") : null)));
  const rows = limits.map(([label, value]) => h("tr", {}, h("th", { scope: "row" }, label),
    pricing.tiers.map((t) => h("td", { class: t.id === current ? "current num" : "num" }, value(t)))));
  const actions = h("tr", {}, h("th", {}, ""), pricing.tiers.map((t) => h("td", { class: t.id === current ? "current" : "" },
    t.id !== current && t.monthly_price_usd ? h("button", { type: "button", class: "btn btn-small",
      "data-testid": `subscribe-${t.id}`, onclick: () => checkout({ tier: t.id }) }, `Switch to ${t.name}`) : null)));
  return tableWrap(h("table", { class: "table table-dense tiers", "data-testid": "tier-limits" },
    h("thead", {}, head), h("tbody", {}, rows, actions)));
}

// The cost of a run is in its settle entry's description (the entry itself moves 0 credits).
function costOf(entry) {
  const match = /cost (\d+) credit/.exec(entry.description || "");
  return match ? Number(match[1]) : 0;
}

function usageByDay(entries) {
  const days = new Map();
  for (const entry of entries) {
    if (entry.kind !== "settle") continue;
    const day = fmtDate(entry.created_at).slice(0, 10);
    const usage = days.get(day) || { credits: 0, runs: 0 };
    usage.credits += costOf(entry);
    usage.runs += 1;
    days.set(day, usage);
  }
  if (!days.size) return h("p", { class: "muted" }, "No settled runs yet.");
  const peak = Math.max(1, ...[...days.values()].map((u) => u.credits));
  return tableWrap(h("table", { class: "table table-dense", "data-testid": "usage-by-day" },
    h("thead", {}, h("tr", {}, h("th", {}, "Day"), h("th", { class: "num" }, "Runs"), h("th", { class: "num" }, "Credits"),
      h("th", { class: "bar-col" }, ""))),
    h("tbody", {}, [...days].map(([day, usage]) => {
      const bar = h("div", { class: "bar" });
      bar.style.width = `${(100 * usage.credits) / peak}%`;
      return h("tr", {}, h("td", {}, day), h("td", { class: "num" }, usage.runs), h("td", { class: "num" }, usage.credits),
        h("td", { class: "bar-col" }, bar));
    }))));
}

export async function billingPage(main, { signal }) {
  const errors = h("div", { hidden: true });
  const [balance, pricing] = await Promise.all([getJSON("/v1/billing/balance", { signal }),
    getJSON("/v1/billing/pricing", { signal })]);
  const tier = pricing.tiers.find((t) => t.id === balance.tier);

  const checkout = guard(errors, async (choice) => {
    errors.hidden = true;
    const session = await postJSON("/v1/billing/checkout", choice);
    window.location.assign(session.url);
  });

  const ledgerBody = h("tbody", {});
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  let cursor = null;
  const ledgerRow = (e) => h("tr", {}, h("td", {}, fmtDate(e.created_at)), h("td", {}, h("span", { class: `kind kind-${e.kind}` }, e.kind)),
    h("td", { class: `num ${e.amount < 0 ? "neg" : e.amount > 0 ? "pos" : ""}` }, e.amount > 0 ? `+${e.amount}` : e.amount),
    h("td", { class: "num" }, e.balance_after),
    h("td", {}, e.run_id ? h("a", { href: `#/runs/${e.run_id}`, class: "mono", title: e.run_id }, shortId(e.run_id)) : ""),
    h("td", { class: "desc" }, e.description || e.reference || ""));
  async function loadLedger(reset) {
    const page = await getJSON(`/v1/billing/ledger${query({ limit: 25, cursor: reset ? null : cursor })}`, { signal });
    if (reset) ledgerBody.replaceChildren();
    ledgerBody.append(...page.data.map(ledgerRow));
    if (!ledgerBody.children.length) ledgerBody.append(emptyRow(6, "No entries yet."));
    cursor = page.next_cursor;
    more.hidden = !page.has_more;
  }
  more.addEventListener("click", guard(errors, () => loadLedger(false)));
  const usage = h("div", {}, h("p", { class: "muted" }, "Loading…"));

  replace(main, pageHeader("Billing"), errors,
    h("div", { class: "stats" },
      h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Credits available"),
        h("div", { class: "stat-value", "data-testid": "credits-balance" }, String(balance.credits))),
      h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Held by active runs"),
        h("div", { class: "stat-value", "data-testid": "credits-held" }, String(balance.held_credits))),
      balance.debt_credits ? h("div", { class: "stat stat-warn" }, h("div", { class: "stat-label" }, "Debt"),
        h("div", { class: "stat-value" }, String(balance.debt_credits))) : null,
      h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Tier"),
        h("div", { class: "stat-value", "data-testid": "tier" }, tier ? tier.name : balance.tier))),
    card("Buy credits", h("p", { class: "muted small" },
      `One credit is worth ${usd(pricing.credit_value_usd)}. A run costs ${pricing.cost_model.run_base_credits} credit ` +
      `plus ${pricing.cost_model.credits_per_cpu_second} per CPU second beyond ${pricing.cost_model.included_cpu_seconds} s. ` +
      "Payment is by Stripe Checkout; credits arrive when Stripe confirms it."),
    h("div", { class: "packs" }, pricing.credit_packs.map((pack) => h("button", { type: "button", class: "pack",
      "data-testid": `buy-${pack.id}`, onclick: () => checkout({ pack: pack.id }) },
    h("span", { class: "pack-name" }, pack.name), h("span", { class: "pack-price" }, usd(pack.price_usd)))))),
    card("Tiers and limits", tierTable(pricing, balance.tier, checkout)),
    card("Usage by day", usage),
    card("Ledger", tableWrap(h("table", { class: "table table-dense", "data-testid": "ledger" },
      h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Kind"), h("th", { class: "num" }, "Amount"),
        h("th", { class: "num" }, "Balance"), h("th", {}, "Run"), h("th", {}, "Description"))), ledgerBody)), more));
  await loadLedger(true);
  try {
    replace(usage, usageByDay(await listAll("/v1/billing/ledger", { kind: "settle" }, 500, signal)));
  } catch (error) {
    showError(usage, error);
  }
}
