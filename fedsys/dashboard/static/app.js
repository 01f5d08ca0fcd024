// The dashboard page: hash routes, the runs list and comparison, and a run's live page.
// Data comes from the read-only JSON API; a run page keeps one server-sent-events
// stream open and appends what the run writes (no reload).
"use strict";

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const liveDot = document.getElementById("live");
let current = null; // the open page: {close()}
const REDRAW_MS = 250;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path) {
  const response = await fetch("api/" + path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function runHref(id, params) {
  const q = new URLSearchParams(params || {}).toString();
  return "#/run/" + encodeURIComponent(id) + (q ? "?" + q : "");
}

function parseHash() {
  const hash = decodeURIComponent(location.hash.slice(1) || "/");
  const [path, query] = hash.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function route() {
  if (current) current.close();
  current = null;
  window.fedsysCharts = {};
  document.body.dataset.ready = "";
  main.innerHTML = "";
  const { path, params } = parseHash();
  if (path.startsWith("/run/")) current = runPage(path.slice(5), params);
  else current = runsPage(params);
}

function badge(status) { return h("span", { class: "badge " + status }, status); }

// ------------------------------------------------------------------ runs list
function runsPage(params) {
  crumbs.innerHTML = "";
  crumbs.append(h("span", {}, "runs"));
  const picked = new Set((params.get("compare") || "").split(",").filter(Boolean));
  const listCard = h("div", { class: "card" }, h("h2", {}, "Runs"), h("p", { class: "muted" }, "loading…"));
  const compareCard = h("div", { class: "card", id: "compare" });
  main.append(h("h1", {}, "Runs"), listCard, compareCard);
  let closed = false;

  async function load() {
    const { runs } = await api("runs");
    if (closed) return;
    const table = h("table", { id: "runs" }, h("tr", {},
      h("th", {}, "compare"), h("th", {}, "run"), h("th", {}, "status"), h("th", {}, "runtime"),
      h("th", {}, "selector"), h("th", {}, "mode"), h("th", { class: "num" }, "rounds"),
      h("th", { class: "num" }, "accuracy"), h("th", { class: "num" }, "time")));
    for (const run of runs) {
      const box = h("input", { type: "checkbox", "data-run": run.id, checked: picked.has(run.id),
        onchange: (e) => { e.target.checked ? picked.add(run.id) : picked.delete(run.id); compare(); } });
      table.append(h("tr", { "data-run": run.id },
        h("td", {}, box),
        h("td", {}, h("a", { href: runHref(run.id) }, run.id)),
        h("td", {}, badge(run.status)), h("td", {}, run.runtime || "–"),
        h("td", {}, run.selector || "–"), h("td", {}, run.mode || "–"),
        h("td", { class: "num" }, `${run.rounds_done}${run.rounds_total ? " / " + run.rounds_total : ""}`),
        h("td", { class: "num" }, fmtNum(run.final_accuracy, 3)),
        h("td", { class: "num" }, fmtDuration(run.time_s))));
    }
    listCard.replaceChildren(h("h2", {}, "Runs"), runs.length ? table :
      h("p", { class: "muted" }, "No run folders found yet."));
    compare();
  }

  async function compare() {
    const ids = [...picked];
    if (!ids.length) {
      compareCard.replaceChildren(h("h2", {}, "Compare"),
        h("p", { class: "muted" }, "Tick two or more runs to compare them on one chart."));
      return;
    }
    const q = ids.map((id) => "run=" + encodeURIComponent(id)).join("&");
    const { runs } = await api("compare?" + q);
    if (closed) return;
    drawCompare(compareCard, runs);
    document.body.dataset.ready = "compare";
  }

  load().catch((e) => listCard.append(h("p", { class: "error" }, e.message)));
  const timer = setInterval(() => { if (!picked.size) load().catch(() => {}); }, 5000);
  return { close() { closed = true; clearInterval(timer); } };
}

function drawCompare(card, runs) {
  const xSel = h("select", { id: "compare-x" }, h("option", { value: "virtual" }, "time (end of round)"),
    h("option", { value: "wall" }, "wall time (host)"), h("option", { value: "round" }, "round"));
  const target = runs.find((r) => r.target_accuracy)?.target_accuracy ?? 0.8;
  const tInput = h("input", { type: "number", step: "0.01", min: "0", max: "1", value: target, id: "compare-target" });
  const accEl = h("div"), lossEl = h("div"), tableEl = h("div");
  card.replaceChildren(h("h2", {}, "Compare"),
    h("div", { class: "controls" }, "x axis ", xSel, " target accuracy ", tInput),
    h("div", { class: "grid" }, accEl, lossEl), tableEl);

  function draw() {
    const mode = xSel.value;
    const acc = unionSeries(runs, mode, "accuracy");
    const loss = unionSeries(runs, mode, "test_loss");
    const series = runs.map((r) => ({ label: r.id, points: true }));
    makeChart(accEl, { name: "compare_accuracy", title: "accuracy", xLabel: xLabel(mode), series }, acc);
    makeChart(lossEl, { name: "compare_loss", title: "test loss", xLabel: xLabel(mode), series }, loss);
    const goal = parseFloat(tInput.value);
    const rows = runs.map((r) => {
      const hit = tta(r.rounds, goal);
      return h("tr", {}, h("td", {}, r.id), h("td", {}, r.selector || "–"),
        h("td", { class: "num" }, hit ? fmtDuration(hit.end_s) : "not reached"),
        h("td", { class: "num" }, hit ? fmtDuration(hit.wall_s) : "–"),
        h("td", { class: "num" }, hit ? hit.rounds : "–"),
        h("td", { class: "num" }, fmtNum(r.best_accuracy, 3)));
    });
    tableEl.replaceChildren(h("h2", {}, `Time to ${goal} accuracy`), h("table", { id: "tta" },
      h("tr", {}, h("th", {}, "run"), h("th", {}, "selector"), h("th", { class: "num" }, "time"),
        h("th", { class: "num" }, "wall time"), h("th", { class: "num" }, "rounds"),
        h("th", { class: "num" }, "best accuracy")), rows));
  }
  xSel.onchange = draw;
  tInput.onchange = draw;
  draw();
}

function tta(rounds, goal) {
  let wall = 0;
  for (const r of rounds) {
    wall += r.wall_s || 0;
    if (r.accuracy !== null && r.accuracy >= goal) return { end_s: r.end_s, wall_s: wall, rounds: r.round_idx + 1 };
  }
  return null;
}

function xValues(rounds, mode) {
  let wall = 0;
  return rounds.map((r) => {
    wall += r.wall_s || 0;
    return mode === "wall" ? wall : mode === "round" ? r.round_idx : r.end_s;
  });
}

function xLabel(mode) {
  return mode === "wall" ? "wall seconds" : mode === "round" ? "round" : "seconds";
}

// Several runs on one x axis: the union of their x values, each run null where it has no point.
function unionSeries(runs, mode, field) {
  const perRun = runs.map((r) => {
    const xs = xValues(r.rounds, mode);
    const map = new Map();
    r.rounds.forEach((row, i) => { if (row[field] !== null && row[field] !== undefined) map.set(xs[i], row[field]); });
    return map;
  });
  const all = [...new Set(perRun.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
  return [all, ...perRun.map((m) => all.map((x) => (m.has(x) ? m.get(x) : null)))];
}

// ------------------------------------------------------------------ run page
const VIEWS = [
  ["overview", "Overview"], ["timeline", "Timeline"], ["fleet", "Fleet"], ["selector", "Selector"],
  ["deployment", "Deployment"], ["silo", "Silo"], ["fidelity", "Fidelity"],
];

function runPage(id, params) {
  crumbs.replaceChildren(h("a", { href: "#/" }, "runs"), h("span", {}, "›"), h("span", {}, id));
  const head = h("div", { class: "card", id: "run-head" }, "loading…");
  const tabs = h("div", { class: "tabs" });
  const body = h("div", { id: "view" });
  main.append(h("h1", {}, id), head, tabs, body);
  const state = { id, params, run: null, source: null, closed: false, page: null };

  async function open() {
    const run = await api("runs/" + encodeURIComponent(id) + "/data");
    if (state.closed) return;
    state.run = run;
    drawHead(head, run);
    const own = { silo: "silo", fidelity: "fidelity" }[run.runtime];
    const shown = params.get("view") || own || "overview";
    tabs.replaceChildren(...VIEWS.filter(([v]) => viewAvailable(v, run)).map(([v, label]) =>
      h("a", { href: runHref(id, { view: v }), class: v === shown ? "active" : "", "data-view": v }, label)));
    state.page = (RUN_VIEWS[shown] || RUN_VIEWS.overview)(body, run, params);
    document.body.dataset.ready = shown;
    listen();
  }

  function listen() {
    const run = state.run;
    const q = new URLSearchParams({ rounds: run.rounds.length, timelines: run.timelines.length,
      server_status: run.server_status.length, silo: run.silo.length, generation: run.generation });
    const source = new EventSource("api/runs/" + encodeURIComponent(id) + "/events?" + q);
    state.source = source;
    source.onopen = () => liveDot.classList.add("on");
    source.onerror = () => liveDot.classList.remove("on");
    source.addEventListener("rounds", (e) => { run.rounds.push(...JSON.parse(e.data)); changed("rounds"); });
    source.addEventListener("timelines", (e) => { run.timelines.push(...JSON.parse(e.data)); changed("timelines"); });
    source.addEventListener("server_status", (e) => { run.server_status.push(...JSON.parse(e.data)); changed("server_status"); });
    source.addEventListener("silo", (e) => { run.silo.push(...JSON.parse(e.data)); changed("silo"); });
    source.addEventListener("summary", (e) => { Object.assign(run, JSON.parse(e.data)); changed("summary"); });
    source.addEventListener("reset", () => { close(); route(); });
  }

  // Redraw at most every REDRAW_MS however fast rounds arrive (a 2,000-round run
  // appends dozens per second): the page stays light on the machine that runs it.
  const pending = new Set();
  let timer = null;
  function changed(kind) {
    pending.add(kind);
    if (timer === null) timer = setTimeout(flush, REDRAW_MS);
  }
  function flush() {
    timer = null;
    if (state.closed) return;
    drawHead(head, state.run);
    for (const kind of pending) if (state.page && state.page.update) state.page.update(kind);
    pending.clear();
  }

  function close() {
    state.closed = true;
    if (state.source) state.source.close();
    liveDot.classList.remove("on");
    if (state.page && state.page.close) state.page.close();
  }

  open().catch((e) => head.replaceChildren(h("p", { class: "error", id: "run-error" }, e.message)));
  return { close };
}

function viewAvailable(view, run) {
  const runtime = run.runtime || "";
  if (runtime === "silo") return view === "silo";
  if (runtime === "fidelity") return view === "fidelity";
  if (view === "overview" || view === "timeline") return true;
  if (view === "fleet") return run.timelines.length > 0;
  if (view === "selector") return run.timelines.some((t) => t.selector);
  if (view === "deployment") return runtime === "deploy" || runtime === "server" || run.server_status.length > 0;
  if (view === "silo") return run.silo.length > 0;
  if (view === "fidelity") return Boolean(run.fidelity);
  return false;
}

function drawHead(el, run) {
  const last = run.rounds[run.rounds.length - 1];
  const stat = (label, value) => h("div", { class: "stat" }, h("b", {}, value), h("span", {}, label));
  const total = run.rounds_total ? " / " + run.rounds_total : "";
  el.replaceChildren(h("div", { class: "stats" },
    stat("status", badge(run.status)),
    stat("runtime", run.runtime || "–"),
    stat("rounds", h("span", { id: "rounds-done" }, String(run.rounds.length)), total),
    stat("accuracy", fmtNum(run.final_accuracy, 4)),
    stat(run.clock === "wall" ? "time" : "virtual time", fmtDuration(last ? last.end_s : null)),
    stat("selector", run.selector || "–"), stat("strategy", run.strategy || "–"),
    stat("dataset", run.dataset || "–")));
}

const RUN_VIEWS = {};

// Overview: accuracy, loss, round durations, bytes, clients per round; live.
RUN_VIEWS.overview = function (el, run) {
  const xSel = h("select", { id: "x-mode" }, h("option", { value: "virtual" }, run.clock === "wall" ? "time" : "virtual time"),
    h("option", { value: "wall" }, "wall time (host)"), h("option", { value: "round" }, "round"));
  const boxes = {};
  for (const name of ["accuracy", "loss", "durations", "bytes", "clients"]) boxes[name] = h("div", { class: "card", id: "chart-" + name });
  el.append(h("div", { class: "controls" }, "x axis ", xSel),
    h("div", { class: "grid" }, ...Object.values(boxes)));
  let charts = null;

  function datasets() {
    const rounds = run.rounds;
    const mode = xSel.value;
    const xs = xValues(rounds, mode);
    const evaluated = rounds.map((r, i) => [xs[i], r.accuracy, r.test_loss]).filter((p) => p[1] !== null && p[1] !== undefined);
    const idx = rounds.map((r) => r.round_idx);
    return {
      accuracy: [evaluated.map((p) => p[0]), evaluated.map((p) => p[1])],
      loss: [xs, rounds.map((r) => r.train_loss ?? null), rounds.map((r) => r.test_loss ?? null)],
      durations: [idx, rounds.map((r) => r.duration_s ?? r.end_s - r.start_s), rounds.map((r) => r.wall_s)],
      bytes: [idx, rounds.map((r) => r.bytes_down / 1e6), rounds.map((r) => r.bytes_up / 1e6)],
      clients: [idx, rounds.map((r) => r.selected), rounds.map((r) => r.participants),
        rounds.map((r) => r.stragglers), rounds.map((r) => r.dropouts), rounds.map((r) => r.rejected)],
    };
  }

  function build() {
    const d = datasets();
    const xl = xLabel(xSel.value);
    charts = {
      accuracy: makeChart(boxes.accuracy, { name: "accuracy", title: "test accuracy", xLabel: xl,
        series: [{ label: "accuracy", points: true }] }, d.accuracy),
      loss: makeChart(boxes.loss, { name: "loss", title: "loss", xLabel: xl,
        series: [{ label: "train loss" }, { label: "test loss", points: true, color: PALETTE[2] }] }, d.loss),
      durations: makeChart(boxes.durations, { name: "durations", title: "round duration", xLabel: "round", yLabel: "s",
        series: [{ label: run.clock === "wall" ? "duration (s)" : "virtual (s)" },
          { label: "host wall (s)", scale: "y2", color: PALETTE[1] }], y2Label: "wall s" }, d.durations),
      bytes: makeChart(boxes.bytes, { name: "bytes", title: "bytes per round", xLabel: "round", yLabel: "MB",
        series: [{ label: "down (MB)" }, { label: "up (MB)", color: PALETTE[4] }] }, d.bytes),
      clients: makeChart(boxes.clients, { name: "clients", title: "clients per round", xLabel: "round",
        series: [{ label: "selected", color: "#999" }, { label: "participants", color: PALETTE[4] },
          { label: "stragglers", color: "#b07aa1" }, { label: "dropouts", color: "#e15759" },
          { label: "rejected", color: "#9c755f" }] }, d.clients),
    };
  }

  build();
  xSel.onchange = build;
  return {
    update(kind) {
      if (kind !== "rounds") return;
      const d = datasets();
      for (const [name, chart] of Object.entries(charts)) chart.setData(d[name]);
    },
  };
};

Object.assign(RUN_VIEWS, EXTRA_VIEWS);
window.addEventListener("hashchange", route);
route();
