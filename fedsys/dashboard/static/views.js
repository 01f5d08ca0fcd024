// The run page's detail views: per-round client timeline, fleet availability, the
// selector's state, a deployment's server, silo jobs and fidelity. Each view is
// (element, run, params) -> {update(kind), close()}; app.js registers them.
"use strict";

const EXTRA_VIEWS = {};
const OUTCOMES = { c: "completed", r: "rejected", d: "dropped", s: "straggled" };

// ------------------------------------------------------------------ timeline
EXTRA_VIEWS.timeline = function (el, run, params) {
  const lastRound = () => (run.rounds.length ? run.rounds[run.rounds.length - 1].round_idx : 0);
  const asked = params.get("round");
  const follow = h("input", { type: "checkbox", id: "tl-follow", checked: asked === null });
  const input = h("input", { type: "number", id: "tl-round", min: "0", value: asked ?? lastRound() });
  const info = h("div", { class: "muted", id: "tl-info" });
  const chart = h("div", { class: "tl", id: "timeline" });
  const legend = h("div", { class: "legend" },
    ...[["download", "var(--down)"], ["compute", "var(--compute)"], ["upload", "var(--up)"]].map(([n, c]) =>
      h("span", {}, h("i", { style: "background:" + c }), n)),
    h("span", {}, h("b", { style: "color:var(--drop)" }, "✕"), " dropped out"),
    h("span", { class: "muted" }, "faded: straggler (discarded)"),
    h("span", {}, "┆ round closed"));
  const step = (d) => () => { follow.checked = false; input.value = Math.max(0, +input.value + d); load(); };
  el.append(h("div", { class: "card" },
    h("div", { class: "controls" }, "round ", input,
      h("button", { onclick: step(-1) }, "◀"), h("button", { onclick: step(1) }, "▶"),
      h("label", {}, follow, " follow the latest round")), legend, info, chart));
  input.onchange = () => { follow.checked = false; load(); };
  let shown = null;

  async function load() {
    const r = +input.value;
    let entry;
    try {
      entry = await api("runs/" + encodeURIComponent(run.id) + "/timeline/" + r);
    } catch (e) {
      info.textContent = e.message;
      chart.replaceChildren();
      return;
    }
    shown = r;
    drawTimeline(chart, info, entry);
    document.body.dataset.timeline = String(r);
  }

  if (run.rounds.length) load();
  else info.textContent = "waiting for the first round…";
  return {
    update(kind) {
      if (kind === "rounds" && follow.checked && lastRound() !== shown) {
        input.value = lastRound();
        load();
      }
    },
  };
};

function drawTimeline(chart, info, entry) {
  const rows = entry.clients || [];
  // A deployment recorded before format 1 had server-measured phases: durations only.
  const measured = rows.some((c) => c[2] === null);
  // A deployment's rows say when the server assigned the task (an 8th value): a thin
  // line from there to the download's start (the task on its way, a download slot).
  const assignedAt = (c) => (typeof c[7] === "number" ? c[7] : null);
  // An async aggregation's clients may have launched before its window opened: the
  // axis starts at the earliest launch (negative seconds) so every bar is whole.
  const origin = Math.min(0, ...rows.map((c) => Math.min(c[1] || 0, assignedAt(c) ?? 0)));
  let end = (entry.end_s ?? 0) - (entry.start_s ?? 0);
  for (const c of rows) end = Math.max(end, (c[1] || 0) + (c[2] || 0) + (c[3] || 0) + (c[4] || 0), c[6] || 0);
  const span = end - origin || 1;
  const pct = (t) => (100 * (t - origin)) / span + "%";
  const counts = {};
  const closer = rows.find((c) => c[0] === entry.closed_by);
  const closeAt = closer ? closer[6] : (entry.end_s ?? span) - (entry.start_s ?? 0);
  const axis = h("div", { class: "tl-axis" });
  for (let i = 0; i <= 5; i++) axis.append(h("span", { style: "left:" + i * 20 + "%" }, fmtDuration(origin + (span * i) / 5)));
  const body = [axis];
  for (const c of rows) {
    const [id, launch, down, compute, up, code, end] = c;
    const outcome = OUTCOMES[code] || code;
    counts[outcome] = (counts[outcome] || 0) + 1;
    const track = h("div", { class: "tl-track" });
    const assigned = assignedAt(c);
    if (assigned !== null && !measured && launch > assigned) {
      track.append(h("div", { class: "wait", "data-assigned": assigned, title: `task assigned at ${fmtDuration(assigned)}`,
        style: `left:${pct(assigned)};width:${(100 * (launch - assigned)) / span}%` }));
    }
    if (measured) {
      if (c[6] !== null) track.append(h("div", { class: "phase measured", "data-phase": "measured", style: `left:0;width:${pct(c[6])}` }));
    } else {
      let t = launch;
      for (const [phase, length] of [["download", down], ["compute", compute], ["upload", up]]) {
        let width = length;
        if (outcome === "dropped") width = Math.max(0, Math.min(t + length, c[6]) - t);
        if (width > 0 || outcome !== "dropped") {
          track.append(h("div", { class: "phase " + phase, "data-phase": phase,
            title: `${phase} ${fmtDuration(length)}`, style: `left:${pct(t)};width:${(100 * width) / span}%` }));
        }
        t += length;
      }
    }
    if (outcome === "dropped") track.append(h("span", { class: "mark dropped", style: `left:${pct(end)}` }, "✕"));
    const label = id === entry.closed_by ? `★ ${id}` : String(id);
    body.push(h("div", { class: `tl-row ${outcome}${id === entry.closed_by ? " closer" : ""}`,
      "data-client": id, "data-outcome": outcome,
      title: `client ${id}: ${outcome}, ends ${fmtDuration(end)}` }, h("div", { class: "tl-label" }, label), track));
  }
  const wrap = h("div", { style: "position:relative" }, ...body);
  wrap.append(h("div", { class: "tl-close", style: `left:calc(70px + (100% - 70px) * ${(closeAt - origin) / span})` }));
  chart.replaceChildren(wrap);
  const parts = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
  const closed = entry.closed_by !== null && entry.closed_by !== undefined
    ? `closed by client ${entry.closed_by}'s arrival (★) at ${fmtDuration(closeAt)}` : `closed at ${fmtDuration(closeAt)}`;
  info.textContent = `round ${entry.round_idx}: ${rows.length} clients (${parts}); ` +
    (entry.available !== null && entry.available !== undefined ? `${entry.available} available; ` : "") + closed +
    (measured ? " — measured durations (this deployment recorded no phases)" : "") +
    (entry.clock === "server" ? " — measured on the server's clock (wall seconds); thin line: task assigned, download not begun" : "");
}

// ------------------------------------------------------------------ fleet
EXTRA_VIEWS.fleet = function (el, run) {
  const box = h("div", { class: "card", id: "chart-fleet" });
  el.append(box);
  const data = () => {
    const t = run.timelines;
    return [t.map((x) => x.start_s), t.map((x) => x.available),
      t.map((x) => Object.values(x.outcomes || {}).reduce((a, b) => a + b, 0)),
      t.map((x) => (x.outcomes || {}).c || 0)];
  };
  const total = run.config?.dataset?.num_clients;
  const chart = makeChart(box, { name: "fleet", title: `fleet availability (of ${total ?? "?"} clients)`,
    xLabel: "seconds (round start)", series: [{ label: "available" }, { label: "selected", color: "#999" },
      { label: "completed", color: PALETTE[4] }] }, data());
  return { update(kind) { if (kind === "timelines") chart.setData(data()); } };
};

// ------------------------------------------------------------------ selector
EXTRA_VIEWS.selector = function (el, run) {
  const boxes = ["explore", "pacer", "blacklist", "utility"].map((n) => h("div", { class: "card", id: "chart-sel-" + n }));
  el.append(h("div", { class: "grid" }, ...boxes));
  const rows = () => run.timelines.filter((t) => t.selector);
  const pick = (k) => rows().map((t) => t.selector[k] ?? null);
  const idx = () => rows().map((t) => t.round_idx);
  const charts = {
    explore: () => [idx(), pick("explored"), pick("exploited")],
    pacer: () => [idx(), pick("preferred_s"), pick("round_threshold")],
    blacklist: () => [idx(), pick("blacklist"), pick("known_clients")],
    utility: () => {
      const last = rows()[rows().length - 1];
      const hist = last?.selector?.utility_hist;
      if (!hist) return [[], []];
      return [hist.counts.map((_, i) => (hist.edges[i] + hist.edges[i + 1]) / 2), hist.counts];
    },
  };
  const made = {
    explore: makeChart(boxes[0], { name: "sel_explore", title: "clients explored vs exploited", xLabel: "round",
      series: [{ label: "explored", color: PALETTE[1] }, { label: "exploited", color: PALETTE[0] }] }, charts.explore()),
    pacer: makeChart(boxes[1], { name: "sel_pacer", title: "preferred round duration (pacer)", xLabel: "round", yLabel: "s",
      series: [{ label: "preferred (s)" }, { label: "percentile", scale: "y2", color: PALETTE[2] }], y2Label: "percentile" }, charts.pacer()),
    blacklist: makeChart(boxes[2], { name: "sel_blacklist", title: "blacklist and known clients", xLabel: "round",
      series: [{ label: "blacklisted", color: PALETTE[2] }, { label: "known", color: PALETTE[3] }] }, charts.blacklist()),
    utility: makeChart(boxes[3], { name: "sel_utility", title: "utility of explored clients (latest round)", xLabel: "utility",
      series: [{ label: "clients", bars: true }] }, charts.utility()),
  };
  return { update(kind) { if (kind === "timelines") for (const [k, c] of Object.entries(made)) c.setData(charts[k]()); } };
};

// ------------------------------------------------------------------ deployment
EXTRA_VIEWS.deployment = function (el, run) {
  const boxes = ["connected", "memory", "transfers"].map((n) => h("div", { class: "card", id: "chart-dep-" + n }));
  const refusals = h("div", { class: "card", id: "refusals" });
  const clients = h("div", { class: "card", id: "deploy-clients" });
  el.append(h("div", { class: "grid" }, ...boxes), h("div", { class: "grid" }, refusals, clients));
  const status = () => run.server_status;
  const t = () => status().map((s) => s.t_s);
  const made = {
    connected: makeChart(boxes[0], { name: "dep_connected", title: "connected clients", xLabel: "seconds",
      series: [{ label: "connected" }, { label: "training", color: PALETTE[1] }] },
    [t(), status().map((s) => s.connected), status().map((s) => s.busy)]),
    memory: makeChart(boxes[1], { name: "dep_memory", title: "server memory", xLabel: "seconds", yLabel: "MB",
      series: [{ label: "resident (MB)", color: PALETTE[3] }] }, [t(), status().map((s) => s.rss_mb)]),
    transfers: makeChart(boxes[2], { name: "dep_transfers", title: "transfers in flight", xLabel: "seconds",
      series: [{ label: "uploads", color: PALETTE[4] }, { label: "downloads", color: PALETTE[0] }] },
    [t(), status().map((s) => s.uploads), status().map((s) => s.downloads)]),
  };

  function tables() {
    const reasons = {};
    for (const r of run.rounds) for (const x of r.rejected_updates || []) reasons[x.reason] = (reasons[x.reason] || 0) + 1;
    const rows = Object.entries(reasons).sort((a, b) => b[1] - a[1]);
    refusals.replaceChildren(h("h2", {}, "refused updates by reason"), rows.length
      ? h("table", {}, h("tr", {}, h("th", {}, "reason"), h("th", { class: "num" }, "updates")),
        rows.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, v))))
      : h("p", { class: "muted" }, "none refused"));
    const recent = run.rounds.slice(-15).reverse();
    const table = h("table", {}, h("tr", {}, h("th", {}, "round"), h("th", {}, "client"), h("th", {}, "outcome"),
      h("th", { class: "num" }, "duration")));
    for (const r of recent) {
      for (const c of (Array.isArray(r.clients) ? r.clients : []).filter((c) => typeof c === "object")) {
        table.append(h("tr", { "data-round": r.round_idx, "data-client": c.client_id, "data-outcome": c.outcome, class: c.outcome },
          h("td", {}, r.round_idx), h("td", {}, c.client_id), h("td", {}, badge(c.outcome)),
          h("td", { class: "num" }, c.duration_s === null ? "–" : fmtDuration(c.duration_s))));
      }
    }
    clients.replaceChildren(h("h2", {}, "clients of the latest rounds"), table);
  }
  tables();
  return {
    update(kind) {
      if (kind === "server_status") {
        made.connected.setData([t(), status().map((s) => s.connected), status().map((s) => s.busy)]);
        made.memory.setData([t(), status().map((s) => s.rss_mb)]);
        made.transfers.setData([t(), status().map((s) => s.uploads), status().map((s) => s.downloads)]);
      }
      if (kind === "rounds") tables();
    },
  };
};

// ------------------------------------------------------------------ silo
// Tasks accepted per site over the job's time (cumulative), bytes per site, and
// each job's mode, binding and counters.
EXTRA_VIEWS.silo = function (el, run) {
  const jobSel = h("select", { id: "silo-job" });
  const jobs = h("div", { class: "card", id: "silo-jobs" });
  const tasksBox = h("div", { class: "card", id: "chart-silo-tasks" });
  const bytesBox = h("div", { class: "card", id: "chart-silo-bytes" });
  el.append(h("div", { class: "controls" }, "job ", jobSel), jobs, h("div", { class: "grid" }, tasksBox, bytesBox));
  let chosen = null;

  function names() { return [...new Set(run.silo.filter((r) => r.kind === "task" || r.kind === "job").map((r) => r.job))]; }

  function series(job, field) {
    const rows = run.silo.filter((r) => r.kind === "task" && r.job === job).sort((a, b) => a.t_s - b.t_s);
    const sites = [...new Set(rows.map((r) => r.site))].sort();
    const totals = Object.fromEntries(sites.map((s) => [s, 0]));
    const xs = [], ys = sites.map(() => []);
    for (const r of rows) {
      totals[r.site] += field === "bytes" ? r.bytes / 1e6 : 1;
      xs.push(r.t_s);
      sites.forEach((s, i) => ys[i].push(totals[s]));
    }
    return { sites, data: [xs, ...ys] };
  }

  function draw() {
    const all = names();
    if (!all.length) { jobs.replaceChildren(h("p", { class: "muted" }, "waiting for the first task…")); return; }
    if (chosen === null || !all.includes(chosen)) chosen = all[all.length - 1];
    jobSel.replaceChildren(...all.map((n) => h("option", { value: n, selected: n === chosen }, n)));
    const table = h("table", {}, h("tr", {}, ...["job", "binding", "output", "time", "tasks", "requests",
      "assign msgs", "pushes", "reruns"].map((c) => h("th", {}, c))));
    for (const name of all) {
      const done = run.silo.find((r) => r.kind === "job" && r.job === name);
      const tasks = run.silo.filter((r) => r.kind === "task" && r.job === name).length;
      const st = done?.stats || {};
      table.append(h("tr", { "data-job": name }, h("td", {}, name), h("td", {}, done?.binding ?? "running…"),
        h("td", {}, done?.output ?? "–"), h("td", { class: "num" }, done ? fmtDuration(done.duration_s) : "–"),
        h("td", { class: "num" }, tasks), h("td", { class: "num" }, st.requests ?? "–"),
        h("td", { class: "num" }, st.assign_messages ?? "–"), h("td", { class: "num" }, st.pushes ?? "–"),
        h("td", { class: "num" }, st.reruns ?? "–")));
    }
    jobs.replaceChildren(h("h2", {}, "jobs"), table);
    const tasks = series(chosen, "tasks");
    const bytes = series(chosen, "bytes");
    makeChart(tasksBox, { name: "silo_tasks", title: `tasks done per site (${chosen})`, xLabel: "seconds since the job started",
      series: tasks.sites.map((s) => ({ label: s })) }, tasks.data);
    makeChart(bytesBox, { name: "silo_bytes", title: `output MB received per site (${chosen})`, xLabel: "seconds",
      series: bytes.sites.map((s) => ({ label: s })) }, bytes.data);
  }
  jobSel.onchange = () => { chosen = jobSel.value; draw(); };
  draw();
  return { update(kind) { if (kind === "silo") draw(); } };
};

// ------------------------------------------------------------------ fidelity
// fedsys fidelity: each round's simulated and measured duration overlaid, accuracy
// of both sides, and the totals.
EXTRA_VIEWS.fidelity = function (el, run) {
  const report = run.fidelity;
  if (!report) {
    el.append(h("div", { class: "card" }, h("p", { class: "muted" }, "No fidelity.json in this folder.")));
    return {};
  }
  const rounds = report.rounds || [];
  const idx = rounds.map((r) => r.round_idx);
  const durBox = h("div", { class: "card", id: "chart-fid-durations" });
  const errBox = h("div", { class: "card", id: "chart-fid-error" });
  const accBox = h("div", { class: "card", id: "chart-fid-accuracy" });
  const totals = h("div", { class: "card", id: "fid-totals" });
  el.append(h("div", { class: "grid" }, durBox, errBox, accBox, totals));
  makeChart(durBox, { name: "fid_durations", title: "round duration: simulated vs measured", xLabel: "round",
    yLabel: "s", series: [{ label: "simulated (s)", points: true }, { label: "measured (s)", points: true, color: PALETTE[1] }] },
  [idx, rounds.map((r) => r.sim_s), rounds.map((r) => r.real_s)]);
  makeChart(errBox, { name: "fid_error", title: "round-time error (measured − simulated) / simulated", xLabel: "round",
    series: [{ label: "error", bars: true, color: PALETTE[2] }] }, [idx, rounds.map((r) => r.rel_error)]);
  makeChart(accBox, { name: "fid_accuracy", title: "accuracy", xLabel: "round",
    series: [{ label: "simulated", points: true }, { label: "measured", points: true, color: PALETTE[1] }] },
  [idx, rounds.map((r) => r.sim_accuracy), rounds.map((r) => r.real_accuracy)]);
  totals.append(h("h2", {}, "totals"), h("table", {}, Object.entries(report.totals || {})
    .filter(([, v]) => typeof v !== "object").map(([k, v]) =>
      h("tr", {}, h("td", {}, k), h("td", { class: "num" }, typeof v === "number" ? fmtNum(v) : String(v))))));
  return {};
};
