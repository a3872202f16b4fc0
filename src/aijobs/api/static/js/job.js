// One job: its fields, live progress, per-epoch charts from its `history`, result, log tail and
// Cancel. Polled while the view is shown; a finished job is read once more, then left alone.
import { api } from "./api.js";
import { badge, clear, errorBox, fields, h, progressBar } from "./dom.js";
import { lineChart } from "./charts.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const LOG_TAIL = 8000; // characters

export function jobView(jobId) {
  const head = h("div", { class: "job-head" });
  const message = h("div");
  const about = h("div", { class: "card" });
  const lossChart = lineChart("loss-chart", "Loss", (key) => /loss|perplexity/.test(key));
  const accuracyChart = lineChart("accuracy-chart", "Accuracy", (key) => /acc/.test(key));
  const metrics = h("div", { class: "card" });
  const result = h("div", { class: "card" });
  const log = h("pre", { class: "log", id: "log-tail" });
  let finished = false;

  async function refresh() {
    if (finished) return;
    const [job, text] = await Promise.all([api.job(jobId), api.logTail(jobId, LOG_TAIL)]);
    finished = TERMINAL.has(job.status);
    clear(message);
    renderHead(job);
    renderAbout(job);
    lossChart.update(job.history);
    accuracyChart.update(job.history);
    clear(metrics, h("h3", {}, "Latest metrics"), fields(job.metrics));
    clear(result, h("h3", {}, "Result"),
      job.error ? h("p", { class: "error" }, job.error) : null,
      job.result ? fields(job.result) : h("p", { class: "muted" }, "not yet"));
    const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = text || "(no output yet)";
    if (follow) log.scrollTop = log.scrollHeight;
  }

  function renderHead(job) {
    const cancel = h("button", { type: "button", id: "cancel-job", class: "danger",
      disabled: TERMINAL.has(job.status), onclick: () => cancelJob(cancel) }, "Cancel job");
    const infer = job.job_type === "training" && job.status === "completed" && job.model_id
      ? h("a", { class: "button", href: `#/submit/inference/${encodeURIComponent(job.model_id)}` },
        "Run inference")
      : null;
    clear(head,
      h("h2", {}, job.job_id),
      h("span", { id: "job-status" }, badge(job.status)),
      h("div", { id: "job-progress" }, progressBar(job.progress, job.status)),
      cancel, infer);
  }

  async function cancelJob(button) {
    button.disabled = true;
    try {
      await api.cancel(jobId);
      finished = false; // read it once more: it says cancelled now
      await refresh();
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  }

  function renderAbout(job) {
    clear(about, h("h3", {}, "Job"), fields({
      type: job.job_type,
      queue: job.queue,
      model_type: job.model_type,
      model_id: job.model_id,
      description: job.description,
      attempt: `${job.attempt} of ${job.max_attempts}`,
      created: job.created_at,
      started: job.started_at,
      finished: job.finished_at,
    }));
  }

  function showError(error) {
    clear(message, errorBox(error));
  }

  const root = h("section", { id: "job" },
    h("p", {}, h("a", { href: "#/jobs" }, "‹ All jobs")),
    head, message,
    h("div", { class: "grid" }, about, metrics),
    h("div", { class: "grid" }, lossChart.root, accuracyChart.root),
    result,
    h("div", { class: "card" }, h("h3", {}, `Log (last ${LOG_TAIL} characters)`), log));
  return { root, refresh, showError, stop: () => { lossChart.destroy(); accuracyChart.destroy(); } };
}
