// What every page shares: the session (a bearer token kept in this tab), API calls with
// their errors, live feeds that reconnect by themselves, safe DOM building, time texts.
//
// Safety rule of these pages: text from the server (names, notes, reasons, subjects) only
// ever reaches the DOM through textContent (el() and setText() below), never innerHTML.

const KEY = "callcenter.session";

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) || "null");
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** The session of a page meant for `roles`; anyone else goes to the log-in page. */
export function requireSession(roles) {
  const current = session.get();
  if (!current || !roles.includes(current.account.role)) {
    location.replace("/");
    return null;
  }
  return current;
}

export class ApiError extends Error {
  constructor(status, problems) {
    super(problems.map((p) => (p.field ? `${p.field}: ${p.problem}` : p.problem)).join("; "));
    this.status = status;
    this.problems = problems;
  }
}

/** Call the API; answers the parsed JSON (null for 204), throws ApiError. */
export async function api(method, path, body, headers = {}) {
  const current = session.get();
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (current) init.headers.Authorization = `Bearer ${current.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, [{ field: null, problem: "the server does not answer" }]);
  }
  if (response.status === 401 && current) {
    session.clear();
    location.replace("/");
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const payload = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const problems = payload && payload.errors ? payload.errors : [{ field: null, problem: `HTTP ${response.status}` }];
    throw new ApiError(response.status, problems);
  }
  return payload;
}

/** Download an API answer (CSV...) as a file, with the token the link could not carry. */
export async function download(path, filename) {
  const current = session.get();
  const response = await fetch(path, { headers: { Authorization: `Bearer ${current.token}` } });
  if (!response.ok) throw new ApiError(response.status, [{ field: null, problem: `HTTP ${response.status}` }]);
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

/**
 * A WebSocket feed that sends the token first and reconnects by itself (backing off up to
 * 10 s). `onMessage(message)` gets each JSON message; `onStatus("live"|"reconnecting"|
 * "refused")`. A 4401/4403 close is final: the token is no good for this feed.
 */
export function liveFeed(path, onMessage, onStatus) {
  let delay = 500;
  let socket = null;
  let stopped = false;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.onopen = () => socket.send(JSON.stringify({ token: session.get().token }));
    socket.onmessage = (event) => {
      delay = 500;
      onStatus("live");
      onMessage(JSON.parse(event.data));
    };
    socket.onclose = (event) => {
      if (stopped) return;
      if (event.code === 4401 || event.code === 4403) {
        onStatus("refused");
        if (event.code === 4401) {
          session.clear();
          location.replace("/");
        }
        return;
      }
      onStatus("reconnecting");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  };
  open();
  return {
    close() {
      stopped = true;
      if (socket) socket.close();
    },
  };
}

/** An element with attributes (on* are listeners, class/text/dataset special) and children
 * (strings become text nodes: never markup). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Set a node's text only when it changed (no layout work for an unchanged cell). */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Epoch seconds of an API time: epoch numbers pass, ISO 8601 texts are parsed. */
export function epoch(value) {
  if (value === null || value === undefined) return null;
  return typeof value === "number" ? value : Date.parse(value) / 1000;
}

/** A random key (crypto.randomUUID needs https; this works over plain http on a LAN too). */
export function nonce() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Seconds as m:ss or h:mm:ss. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** A ratio (0..1) as a percentage, "–" when there is nothing to count. */
export function percent(ratio) {
  return ratio === null || ratio === undefined ? "–" : `${Math.round(ratio * 1000) / 10}%`;
}

/** Epoch seconds as a local date and time. */
export function when(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  const date = new Date(typeof epoch === "number" ? epoch * 1000 : epoch);
  return date.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/**
 * The server's clock as seen from here: feeds say what time it is there (`at`), and timers
 * count from the server's epoch times, so a skewed client clock shifts nothing.
 */
export const serverClock = {
  offset: 0,
  sync(serverEpoch) {
    this.offset = serverEpoch * 1000 - Date.now();
  },
  now() {
    return (Date.now() + this.offset) / 1000;
  },
};

/** Sign out: the token stops working on the server too. */
export async function signOut() {
  try {
    await api("DELETE", "/api/v1/session");
  } finally {
    session.clear();
    location.replace("/");
  }
}

/** Keyboard shortcuts: Alt+key -> action; ignored while nothing but typing is meant. */
export function shortcuts(map) {
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    const action = map[event.key.toLowerCase()];
    if (action) {
      event.preventDefault();
      action();
    }
  });
}

/** Show a short message in the page's status line. */
export function notify(text, kind = "info") {
  const line = document.getElementById("notice");
  if (!line) return;
  line.className = `notice ${kind}`;
  setText(line, text);
}
