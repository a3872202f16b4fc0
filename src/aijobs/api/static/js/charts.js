// Per-epoch line charts of a job's `history` (uPlot, vendored; loaded as the global `uPlot`).
// A chart plots every numeric key its `wanted(key)` accepts, one line each, by epoch.
import { clear, h } from "./dom.js";

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
const WIDTH = 520;
const HEIGHT = 240;
const EPOCH_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]; // whole epochs on the x axis

export function lineChart(id, title, wanted) {
  const plotArea = h("div", { class: "plot" });
  const root = h("div", { class: "card chart", id, dataset: { points: 0 } },
    h("h3", {}, title), plotArea);
  let plot = null;
  let shape = ""; // the series plotted: a new key means a new chart

  function update(history) {
    const rows = (history || []).filter((row) => typeof row.epoch === "number");
    const keys = [...new Set(rows.flatMap((row) =>
      Object.keys(row).filter((k) => k !== "epoch" && wanted(k) && typeof row[k] === "number")))];
    if (!keys.length) {
      destroy();
      clear(plotArea, h("p", { class: "muted" }, "No per-epoch values yet."));
      root.dataset.points = 0;
      return;
    }
    const data = [rows.map((row) => row.epoch),
      ...keys.map((k) => rows.map((row) => (typeof row[k] === "number" ? row[k] : null)))];
    if (plot && shape === keys.join()) {
      plot.setData(data);
    } else {
      destroy();
      clear(plotArea);
      shape = keys.join();
      plot = new uPlot({
        width: WIDTH,
        height: HEIGHT,
        scales: { x: { time: false } },
        axes: [{ label: "epoch", incrs: EPOCH_STEPS }, {}],
        series: [{ label: "epoch" }, ...keys.map((k, i) => ({
          label: k, stroke: COLOURS[i % COLOURS.length], width: 2, points: { show: true, size: 6 },
        }))],
      }, data, plotArea);
    }
    root.dataset.points = rows.length;
  }

  function destroy() {
    plot?.destroy();
    plot = null;
    shape = "";
  }

  return { root, update, destroy };
}
