// Jobs: one page of GET /jobs at a time (the server pages; the table never holds them all),
// filtered by status, newest first.
import { api } from "./api.js";
import { age, badge, clear, errorBox, h, progressBar } from "./dom.js";

const STATUSES = ["", "pending", "running", "completed", "failed", "cancelled"];
const PAGE = 25;
const state = { status: "", offset: 0 }; // kept across visits to the view

export function jobsView() {
  const filter = h("select", { id: "status-filter", "aria-label": "Status" },
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, s || "all")));
  const body = h("tbody");
  const pager = h("span", { class: "muted" });
  const message = h("div");
  const previous = h("button", { type: "button", onclick: () => move(-PAGE) }, "‹ Newer");
  const next = h("button", { type: "button", onclick: () => move(PAGE) }, "Older ›");
  let total = 0;

  async function refresh() {
    const page = await api.jobs({ status: state.status, limit: PAGE, offset: state.offset });
    total = page.total;
    clear(message);
    clear(body, page.jobs.map(row));
    if (!page.jobs.length) {
      body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs.")));
    }
    const last = Math.min(state.offset + page.jobs.length, total);
    pager.textContent = total ? `${state.offset + 1}–${last} of ${total}` : "";
    previous.disabled = state.offset === 0;
    next.disabled = last >= total;
  }

  function move(delta) {
    state.offset = Math.max(0, Math.min(state.offset + delta, Math.max(0, total - 1)));
    refresh().catch(showError);
  }

  function showError(error) {
    clear(message, errorBox(error));
  }

  filter.addEventListener("change", () => {
    state.status = filter.value;
    state.offset = 0;
    refresh().catch(showError);
  });

  const root = h("section", { id: "jobs" },
    h("div", { class: "toolbar" },
      h("h2", {}, "Jobs"),
      h("label", {}, "Status ", filter),
      previous, pager, next,
      h("a", { class: "button", href: "#/submit" }, "Submit a job")),
    message,
    h("table", { class: "jobs" },
      h("thead", {}, h("tr", {},
        ["Job", "Type", "Status", "Progress", "Queue", "Model", "Age"].map((c) => h("th", {}, c)))),
      body));
  return { root, refresh, showError };
}

function row(job) {
  return h("tr", { dataset: { jobId: job.job_id, status: job.status } },
    h("td", {}, h("a", { href: `#/job/${encodeURIComponent(job.job_id)}` }, job.job_id)),
    h("td", {}, job.job_type),
    h("td", {}, badge(job.status)),
    h("td", {}, progressBar(job.progress, job.status)),
    h("td", {}, job.queue),
    h("td", {}, job.model_type || job.model_id || ""),
    h("td", { title: job.created_at }, age(job.created_at)));
}
