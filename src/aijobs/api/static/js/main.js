// The page: a hash router over four views, and one poll that refreshes the visible view.
import { clear } from "./dom.js";
import { jobsView } from "./jobs.js";
import { jobView } from "./job.js";
import { submitView } from "./submit.js";
import { queuesView, modelsView } from "./catalog.js";

const POLL_MS = 1500;
const routes = [
  [/^#\/jobs$/, () => jobsView()],
  [/^#\/job\/([^/]+)$/, (id) => jobView(decodeURIComponent(id))],
  [/^#\/submit(?:\/inference\/([^/]+))?$/, (model) => submitView(model && decodeURIComponent(model))],
  [/^#\/queues$/, () => queuesView()],
  [/^#\/models$/, () => modelsView()],
];

let current = null; // { root, refresh, stop? }
let busy = false;

function show() {
  const hash = location.hash || "#/jobs";
  const route = routes.find(([pattern]) => pattern.test(hash));
  if (!route) {
    location.hash = "#/jobs";
    return;
  }
  current?.stop?.();
  current = route[1](...route[0].exec(hash).slice(1));
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  }
  clear(document.getElementById("view"), current.root);
  tick();
}

// Only the visible view is refreshed, only while the tab is visible, one request round at a time.
async function tick() {
  if (busy || document.visibilityState !== "visible" || !current) return;
  busy = true;
  const view = current;
  const status = document.getElementById("connection");
  try {
    await view.refresh();
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove("error");
  } catch (error) {
    if (view === current && view.showError) view.showError(error);
    status.textContent = error.message || String(error);
    status.classList.add("error");
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", show);
document.addEventListener("visibilitychange", tick);
setInterval(tick, POLL_MS);
show();
