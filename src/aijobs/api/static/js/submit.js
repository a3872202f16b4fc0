// Submit a training or an inference job. Where a training job will go is asked of the server
// (GET /routing: the routing table lives there only) and shown before anything is sent.
import { api } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

let knownModelTypes = null; // from the OpenAPI document's examples, read once

async function modelTypes() {
  if (knownModelTypes === null) {
    try {
      const spec = await (await fetch("openapi.json")).json();
      const choices = spec.components.schemas.TrainingRequest.anyOf || [];
      knownModelTypes = choices.flatMap((c) => c.properties?.model_type?.examples || []);
    } catch {
      knownModelTypes = []; // a free-text field then
    }
  }
  return knownModelTypes;
}

function parseObject(text, name) {
  if (!text.trim()) return {};
  let value;
  try { value = JSON.parse(text); } catch (error) { throw new Error(`${name}: ${error.message}`); }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${name} must be a JSON object`);
  }
  return value;
}

function optionalNumber(input) {
  return input.value === "" ? undefined : Number(input.value);
}

export function submitView(modelId) {
  const kind = h("select", { id: "job-kind", "aria-label": "Job type" },
    h("option", { value: "training", selected: !modelId }, "Training"),
    h("option", { value: "inference", selected: !!modelId }, "Inference"));
  const types = h("datalist", { id: "model-types" });
  const t = {
    model_type: h("input", { id: "model-type", list: "model-types", required: true,
      placeholder: "e.g. resnet", autocomplete: "off" }),
    data_path: h("input", { id: "data-path", placeholder: "a path under a data root" }),
    hyperparameters: h("textarea", { id: "hyperparameters", rows: 3, placeholder: '{"epochs": 3}' }),
    description: h("input", { id: "description" }),
    requires_gpu: h("input", { id: "requires-gpu", type: "checkbox" }),
    framework_override: h("input", { id: "framework-override", placeholder: "optional" }),
  };
  const i = {
    model_id: h("input", { id: "model-id", value: modelId || "" }),
    input_data: h("textarea", { id: "input-data", rows: 3 }),
    parameters: h("textarea", { id: "parameters", rows: 2, placeholder: '{"top_k": 3}' }),
  };
  const priority = h("input", { id: "priority", type: "number", value: 0, min: -1000, max: 1000 });
  const timeout = h("input", { id: "timeout", type: "number", min: 1, placeholder: "default" });
  const route = h("p", { id: "routing", class: "routing", "aria-live": "polite" });
  const message = h("div");
  const field = (label, input) => h("label", {}, h("span", {}, label), input);
  const training = h("fieldset", { id: "training-fields" },
    field("Model type", t.model_type), types,
    field("Data path", t.data_path),
    field("Hyperparameters (JSON)", t.hyperparameters),
    field("Description", t.description),
    field("Requires GPU", t.requires_gpu),
    field("Framework override", t.framework_override));
  const inference = h("fieldset", { id: "inference-fields" },
    field("Model", i.model_id),
    field("Input data", i.input_data),
    field("Parameters (JSON)", i.parameters));
  let asked = 0; // answers to older routing questions are dropped

  async function preview() {
    const question = ++asked;
    let text;
    let problem = false;
    try {
      if (kind.value === "training") {
        if (!t.model_type.value.trim()) {
          text = "Name a model type to see its queue.";
        } else {
          const r = await api.routing({ model_type: t.model_type.value.trim(),
            requires_gpu: t.requires_gpu.checked, framework_override: t.framework_override.value });
          text = `Goes to queue ${r.queue} (${r.label})` +
            (r.has_worker ? ", served by a live worker." : ": no live worker serves it yet.");
        }
      } else if (!i.model_id.value.trim()) {
        text = "Name a model to see its queue.";
      } else {
        const m = await api.model(i.model_id.value.trim());
        text = `Goes to queue ${m.queue}, where the model was trained (${m.framework}).`;
      }
    } catch (error) {
      text = error.message;
      problem = true;
    }
    if (question !== asked) return;
    route.textContent = text;
    route.classList.toggle("error", problem);
  }

  function body() {
    const common = { priority: Number(priority.value || 0) };
    const limit = optionalNumber(timeout);
    if (limit !== undefined) common.timeout_seconds = limit;
    if (kind.value === "inference") {
      return { ...common, model_id: i.model_id.value.trim(), input_data: i.input_data.value,
        parameters: parseObject(i.parameters.value, "Parameters") };
    }
    const request = { ...common, model_type: t.model_type.value.trim(),
      data_path: t.data_path.value.trim(),
      hyperparameters: parseObject(t.hyperparameters.value, "Hyperparameters"),
      requires_gpu: t.requires_gpu.checked };
    if (t.description.value) request.description = t.description.value;
    if (t.framework_override.value.trim()) request.framework_override = t.framework_override.value;
    return request;
  }

  async function submit(event) {
    event.preventDefault();
    clear(message);
    try {
      const request = body();
      const accepted = kind.value === "training"
        ? await api.submitTraining(request) : await api.submitInference(request);
      location.hash = `#/job/${encodeURIComponent(accepted.job_id)}`;
    } catch (error) {
      clear(message, errorBox(error));
    }
  }

  function showKind() {
    training.hidden = kind.value !== "training";
    inference.hidden = kind.value !== "inference";
    preview();
  }

  let pause = null;
  const later = () => { clearTimeout(pause); pause = setTimeout(preview, 250); };
  for (const input of [t.model_type, t.framework_override, i.model_id]) {
    input.addEventListener("input", later);
  }
  t.requires_gpu.addEventListener("change", preview);
  kind.addEventListener("change", showKind);
  modelTypes().then((names) => types.append(...names.map((n) => h("option", { value: n }))));
  showKind();

  const root = h("section", { id: "submit" },
    h("h2", {}, "Submit a job"),
    h("form", { id: "submit-form", onsubmit: submit },
      field("Job type", kind), training, inference,
      field("Priority", priority), field("Timeout (seconds)", timeout),
      route, message,
      h("button", { type: "submit", id: "submit-job" }, "Submit")));
  return { root, refresh: preview, showError: (error) => clear(message, errorBox(error)) };
}
