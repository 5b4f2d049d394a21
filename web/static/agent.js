// The agent desktop: state and its timer, the screen pop while the phone rings, wrap-up
// (disposition, a ticket from the call or a link to one), the tickets of the agent's queues.
import {
  ApiError, api, duration, el, epoch, liveFeed, nonce, notify, requireSession, serverClock, setText,
  shortcuts, signOut, when,
} from "./common.js";

const me = requireSession(["agent"]);
const $ = (id) => document.getElementById(id);

let status = null; // GET /api/v1/agent
let pop = null; // the pop on screen (the feed's last frame for the call)
let wrap = null; // {call_id, caller, customer, since}: the call being wrapped up
let choosing = false; // the agent asked to pick another of several candidates
let dismissed = null; // the call whose wrap-up panel the agent closed

// -- state ------------------------------------------------------------------------------

async function refreshStatus() {
  try {
    showStatus(await api("GET", "/api/v1/agent"));
  } catch (error) {
    notify(error.message, "error");
  }
}

function showStatus(next) {
  status = next;
  const badge = $("state");
  badge.className = `badge state-${status.state}`;
  setText(badge, status.state.replace("_", " "));
  setText($("state-reason"), status.reason || "");
  $("go-available").disabled = !["logged_out", "paused"].includes(status.state);
  $("go-pause").disabled = !["available", "wrap_up", "logged_out"].includes(status.state) && status.state !== "paused";
  $("go-logout").disabled = status.state === "logged_out";
  // In wrap-up the ACD names the call: the panel comes back after a reload too.
  const call = status.call;
  if (status.state === "wrap_up" && !wrap && call && call.call_id !== dismissed) {
    startWrapUp(pop && pop.call_id === call.call_id ? pop : {
      call_id: call.call_id, customer: null,
      caller: { number: call.caller_number, name: call.caller_name },
    });
  }
  tick();
}

async function command(path, body) {
  try {
    showStatus(await api("POST", path, body));
    notify("");
  } catch (error) {
    notify(error.message, "error");
  }
}

function tick() {
  if (status) setText($("state-timer"), status.since ? duration(serverClock.now() - epoch(status.since)) : "–");
  if (wrap) {
    // The ACD's wrap-up state says since when; before it does, the call's end.
    const since = status && status.state === "wrap_up" && status.since ? epoch(status.since) : wrap.since;
    setText($("wrapup-timer"), duration(serverClock.now() - since));
  }
  if (pop && pop.state === "ringing") setText($("pop-wait"), duration(pop.wait + serverClock.now() - pop.at));
}

// -- the screen pop ---------------------------------------------------------------------

function onFeed(message) {
  if (message.type !== "pop") return;
  const frame = message.pop;
  serverClock.sync(frame.at);
  if (frame.kind === "ring" || !pop || pop.call_id !== frame.call_id || frame.revision >= pop.revision) {
    const ended = frame.kind === "ended" || frame.kind === "withdrawn" || frame.kind === "transferred";
    const talked = pop && pop.call_id === frame.call_id && pop.state === "talking";
    if (frame.kind === "ring" && wrap && wrap.call_id !== frame.call_id) endWrapUp();
    if (!pop || pop.call_id !== frame.call_id) {
      choosing = false;
      $("new-customer-name").value = "";
      $("new-customer-email").value = "";
    }
    pop = frame;
    showPop(frame);
    if (ended && talked) startWrapUp(frame);
    else if (ended) clearPop();
  }
}

// The agent's own state, pushed: a ring, a wrap-up, a supervisor's pause show at once.
function onDesk(message) {
  if (message.type !== "agent") return;
  serverClock.sync(message.at);
  showStatus(message.agent);
}

function clearPop() {
  pop = null;
  $("pop-card").hidden = true;
  $("pop-empty").hidden = false;
}

function showPop(frame) {
  $("pop-empty").hidden = true;
  $("pop-card").hidden = false;
  const state = $("pop-state");
  state.className = `badge call-${frame.state}`;
  setText(state, frame.state);
  const customer = frame.customer;
  setText($("caller-name"), (customer && customer.name) || frame.caller.name || "Unknown caller");
  setText($("caller-number"), frame.caller.withheld ? "number withheld" : frame.caller.number);
  tierBadge($("call-tier"), frame.tier);
  setText($("pop-queue"), frame.queue || "–");
  setText($("pop-wait"), duration(frame.wait));
  const steps = ((frame.ivr && frame.ivr.path) || []).map(ivrStep).filter(Boolean);
  const keys = frame.ivr && frame.ivr.digits ? ` · keyed ${frame.ivr.digits}` : "";
  setText($("pop-ivr"), steps.length || keys ? `${steps.join("; ")}${keys}` || "–" : "–");
  setText($("pop-note"), frame.note || (frame.identity === "pending" ? "Looking the caller up…" : ""));
  showCustomer(customer);
  showCandidates(frame);
  const form = $("new-customer");
  const open = frame.state !== "gone" && frame.state !== "ended";
  const canCreate = open && (frame.identity === "unknown" || (frame.identity === "several" && (!customer || choosing)));
  form.hidden = !canCreate;
  if (canCreate && !$("new-customer-name").value && frame.caller.name) $("new-customer-name").value = frame.caller.name;
}

/** One IVR step of the pop: a flow of the product's IVR, or a dialplan application. */
function ivrStep(step) {
  if (step.flow) {
    const nodes = (step.nodes || []).join(" › ");
    return `${step.flow}${nodes ? `: ${nodes}` : ""}${step.outcome ? ` (${step.outcome})` : ""}`;
  }
  if (step.application) return `${step.application}${step.context ? ` in ${step.context}` : ""}`;
  return "";
}

/** The deadline that runs now: the first response until there is one, then the resolution. */
function deadline(ticket) {
  return ticket.first_response_at ? ticket.resolution_due : ticket.first_response_due;
}

function tierBadge(node, tier) {
  node.className = `badge tier tier-${tier || "none"}`;
  setText(node, tier ? tier.toUpperCase() : "");
  node.hidden = !tier;
}

function showCustomer(customer) {
  $("customer").hidden = !customer;
  if (!customer) return;
  setText($("customer-name"), customer.name);
  const profile = customer.profile || {};
  tierBadge($("tier-badge"), customer.tier);
  setText($("tier-reason"), (profile.tier && profile.tier.reason) || (customer.source === "crm" ? "from the CRM" : "–"));
  const loyalty = profile.loyalty;
  setText($("loyalty"), loyalty ? `${loyalty.class} — ${loyalty.reason}` : "–");
  const stage = profile.lifecycle;
  setText($("lifecycle"), stage ? `${stage.stage}${stage.retention ? ` (${stage.retention})` : ""} — ${stage.reason}` : "–");
  const quadrant = profile.quadrant;
  setText($("quadrant"), quadrant ? `${quadrant.quadrant} — ${quadrant.reason}` : "–");
  setText($("crm-notes"), customer.source === "crm"
    ? [customer.notes, customer.crm_open_tickets ? `${customer.crm_open_tickets} open tickets in the CRM` : ""].filter(Boolean).join(" · ")
    : "");
  const value = profile.lifetime_value;
  setText($("lifetime-value"), value ? `${value.amount} — ${value.reason}` : "–");
  const step = profile.next_step;
  setText($("next-step"), step ? `${step.step} (${step.reason})` : "–");
  $("open-tickets").replaceChildren(...(customer.open_tickets || []).map((t) =>
    el("li", { class: `sla-${t.sla_state}` },
      el("strong", { text: t.number }), " ", t.subject, " · ", t.priority, " · ", t.status,
      " · due ", when(deadline(t)), ` (${t.sla_state})`)));
  if (!(customer.open_tickets || []).length) $("open-tickets").replaceChildren(el("li", { class: "empty", text: "none" }));
  $("last-contacts").replaceChildren(...(customer.last_contacts || []).map((c) =>
    el("li", {}, when(c.at), " · ", c.queue || "–", " · ", c.outcome || "–",
      c.agent ? ` · agent ${c.agent}` : "", c.complaint ? " · complaint" : "")));
  if (!(customer.last_contacts || []).length) $("last-contacts").replaceChildren(el("li", { class: "empty", text: "none" }));
  fillLinkChoices(customer.open_tickets || []);
}

function showCandidates(frame) {
  const several = frame.identity === "several" && frame.state !== "gone";
  // Once one is picked, the list folds away; the agent can open it again.
  $("choose").hidden = !several || (Boolean(frame.customer) && !choosing);
  $("change-customer").hidden = !several || !frame.customer || choosing;
  if (!several) return;
  $("candidates").replaceChildren(...frame.candidates.map((c, index) =>
    el("li", {},
      el("button", { class: "pick", dataset: { customer: c.id }, title: `Alt+${index + 1}`, onclick: () => pick(c.id) }, `${index + 1}. `, c.name),
      " ", el("span", { class: `badge tier tier-${c.tier || "none"}`, text: (c.tier || "").toUpperCase() }),
      " ", (c.numbers || []).join(", "), c.email ? ` · ${c.email}` : "")));
}

async function pick(customerId) {
  if (!pop) return;
  choosing = false;
  try {
    const answer = await api("POST", `/api/v1/calls/${encodeURIComponent(pop.call_id)}/customer`, { customer_id: customerId });
    if (answer && answer.call_id) onFeed({ type: "pop", pop: answer });
  } catch (error) {
    notify(error.message, "error");
  }
}

$("change-customer").addEventListener("click", () => {
  choosing = true;
  if (pop) showPop(pop);
});

$("new-customer").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!pop) return;
  const email = $("new-customer-email").value.trim();
  try {
    const answer = await api("POST", `/api/v1/calls/${encodeURIComponent(pop.call_id)}/customer/new`, {
      name: $("new-customer-name").value.trim(),
      email: email || null,
    });
    if (answer && answer.call_id) onFeed({ type: "pop", pop: answer });
    notify("Customer created", "ok");
  } catch (error) {
    notify(error.message, "error");
  }
});

// -- wrap-up ----------------------------------------------------------------------------

function startWrapUp(frame) {
  if (wrap && wrap.call_id === frame.call_id) return;
  // One key per wrap-up: a retried click makes no second ticket, a new form may make one.
  wrap = { call_id: frame.call_id, customer: frame.customer, since: serverClock.now(), key: nonce() };
  $("wrapup").hidden = false;
  setText($("wrapup-call"), frame.call_id);
  setText($("wrapup-caller"), (frame.customer && frame.customer.name) || frame.caller.number || "a withheld number");
  setText($("wrapup-result"), "");
  // Prefilled from the call (the server adds the call's queue, IVR steps and keys below
  // the description, and the customer); it follows the category until the agent types.
  wrap.who = (frame.customer && frame.customer.name) || frame.caller.number || "a withheld number";
  $("ticket-subject").dataset.typed = "";
  suggestSubject();
  $("ticket-description").value = "";
  $("link-ticket-id").value = "";
  $("disposition-note").value = "";
  fillLinkChoices((frame.customer && frame.customer.open_tickets) || []);
  tick();
}

function suggestSubject() {
  const subject = $("ticket-subject");
  if (!wrap || subject.dataset.typed) return;
  const category = $("ticket-category").value || "call";
  subject.value = `${category[0].toUpperCase()}${category.slice(1)} from a call of ${wrap.who}`;
}

function endWrapUp() {
  wrap = null;
  $("wrapup").hidden = true;
}

function fillLinkChoices(tickets) {
  $("link-ticket").replaceChildren(el("option", { value: "", text: "—" }),
    ...tickets.map((t) => el("option", { value: String(t.id), text: `${t.number} ${t.subject}` })));
}

function wrapResult(text, kind) {
  const line = $("wrapup-result");
  line.className = `result ${kind}`;
  setText(line, text);
}

$("disposition-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!wrap) return;
  try {
    await api("POST", "/api/v1/agent/disposition", {
      call_id: wrap.call_id,
      disposition: $("disposition").value,
      note: $("disposition-note").value.trim() || null,
    });
    wrapResult(`Disposition saved: ${$("disposition").value}`, "ok");
  } catch (error) {
    wrapResult(error.message, "error");
  }
});

$("ticket-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!wrap) return;
  const body = {
    category: $("ticket-category").value,
    priority: $("ticket-priority").value || undefined,
    description: $("ticket-description").value,
  };
  const subject = $("ticket-subject").value.trim();
  if (subject) body.subject = subject;
  if (wrap.customer && !String(wrap.customer.id).startsWith("crm:")) body.customer_id = String(wrap.customer.id);
  try {
    const ticket = await api("POST", `/api/v1/calls/${encodeURIComponent(wrap.call_id)}/ticket`, body,
      { "Idempotency-Key": wrap.key });
    wrap.key = nonce(); // the next ticket from this call is another one
    wrapResult(`Ticket ${ticket.number} created: ${ticket.subject}`, "ok");
    refreshTickets();
  } catch (error) {
    wrapResult(error.message, "error");
  }
});

$("link-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!wrap) return;
  const id = $("link-ticket-id").value.trim() || $("link-ticket").value;
  if (!/^[0-9]+$/.test(id)) {
    wrapResult("pick a ticket or type its id", "error");
    return;
  }
  try {
    const ticket = await api("POST", `/api/v1/tickets/${id}/calls`, { call_id: wrap.call_id });
    wrapResult(`Call linked to ticket ${ticket.number}`, "ok");
    refreshTickets();
  } catch (error) {
    wrapResult(error.message, "error");
  }
});

$("wrapup-done").addEventListener("click", () => {
  dismissed = wrap && wrap.call_id;
  endWrapUp();
  if (pop && (pop.state === "ended" || pop.state === "gone")) clearPop();
});

// -- tickets of the agent's queues ------------------------------------------------------

async function refreshTickets() {
  try {
    const open = (await api("GET", "/api/v1/tickets?done=false&limit=100")).tickets;
    $("tickets").replaceChildren(...open.map((t) =>
      el("tr", { class: `sla-${t.sla_state}`, dataset: { ticket: String(t.id) } },
        el("td", { text: t.number }), el("td", { text: t.subject }), el("td", { text: t.priority }),
        el("td", { text: t.status }),
        el("td", { text: `${when(deadline(t))} (${t.sla_state})` }))));
    if (!open.length) $("tickets").replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "no open ticket" })));
  } catch (error) {
    notify(error.message, "error");
  }
}

async function loadChoices() {
  const [vocabulary, dispositions] = await Promise.all([
    api("GET", "/api/v1/tickets/vocabulary").catch(() => ({ categories: ["inquiry"], priorities: ["normal"] })),
    api("GET", "/api/v1/dispositions").catch(() => ({ dispositions: [] })),
  ]);
  $("ticket-category").replaceChildren(...vocabulary.categories.map((c) => el("option", { value: c, text: c })));
  $("ticket-priority").replaceChildren(el("option", { value: "", text: "by category" }),
    ...vocabulary.priorities.map((p) => el("option", { value: p, text: p })));
  $("disposition").replaceChildren(...dispositions.dispositions.map((d) => el("option", { value: d, text: d.replace(/_/g, " ") })));
}

// -- start ------------------------------------------------------------------------------

if (me) {
  setText($("agent-name"), me.account.agent || me.account.username);
  $("go-available").addEventListener("click", () => command("/api/v1/agent/available"));
  $("go-pause").addEventListener("click", () => command("/api/v1/agent/pause", { reason: $("pause-reason").value }));
  $("go-logout").addEventListener("click", () => command("/api/v1/agent/logout"));
  $("sign-out").addEventListener("click", signOut);
  $("refresh-tickets").addEventListener("click", refreshTickets);
  $("ticket-category").addEventListener("change", suggestSubject);
  $("ticket-subject").addEventListener("input", () => { $("ticket-subject").dataset.typed = "yes"; });
  shortcuts({
    a: () => $("go-available").click(),
    p: () => $("go-pause").click(),
    l: () => $("go-logout").click(),
    d: () => wrap && $("save-disposition").click(),
    t: () => wrap && $("create-ticket").click(),
    k: () => wrap && $("link-ticket-button").click(),
    r: refreshTickets,
    ...Object.fromEntries([1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => [String(n), () => {
      const button = document.querySelectorAll("#candidates .pick")[n - 1];
      if (button && !$("choose").hidden) button.click();
    }])),
  });
  // The feeds restore the pop of the call in progress and the state on every (re)connection.
  const feeds = { pops: "connecting", desk: "connecting" };
  const connection = (name) => (state) => {
    feeds[name] = state;
    const all = Object.values(feeds);
    const shown = all.every((s) => s === "live") ? "live" : all.includes("refused") ? "refused" : "reconnecting";
    const line = $("connection");
    line.className = `connection ${shown}`;
    setText(line, shown === "reconnecting" ? "reconnecting…" : shown);
  };
  liveFeed("/api/v1/pops", onFeed, connection("pops"));
  liveFeed("/api/v1/agent/feed", onDesk, connection("desk"));
  loadChoices().catch((error) => notify(error instanceof ApiError ? error.message : String(error), "error"));
  refreshStatus();
  refreshTickets();
  setInterval(tick, 1000);
  setInterval(refreshTickets, 30000);
}
