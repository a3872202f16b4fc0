// Queues and their workers; trained models (paged, as the server pages them).
import { api } from "./api.js";
import { age, bytes, clear, duration, errorBox, fields, h } from "./dom.js";

export function queuesView() {
  const queues = h("tbody");
  const workers = h("tbody");
  const message = h("div");

  async function refresh() {
    const [q, w] = await Promise.all([api.queues(), api.workers()]);
    clear(message);
    clear(queues, q.queues.map((queue) => h("tr", { dataset: { queue: queue.queue } },
      h("td", {}, queue.queue),
      h("td", {}, queue.label),
      h("td", {}, queue.gpu ? "GPU" : "CPU"),
      h("td", { class: "number" }, queue.pending),
      h("td", { class: "number" }, queue.running),
      h("td", { class: "number", title: "the claimable job waiting longest" },
        queue.oldest_wait_seconds === null ? "" : duration(queue.oldest_wait_seconds)),
      h("td", { class: queue.has_worker ? "" : "muted" },
        queue.has_worker ? queue.workers.length : "none"))));
    clear(workers, w.workers.length ? w.workers.map((worker) =>
      h("tr", { dataset: { workerId: worker.worker_id } },
        h("td", {}, worker.worker_id),
        h("td", {}, `${worker.host} (pid ${worker.pid})`),
        h("td", {}, worker.queues.join(", ")),
        h("td", { class: "number", title: worker.running_jobs.join(", ") },
          `${worker.running} / ${worker.concurrency}`),
        h("td", {}, worker.gpus.length ? `GPU ${worker.gpus.join(", ")}` : "CPU"),
        h("td", {}, Object.entries(worker.frameworks).map(([n, v]) => `${n} ${v}`).join(", ")),
        h("td", { title: worker.last_seen }, age(worker.last_seen))))
      : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No live worker.")));
  }

  const head = (...names) => h("thead", {}, h("tr", {}, names.map((n) => h("th", {}, n))));
  const root = h("section", { id: "queues" },
    h("h2", {}, "Queues"), message,
    h("table", {},
      head("Queue", "Name", "Device", "Pending", "Running", "Oldest waiting", "Workers"), queues),
    h("h2", {}, "Workers"),
    h("table", { id: "workers" },
      head("Worker", "Host", "Queues", "Busy slots", "Device", "Frameworks", "Seen"), workers));
  return { root, refresh, showError: (error) => clear(message, errorBox(error)) };
}

const MODEL_PAGE = 20;

export function modelsView() {
  const list = h("div", { class: "models" });
  const message = h("div");
  const pager = h("span", { class: "muted" });
  let offset = 0;
  let total = 0;
  const previous = h("button", { type: "button", onclick: () => move(-MODEL_PAGE) }, "‹ Newer");
  const next = h("button", { type: "button", onclick: () => move(MODEL_PAGE) }, "Older ›");

  async function refresh() {
    const page = await api.models({ limit: MODEL_PAGE, offset });
    total = page.total;
    clear(message);
    clear(list, page.models.length ? page.models.map(card) : h("p", { class: "muted" }, "No models."));
    const last = Math.min(offset + page.models.length, total);
    pager.textContent = total ? `${offset + 1}–${last} of ${total}` : "";
    previous.disabled = offset === 0;
    next.disabled = last >= total;
  }

  function move(delta) {
    offset = Math.max(0, Math.min(offset + delta, Math.max(0, total - 1)));
    refresh().catch((error) => clear(message, errorBox(error)));
  }

  const root = h("section", { id: "models-view" },
    h("div", { class: "toolbar" }, h("h2", {}, "Models"), previous, pager, next),
    message, list);
  return { root, refresh, showError: (error) => clear(message, errorBox(error)) };
}

function card(model) {
  return h("div", { class: "card model", dataset: { modelId: model.model_id } },
    h("h3", {}, model.model_id),
    fields({
      framework: `${model.framework} ${model.framework_version || ""}`.trim(),
      model_type: model.model_type,
      queue: model.queue,
      size: model.size_bytes === null || model.size_bytes === undefined ? "unknown" : bytes(model.size_bytes),
      created: model.created_at,
    }),
    h("h4", {}, "Metrics"), fields(model.metrics),
    h("p", {},
      h("a", { href: `#/job/${encodeURIComponent(model.job_id)}` }, "Training job"), " · ",
      h("a", { class: "button", href: `#/submit/inference/${encodeURIComponent(model.model_id)}` },
        "Run inference")));
}
