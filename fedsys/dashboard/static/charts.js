// Thin helpers over uPlot (vendored, see uPlot.LICENSE): line and bar charts that
// keep their uPlot instance reachable as window.fedsysCharts[name] (tests read it).
"use strict";
window.fedsysCharts = {};

const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function fmtNum(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (digits !== undefined) return v.toFixed(digits);
  if (Number.isInteger(v) && a < 1e4) return String(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(2) + " h";
}

// A chart in `el`: spec = {name, title, xLabel, yLabel, series: [{label, color, bars,
// dash, scale}], x: "time" | "num", height}. Returns {plot, setData(data)}.
function makeChart(el, spec, data) {
  el.innerHTML = "";
  const width = Math.max(320, el.clientWidth || 560);
  const axes = [
    { label: spec.xLabel || "", values: (u, vals) => vals.map((v) => fmtNum(v)) },
    { label: spec.yLabel || "", values: (u, vals) => vals.map((v) => fmtNum(v)), size: 60 },
  ];
  const scales = { x: { time: false } };
  if (spec.series.some((s) => s.scale === "y2")) {
    axes.push({ side: 1, scale: "y2", label: spec.y2Label || "", grid: { show: false },
      values: (u, vals) => vals.map((v) => fmtNum(v)), size: 60 });
  }
  const series = [{ label: spec.xLabel || "x" }].concat(spec.series.map((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const out = { label: s.label, stroke: color, width: 1.6, spanGaps: true,
      scale: s.scale || "y", points: { show: s.points !== undefined ? s.points : false } };
    if (s.bars) {
      out.paths = uPlot.paths.bars({ size: [0.8, 40] });
      out.fill = color + "cc";
      out.width = 0;
    }
    if (s.dash) out.dash = s.dash;
    return out;
  }));
  const opts = { width, height: spec.height || 240, title: spec.title, scales, axes, series,
    legend: { live: true }, cursor: { drag: { x: true, y: false } } };
  const plot = new uPlot(opts, data, el);
  if (spec.name) window.fedsysCharts[spec.name] = plot;
  return { plot, setData: (d) => plot.setData(d) };
}

// Resize every chart to its container when the window changes size.
window.addEventListener("resize", () => {
  for (const plot of Object.values(window.fedsysCharts)) {
    const el = plot.root.parentElement;
    if (el && el.clientWidth) plot.setSize({ width: el.clientWidth, height: plot.height });
  }
});
