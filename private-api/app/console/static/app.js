// The console's shell: sign-in, navigation and hash routing to the pages.

import { apiKey, clearApiKey, request, setApiKey, unauthorized } from "./api.js";
import { billingPage } from "./billing.js";
import { keysPage } from "./keys.js";
import { modelPage, modelsPage } from "./models.js";
import { runPage, runsPage } from "./runs.js";
import { sweepPage, sweepsPage } from "./sweeps.js";
import { errorBox, h, replace } from "./ui.js";

const signin = document.getElementById("signin");
const signinForm = document.getElementById("signin-form");
const signinError = document.getElementById("signin-error");
const keyInput = document.getElementById("api-key");
const shell = document.getElementById("shell");
const main = document.getElementById("main");

// Each page gets an AbortSignal that fires when the user leaves it (streams, polls, fetches).
let leaving = null;

const ROUTES = [
  [/^\/models$/, "models", () => modelsPage],
  [/^\/models\/([\w-]+)$/, "models", () => modelPage],
  [/^\/runs$/, "runs", () => runsPage],
  [/^\/runs\/([\w-]+)$/, "runs", () => runPage],
  [/^\/sweeps$/, "sweeps", () => sweepsPage],
  [/^\/sweeps\/([\w-]+)$/, "sweeps", () => sweepPage],
  [/^\/billing$/, "billing", () => billingPage],
  [/^\/keys$/, "keys", () => keysPage],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/models";
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

function showSignin(message) {
  leaving?.abort();
  leaving = null;
  shell.hidden = true;
  signin.hidden = false;
  main.replaceChildren();
  if (message) {
    replace(signinError, message);
    signinError.hidden = false;
  } else {
    signinError.hidden = true;
  }
  keyInput.value = "";
  keyInput.focus();
}

function render() {
  if (!apiKey()) {
    showSignin();
    return;
  }
  signin.hidden = true;
  shell.hidden = false;
  leaving?.abort();
  leaving = new AbortController();
  const { path, params } = parseHash();
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = route && link.dataset.nav === route[1];
    link.classList.toggle("active", Boolean(current));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (!route) {
    main.append(h("div", { class: "card" }, h("h1", {}, "Not found"), h("p", {}, "No such page. ",
      h("a", { href: "#/models" }, "Go to models"), ".")));
    return;
  }
  const [pattern, , page] = route;
  const args = path.match(pattern).slice(1);
  const signal = leaving.signal;
  Promise.resolve(page()(main, { args, params, signal })).catch((error) => {
    if (error?.name === "AbortError" || signal.aborted) return;
    main.append(errorBox(error));
  });
}

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  const button = signinForm.querySelector("button[type=submit]");
  button.disabled = true;
  signinError.hidden = true;
  setApiKey(key);
  try {
    // Any answer but 401 means the key is real (a key without billing:read gets 403 here).
    await request("/v1/billing/balance").catch((error) => {
      if (error.status !== 403) throw error;
    });
    document.getElementById("key-hint").textContent = `${key.slice(0, 14)}…`;
    // replaceState fires no hashchange: the page is rendered once, here.
    if (!location.hash || location.hash === "#" || location.hash === "#/") history.replaceState(null, "", "#/models");
    render();
    main.focus();
  } catch (error) {
    clearApiKey();
    replace(signinError, error.status === 401 ? "That API key was not accepted." : error.message);
    signinError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

document.getElementById("sign-out").addEventListener("click", () => {
  clearApiKey();
  showSignin("Signed out.");
});

unauthorized.addEventListener("unauthorized", (event) => {
  const detail = event.detail?.detail ? ` (${event.detail.detail})` : "";
  showSignin(`Your API key is no longer accepted${detail}. Sign in again.`);
});

window.addEventListener("hashchange", () => {
  render();
  if (apiKey()) main.focus({ preventScroll: true });
});

window.addEventListener("unhandledrejection", (event) => {
  // Leaving a page aborts its requests; that is not an error worth reporting.
  if (event.reason?.name === "AbortError") event.preventDefault();
});

if (apiKey()) document.getElementById("key-hint").textContent = `${apiKey().slice(0, 14)}…`;
render();
