// The supervisor wallboard: every queue and agent live (one row each, updated in place: an
// event changes the cells it concerns, never the whole table), today's 15-minute chart,
// tickets near their deadline, supervisor actions; the report and the staffing view.
import {
  api, download, duration, el, liveFeed, notify, percent, requireSession,
  serverClock, setText, shortcuts, signOut, when,
} from "./common.js";

const me = requireSession(["supervisor", "admin"]);
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

const queues = new Map(); // name -> {data, cells}
const agents = new Map(); // name -> {data, row, cells}
let queueNames = [];
// Rows on screen: the per-second timers touch only those (a thousand agents' timers
// rewritten every second kept the page's main thread busy laying the table out).
const onScreen = new Set();
const sight = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const agent = agents.get(entry.target.dataset.agent);
    if (!agent) continue;
    if (entry.isIntersecting) {
      onScreen.add(agent);
      tickAgent(agent, serverClock.now());
    } else {
      onScreen.delete(agent);
    }
  }
});

// -- queues -----------------------------------------------------------------------------

function queueRow(name) {
  let entry = queues.get(name);
  if (entry) return entry;
  const cells = {};
  const keys = ["waiting", "longest", "slToday", "sl30", "target", "asa", "aht", "abandoned",
    "occupancy", "loggedIn", "available", "busy", "paused"];
  const row = el("tr", { dataset: { queue: name } }, el("th", { scope: "row", text: name }),
    ...keys.map((key) => (cells[key] = el("td", { class: key }))));
  $("queues").tBodies[0].append(row);
  entry = { data: null, row, cells };
  queues.set(name, entry);
  return entry;
}

function showQueue(data) {
  const entry = queueRow(data.queue);
  entry.data = data;
  const c = entry.cells;
  setText(c.waiting, data.waiting);
  setText(c.slToday, percent(data.today.service_level));
  setText(c.sl30, percent(data.last_30_min.service_level));
  setText(c.target, `${percent(data.service_level_target)} in ${data.service_threshold} s`);
  mark(c.slToday, data.today.service_level, data.service_level_target);
  mark(c.sl30, data.last_30_min.service_level, data.service_level_target);
  setText(c.asa, duration(data.today.asa));
  setText(c.aht, duration(data.today.aht));
  setText(c.abandoned, `${data.today.abandoned} (${percent(data.today.abandonment_rate)})`);
  setText(c.occupancy, percent(data.today.occupancy));
  setText(c.loggedIn, data.agents.logged_in);
  setText(c.available, data.agents.available);
  setText(c.busy, data.agents.busy);
  setText(c.paused, data.agents.paused);
  tickQueue(entry);
}

function mark(cell, value, target) {
  const below = value !== null && value !== undefined && value < target;
  cell.classList.toggle("below", below);
}

function tickQueue(entry) {
  const data = entry.data;
  if (!data) return;
  const wait = data.oldest_since ? serverClock.now() - data.oldest_since : 0;
  const cell = entry.cells.longest;
  setText(cell, data.oldest_since ? duration(wait) : "–");
  const level = wait >= data.alert.red ? "red" : wait >= data.alert.amber ? "amber" : "ok";
  if (cell.dataset.level !== level) {
    cell.dataset.level = level;
    cell.className = `longest alert-${level}`;
  }
}

// -- agents -----------------------------------------------------------------------------

function agentRow(name) {
  let entry = agents.get(name);
  if (entry) return entry;
  const cell = (kind) => el("span", { role: "cell", class: kind });
  const cells = {
    state: cell("state"), time: cell("time"), reason: cell("reason"), queues: cell("queues"), call: cell("call"),
  };
  const actions = el("span", { role: "cell", class: "actions" },
    el("button", { class: "pause", onclick: () => act("pause", name) }, "Pause"),
    el("button", { class: "logout", onclick: () => act("logout", name) }, "Log out"),
    el("button", { class: "move", onclick: () => act("queues", name) }, "Queues"));
  const row = el("div", { class: "agent-row", role: "row", dataset: { agent: name } },
    el("span", { role: "rowheader", class: "name", text: name }),
    cells.state, cells.time, cells.reason, cells.queues, cells.call, actions);
  $("agent-rows").append(row);
  entry = { data: null, row, cells };
  agents.set(name, entry);
  sight.observe(row);
  return entry;
}

function showAgent(data) {
  const entry = agentRow(data.agent);
  entry.data = data;
  const c = entry.cells;
  const state = c.state;
  if (state.dataset.state !== data.state) {
    state.dataset.state = data.state;
    state.className = `state state-${data.state}`;
    setText(state, data.state.replace("_", " "));
  }
  setText(c.reason, data.reason || "");
  setText(c.queues, data.queues.join(", "));
  const call = data.call;
  setText(c.call, call ? `${call.caller_name || call.caller_number || "withheld"} (${call.queue})` : "");
  tickAgent(entry, serverClock.now());
  filterRow(entry);
}

function filterRow(entry) {
  const needle = $("agent-filter").value.trim().toLowerCase();
  const d = entry.data;
  const text = `${d.agent} ${d.state} ${d.reason || ""} ${d.queues.join(" ")}`.toLowerCase();
  entry.row.hidden = Boolean(needle) && !text.includes(needle);
}

function tickAgent(entry, now) {
  const since = entry.data && entry.data.since;
  setText(entry.cells.time, since ? duration(now - since) : "–");
}

function tick() {
  for (const entry of queues.values()) tickQueue(entry);
  const now = serverClock.now();
  for (const entry of onScreen) tickAgent(entry, now);
}

// -- the live feed ----------------------------------------------------------------------

function onFeed(message) {
  if (message.type === "snapshot") {
    serverClock.sync(message.at);
    for (const q of message.queues) showQueue(q);
    for (const a of message.agents) showAgent(a);
    const names = message.queues.map((q) => q.queue).sort();
    if (names.join() !== queueNames.join()) {
      queueNames = names;
      fillQueueChoices();
    }
  } else if (message.type === "agent") {
    showAgent(message.agent);
  } else if (message.type === "queues") {
    serverClock.sync(message.at);
    for (const q of message.queues) showQueue(q);
  }
  chartFollows();
}

// The chart is read from the persisted history: read again (once things settle) when a
// call's outcome changed today's counts, else every minute.
let counted = null;
let chartTimer = null;
function chartFollows() {
  let total = 0;
  for (const entry of queues.values()) if (entry.data) total += entry.data.today.offered;
  if (counted !== null && total !== counted && !chartTimer) {
    chartTimer = setTimeout(() => {
      chartTimer = null;
      refreshChart();
    }, 2000);
  }
  counted = total;
}

function fillQueueChoices() {
  const options = (all) => [...(all ? [el("option", { value: "", text: "all queues" })] : []),
    ...queueNames.map((q) => el("option", { value: q, text: q }))];
  const chart = $("chart-queue").value;
  $("chart-queue").replaceChildren(...options(true));
  $("chart-queue").value = chart;
  $("staffing-queue").replaceChildren(...options(false));
}

// -- supervisor actions -----------------------------------------------------------------

async function act(kind, agent) {
  const dialog = $("act");
  const titles = { pause: `Pause agent ${agent}`, logout: `Log agent ${agent} out`, queues: `Queues of agent ${agent}` };
  setText($("act-title"), titles[kind]);
  $("act-reason-label").hidden = kind !== "pause";
  const box = $("act-queues");
  box.hidden = kind !== "queues";
  if (kind === "queues") {
    // The agent's penalties are read first: applying must not reset them.
    let current;
    try {
      current = (await api("GET", `/api/v1/agents/${encodeURIComponent(agent)}`)).queues;
    } catch (error) {
      notify(`${titles[kind]}: ${error.message}`, "error");
      return;
    }
    box.replaceChildren(el("legend", { text: "Queues (penalty)" }), ...queueNames.map((q) =>
      el("label", { class: "member" },
        el("input", { type: "checkbox", name: "queue", value: q, checked: q in current }), ` ${q} `,
        el("input", { type: "number", name: `penalty-${q}`, min: "0", max: "100", value: String(current[q] ?? 0), class: "penalty", "aria-label": `penalty in ${q}` }))));
  }
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      const path = `/api/v1/agents/${encodeURIComponent(agent)}`;
      if (kind === "pause") await api("POST", `${path}/pause`, { reason: $("act-reason").value.trim() || "Supervisor" });
      else if (kind === "logout") await api("POST", `${path}/logout`);
      else {
        const chosen = {};
        for (const box of document.querySelectorAll("#act-queues input[name=queue]:checked")) {
          chosen[box.value] = Number(document.querySelector(`#act-queues input[name="penalty-${CSS.escape(box.value)}"]`).value || 0);
        }
        await api("PUT", `${path}/queues`, { queues: chosen });
      }
      notify(`${titles[kind]}: done`, "ok");
    } catch (error) {
      notify(`${titles[kind]}: ${error.message}`, "error");
    }
  };
  dialog.showModal();
}

// -- today's chart and deadlines --------------------------------------------------------

function today() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}-${String(now.getDate()).padStart(2, "0")}`;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** Bars of offered/answered/abandoned per interval with the service level as a line;
 * times are shown in the ACD's time zone (the report's). */
function intervalChart(target, intervals, timeZone) {
  const clock = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone });
  const width = 960;
  const height = 220;
  const pad = 28;
  const slots = intervals.length || 1;
  const most = Math.max(1, ...intervals.map((i) => i.offered));
  const slot = (width - 2 * pad) / slots;
  const bar = Math.max(1, slot / 4);
  const y = (n) => height - pad - (n / most) * (height - 2 * pad);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "calls per 15 minutes" });
  chart.append(svg("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis" }));
  chart.append(svg("text", { x: 2, y: pad, class: "tick" }, most));
  const line = [];
  intervals.forEach((i, index) => {
    const x = pad + index * slot;
    const label = clock.format(new Date(i.start * 1000));
    const group = svg("g", { class: "interval" }, svg("title", {}, `${label}: ${i.offered} offered, ${i.answered} answered, ${i.abandoned} abandoned, SL ${percent(i.service_level)}`));
    [["offered", i.offered], ["answered", i.answered], ["abandoned", i.abandoned]].forEach(([kind, n], k) => {
      if (n) group.append(svg("rect", { x: x + k * bar, y: y(n), width: bar, height: height - pad - y(n), class: kind }));
    });
    if (index % 4 === 0) group.append(svg("text", { x, y: height - 8, class: "tick" }, label));
    chart.append(group);
    if (i.service_level !== null && i.service_level !== undefined) {
      line.push(`${x + 1.5 * bar},${height - pad - i.service_level * (height - 2 * pad)}`);
    }
  });
  if (line.length) chart.append(svg("polyline", { points: line.join(" "), class: "sl" }));
  if (!intervals.some((i) => i.offered)) chart.append(svg("text", { x: width / 2 - 60, y: height / 2, class: "tick" }, "no call yet"));
  target.replaceChildren(chart);
}

/** Every 15 minutes of the report's range (up to now) for one queue, or summed over all:
 * the report lists only intervals where something happened. */
function intervalsOf(report, queue) {
  const by = new Map();
  const end = Math.min(report.end, serverClock.now());
  for (let start = report.start; start < end; start += 900) {
    by.set(start, { start, offered: 0, answered: 0, abandoned: 0, in_time: 0, counted: 0 });
  }
  for (const i of report.intervals) {
    if (queue && i.queue !== queue) continue;
    const sum = by.get(i.start) || { start: i.start, offered: 0, answered: 0, abandoned: 0, in_time: 0, counted: 0 };
    sum.offered += i.offered;
    sum.answered += i.answered;
    sum.abandoned += i.abandoned;
    if (i.service_level !== null && i.service_level !== undefined) {
      const weight = i.answered + i.abandoned || 1;
      sum.in_time += i.service_level * weight;
      sum.counted += weight;
    }
    by.set(i.start, sum);
  }
  return [...by.values()].sort((a, b) => a.start - b.start)
    .map((s) => ({ ...s, service_level: s.counted ? s.in_time / s.counted : null }));
}

async function refreshChart() {
  try {
    const day = today();
    const report = await api("GET", `/api/v1/reports/acd?from=${day}&to=${day}`);
    intervalChart($("interval-chart"), intervalsOf(report, $("chart-queue").value), report.timezone);
  } catch (error) {
    notify(`today's chart: ${error.message}`, "error");
  }
}

async function refreshDeadlines() {
  try {
    const [warning, breached] = await Promise.all([
      api("GET", "/api/v1/tickets?sla_state=warning&done=false&limit=100"),
      api("GET", "/api/v1/tickets?breached=true&done=false&limit=100"),
    ]);
    const rows = [...breached.tickets, ...warning.tickets];
    $("deadlines").tBodies[0].replaceChildren(...rows.map((t) =>
      el("tr", { class: `sla-${t.sla_state}`, dataset: { ticket: String(t.id) } },
        el("td", { text: t.number }), el("td", { text: t.subject }), el("td", { text: t.priority }),
        el("td", { text: t.queue || "–" }), el("td", { text: t.assignee_agent || t.assignee_group || "–" }),
        el("td", { text: when(t.first_response_at ? t.resolution_due : t.first_response_due) }),
        el("td", { text: t.sla_state }))));
    if (!rows.length) $("deadlines").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "none" })));
  } catch (error) {
    notify(`tickets: ${error.message}`, "error");
  }
}

// -- report and staffing ----------------------------------------------------------------

const RATIO = /^(service_level|abandonment_rate|occupancy|probability_of_waiting)$/;
const SECONDS = /^(asa|aht|talk_time|wrap_up_time|paused_time|logged_in_time)$/;

function cell(key, value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number" && RATIO.test(key)) return percent(value);
  if (typeof value === "number" && SECONDS.test(key)) return duration(value);
  if (typeof value === "number" && key === "start") return when(value);
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k} ${v}`).join(", ");
  return String(value);
}

/** A table of `rows` (objects), columns in the first row's order. */
function table(target, rows) {
  if (!rows || !rows.length) {
    target.replaceChildren(el("tbody", {}, el("tr", {}, el("td", { class: "empty", text: "nothing in this period" }))));
    return;
  }
  const keys = Object.keys(rows[0]);
  target.replaceChildren(
    el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { text: k.replace(/_/g, " ") })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...keys.map((k) => el("td", { text: cell(k, r[k]) }))))));
}

async function showReport(event) {
  if (event) event.preventDefault();
  try {
    const report = await api("GET", `/api/v1/reports/acd?from=${$("report-from").value}&to=${$("report-to").value}`);
    table($("report-queues"), report.queues);
    table($("report-agents"), report.agents);
    table($("report-tiers"), report.tiers);
    intervalChart($("report-chart"), intervalsOf(report, ""), report.timezone);
    barChart($("report-queues-chart"), report.queues, "queue");
    barChart($("report-tiers-chart"), report.tiers, "tier");
    barChart($("report-agents-chart"), report.agents, "agent");
  } catch (error) {
    notify(`report: ${error.message}`, "error");
  }
}

/** Horizontal bars per row: answered and abandoned (agents: answered and completed). */
function barChart(target, rows, key) {
  const series = key === "agent" ? ["answered", "completed"] : ["answered", "abandoned"];
  const most = Math.max(1, ...rows.flatMap((r) => series.map((s) => r[s] || 0)));
  const line = 18;
  const width = 960;
  const left = 110;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${Math.max(1, rows.length) * line * 2 + 4}`, role: "img", "aria-label": `calls per ${key}` });
  rows.forEach((r, index) => {
    const y = index * line * 2 + 2;
    chart.append(svg("text", { x: 0, y: y + line, class: "tick" }, String(r[key])));
    series.forEach((name, k) => {
      const w = ((r[name] || 0) / most) * (width - left - 60);
      chart.append(svg("rect", { x: left, y: y + k * (line - 2), width: Math.max(w, 0.5), height: line - 4, class: name === "completed" ? "offered" : name },
        svg("title", {}, `${r[key]}: ${r[name] || 0} ${name}`)));
      chart.append(svg("text", { x: left + w + 4, y: y + k * (line - 2) + line - 6, class: "tick" }, String(r[name] || 0)));
    });
  });
  target.replaceChildren(chart);
}

async function showStaffing(event) {
  if (event) event.preventDefault();
  try {
    const queue = encodeURIComponent($("staffing-queue").value);
    const answer = await api("GET", `/api/v1/staffing?queue=${queue}&date=${$("staffing-date").value}`);
    const rows = answer.intervals || [];
    // The chart shows the whole day; the table the intervals with calls or agents.
    table($("staffing"), rows.filter((r) => r.offered || r.agents_staffed));
    staffingChart($("staffing-chart"), rows);
  } catch (error) {
    notify(`staffing: ${error.message}`, "error");
  }
}

function staffingChart(target, rows) {
  const width = 960;
  const height = 200;
  const pad = 28;
  const most = Math.max(1, ...rows.map((r) => Math.max(r.agents_needed ?? 0, r.agents_staffed)));
  const slot = (width - 2 * pad) / (rows.length || 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "agents needed per 15 minutes" });
  chart.append(svg("text", { x: 2, y: pad, class: "tick" }, most));
  const staffed = [];
  rows.forEach((r, index) => {
    const h = ((r.agents_needed ?? 0) / most) * (height - 2 * pad);
    chart.append(svg("rect", { x: pad + index * slot, y: height - pad - h, width: Math.max(1, slot - 2), height: h, class: "needed" },
      svg("title", {}, `${when(r.start)}: ${r.agents_needed ?? "–"} agents needed, ${r.agents_staffed} staffed`)));
    staffed.push(`${pad + (index + 0.5) * slot},${height - pad - (Math.min(r.agents_staffed, most) / most) * (height - 2 * pad)}`);
  });
  if (staffed.length) chart.append(svg("polyline", { points: staffed.join(" "), class: "staffed" }));
  target.replaceChildren(chart);
}

// -- start ------------------------------------------------------------------------------

function showTab(name) {
  for (const page of document.querySelectorAll(".tab-page")) page.hidden = page.id !== `tab-${name}`;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
}

if (me) {
  setText($("who"), `${me.account.username} (${me.account.role})`);
  $("sign-out").addEventListener("click", signOut);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  shortcuts({ 1: () => showTab("live"), 2: () => showTab("report"), 3: () => showTab("staffing") });
  $("agent-filter").addEventListener("input", () => agents.forEach(filterRow));
  $("chart-queue").addEventListener("change", refreshChart);
  const day = today();
  $("report-from").value = day;
  $("report-to").value = day;
  $("staffing-date").value = day;
  $("report-form").addEventListener("submit", showReport);
  $("staffing-form").addEventListener("submit", showStaffing);
  for (const button of document.querySelectorAll(".csv")) {
    button.addEventListener("click", () => {
      const from = $("report-from").value;
      const to = $("report-to").value;
      download(`/api/v1/reports/acd?from=${from}&to=${to}&format=csv&by=${button.dataset.by}`,
        `acd-${button.dataset.by}-${from}-${to}.csv`).catch((error) => notify(`CSV: ${error.message}`, "error"));
    });
  }
  liveFeed("/api/v1/wallboard/feed", onFeed, (state) => {
    const line = $("connection");
    line.className = `connection ${state}`;
    setText(line, state === "live" ? "live" : state === "refused" ? "refused" : "reconnecting…");
  });
  refreshChart();
  refreshDeadlines();
  setInterval(tick, 1000);
  setInterval(refreshChart, 60000);
  setInterval(refreshDeadlines, 30000);
}
