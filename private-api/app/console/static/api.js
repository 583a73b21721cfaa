// The console's only way to the server: the public /v1 API with the key from session storage.
// The key goes in the Authorization header and nowhere else (never a URL, never a log).

const KEY_ITEM = "fmu-gateway.api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function clearApiKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

// A problem+json error (RFC 9457) or a transport failure, with what the user needs to see.
export class ApiError extends Error {
  constructor({ status = 0, title = "Request failed", detail = "", code = "", requestId = "", extra = {} }) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.code = code;
    this.requestId = requestId;
    this.extra = extra;
  }
}

// Raised (after the key is dropped) when the server does not accept the key: the shell listens.
export const unauthorized = new EventTarget();

function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function problemOf(response) {
  const requestId = response.headers.get("x-request-id") || "";
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (body && typeof body === "object" && (body.title || body.detail)) {
    const { title, detail, code, request_id: rid, status, type, ...extra } = body;
    return new ApiError({ status: response.status, title, detail: detail || "", code: code || "",
      requestId: rid || requestId, extra });
  }
  return new ApiError({ status: response.status, title: `HTTP ${response.status}`,
    detail: response.statusText || "", requestId });
}

function noteUnauthorized(error) {
  if (error.status === 401) {
    clearApiKey();
    unauthorized.dispatchEvent(new CustomEvent("unauthorized", { detail: error }));
  }
}

// fetch() with the key; a non-2xx answer becomes an ApiError (401 also signs out).
export async function request(path, { method = "GET", json, body, headers = {}, signal } = {}) {
  const sent = authHeaders(headers);
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  if (method === "POST" && !sent["Idempotency-Key"]) sent["Idempotency-Key"] = newIdempotencyKey();
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError({ title: "Network error", detail: "The server could not be reached." });
  }
  if (!response.ok) {
    const error = await problemOf(response);
    noteUnauthorized(error);
    throw error;
  }
  return response;
}

export async function getJSON(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

export function postJSON(path, json, options = {}) {
  return getJSON(path, { ...options, method: "POST", json });
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Upload an FMU as multipart ``file``; XMLHttpRequest for its upload progress events.
export function uploadFmu(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/fmus");
    for (const [name, value] of Object.entries(authHeaders({ "Idempotency-Key": newIdempotencyKey() }))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve({ fmu: body, existing: xhr.status === 200 });
        return;
      }
      const { title, detail, code, request_id: requestId, status, type, ...extra } = body || {};
      const error = new ApiError({ status: xhr.status, title: title || `HTTP ${xhr.status}`,
        detail: detail || "", code: code || "", requestId: requestId || "", extra });
      noteUnauthorized(error);
      reject(error);
    });
    xhr.addEventListener("error", () => reject(new ApiError({ title: "Network error",
      detail: "The upload did not reach the server." })));
    xhr.addEventListener("abort", () => reject(new ApiError({ title: "Upload cancelled" })));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// Fetch with the key and save the body as a file (a Blob URL and an <a download>).
export async function download(path, filename, signal) {
  const response = await request(path, { signal });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => {
    clearTimeout(timer);
    resolve();
  }, { once: true });
});

// Server-Sent Events over fetch(): EventSource cannot send the Authorization header. Calls
// onEvent(name, data) per event and resolves with the ``end`` event's data; reconnects with
// Last-Event-ID when the server closes the stream before ``end``. Rejects (an ApiError) when the
// stream cannot be had, so the caller can poll instead.
export async function streamEvents(path, onEvent, signal) {
  let lastId = null;
  let retryMs = 1000;
  let failures = 0;
  while (!signal?.aborted) {
    const headers = { Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await request(path, { headers, signal });
    } catch (error) {
      if (error.name === "AbortError") return null;
      if (error.status || ++failures > 3) throw error;
      await sleep(retryMs, signal);
      continue;
    }
    failures = 0;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { name: "message", data: [], id: null };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (event.id !== null) lastId = event.id;
            if (event.data.length) {
              const data = JSON.parse(event.data.join("\n"));
              onEvent(event.name, data);
              if (event.name === "end") {
                await reader.cancel().catch(() => {});
                return data;
              }
            }
            event = { name: "message", data: [], id: null };
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let content = colon === -1 ? "" : line.slice(colon + 1);
          if (content.startsWith(" ")) content = content.slice(1);
          if (field === "event") event.name = content;
          else if (field === "data") event.data.push(content);
          else if (field === "id") event.id = content;
          else if (field === "retry" && /^\d+$/.test(content)) retryMs = Number(content);
        }
      }
    } catch (error) {
      if (signal?.aborted || error.name === "AbortError") return null;
      // A dropped connection: resume after the last event received.
    }
    await sleep(retryMs, signal);
  }
  return null;
}

// Follow a run or sweep to its end: the event stream, or polling GET when no stream can be had.
export async function follow(kind, id, onUpdate, signal, isFinal) {
  const base = kind === "run" ? `/v1/runs/${id}` : `/v1/sweeps/${id}`;
  try {
    const end = await streamEvents(`${base}/events`, (_name, data) => onUpdate(data), signal);
    if (end || signal?.aborted) return end;
  } catch (error) {
    if (error.status === 401 || error.status === 404) throw error;
  }
  let delay = 1000;
  while (!signal?.aborted) {
    const current = await getJSON(base, { signal });
    onUpdate(current);
    if (isFinal(current)) return current;
    await sleep(delay, signal);
    delay = Math.min(delay * 1.5, 5000);
  }
  return null;
}

// Every page of a list endpoint, up to ``max`` items.
export async function listAll(path, params = {}, max = 500, signal) {
  const items = [];
  let cursor = null;
  do {
    const page = await getJSON(path + query({ ...params, limit: 100, cursor }), { signal });
    items.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
