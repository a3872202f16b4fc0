// Building elements from API data. Every string goes in as text (textContent or an attribute),
// never as HTML: job descriptions, logs and errors are user text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map(asNode));
  return el;
}

function asNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map(asNode));
  return el;
}

export function progressBar(fraction, status) {
  const percent = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100);
  const bar = h("div", { class: "bar" });
  bar.style.width = `${percent}%`; // a style property, not a style attribute: the page's CSP
  return h(
    "div",
    { class: `progress ${status}`, role: "progressbar", "aria-valuenow": percent,
      "aria-valuemin": 0, "aria-valuemax": 100, title: `${percent}%` },
    bar,
    h("span", {}, `${percent}%`),
  );
}

export function badge(status) {
  return h("span", { class: `badge ${status}` }, status);
}

export function age(iso) {
  if (!iso) return "";
  return `${duration((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

// "42s", "3m", "5h", "2d": the largest unit, rounded down.
export function duration(seconds) {
  seconds = Math.max(0, seconds);
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function number(value) {
  if (typeof value === "string") return value;
  if (typeof value !== "number") return JSON.stringify(value);
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}

// A definition list of a flat object's fields (nested values as JSON; empty ones left out).
export function fields(object) {
  const entries = Object.entries(object || {}).filter(([, v]) => v !== null && v !== undefined);
  if (!entries.length) return h("p", { class: "muted" }, "none");
  return h("dl", { class: "fields" }, entries.map(([key, value]) => [
    h("dt", {}, key),
    h("dd", {}, typeof value === "object" && value !== null ? JSON.stringify(value) : number(value)),
  ]));
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}
