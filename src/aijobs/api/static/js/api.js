// The API behind the page. With auth on, the key lives in sessionStorage (this tab only) and goes
// with every request; a 401 asks for it again and retries once it is given.

const KEY = "aijobs.apiKey";
let asking = null; // one prompt at a time, however many requests were refused

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? `${body.error || status}: ${body.detail}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function askForKey(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-reason").textContent = reason;
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem(KEY, input.value.trim());
      asking = null;
      resolve();
    }, { once: true });
  });
  dialog.showModal();
  return asking;
}

async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function call(method, path, body) {
  for (;;) {
    const response = await send(method, path, body);
    if (response.status === 401) {
      const had = sessionStorage.getItem(KEY);
      await askForKey(had ? "That key was refused: give another." : "This server requires an API key.");
      continue;
    }
    return response;
  }
}

async function json(method, path, body) {
  const response = await call(method, path, body);
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
}

export const api = {
  jobs: (params) => json("GET", `jobs${query(params)}`),
  job: (id) => json("GET", `jobs/${encodeURIComponent(id)}/status`),
  cancel: (id) => json("DELETE", `jobs/${encodeURIComponent(id)}`),
  async logTail(id, tail) {
    const response = await call("GET", `jobs/${encodeURIComponent(id)}/logs${query({ tail })}`);
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    return response.text();
  },
  submitTraining: (body) => json("POST", "jobs/training", body),
  submitInference: (body) => json("POST", "jobs/inference", body),
  routing: (params) => json("GET", `routing${query(params)}`),
  queues: () => json("GET", "queues"),
  workers: () => json("GET", "workers"),
  models: (params) => json("GET", `models${query(params)}`),
  model: (id) => json("GET", `models/${encodeURIComponent(id)}`),
};
