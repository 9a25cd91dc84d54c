// Live wallboard: queue tiles, agent grid, calls (with listen/whisper/barge for supervisors).
// Data comes only from the API with the user's token; the page itself holds none.
// Token: taken once from ?token= (then removed from the address bar) or typed into the form,
// kept in sessionStorage (this tab only, gone when it closes). EventSource cannot send an
// Authorization header, so the event stream gets it as ?access_token= (see docs/api.md).
"use strict";

const API = "/api/v1";
const state = { token: null, me: null, calls: new Map(), agents: new Map(), queues: new Map(), es: null, retry: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function dur(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "";
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

// Durations tick locally between events: value at receipt + seconds since.
function since(obj, key) {
  const v = obj[key];
  if (v === null || v === undefined) return null;
  return v + (Date.now() - obj._rx) / 1000;
}

// A duration cell that the 1 s tick updates in place (the tables are rebuilt only on events,
// so buttons under the pointer are not replaced every second).
function ticking(cls, map, id, key, prefix, suffix) {
  const e = el("span", cls);
  e.classList.add("tick");
  Object.assign(e.dataset, { map, id, key, prefix: prefix || "", suffix: suffix || "" });
  return e;
}

function tick() {
  for (const e of document.querySelectorAll(".tick")) {
    const obj = state[e.dataset.map].get(e.dataset.id);
    if (obj) e.textContent = e.dataset.prefix + dur(since(obj, e.dataset.key)) + e.dataset.suffix;
  }
}

const STATE_LABEL = {
  on_call: "on a call", ringing: "ringing", available: "available", break: "on break",
  dnd: "do not disturb", paused: "paused", offline: "offline",
};

function agentState(a) {
  if (a.call_id) return "on_call";
  if (a.paused) {
    const r = (a.pause_reason || "").toLowerCase();
    return r === "break" || r === "dnd" ? r : "paused";
  }
  if (a.device_status === "ringing") return "ringing";
  if (a.device_status === "unavailable") return "offline";
  return "available";
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { signOut("Your token is no longer valid."); }
  return { status: resp.status, data };
}

function toast(text, bad) {
  const t = $("toast");
  t.textContent = text;
  t.className = bad ? "toast bad" : "toast";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), 5000);
}

// --- rendering -----------------------------------------------------------------------------------

function renderQueues() {
  const box = $("queues");
  box.replaceChildren();
  for (const q of [...state.queues.values()].sort((a, b) => a.queue.localeCompare(b.queue))) {
    const longest = q.waiting ? since(q, "longest_wait_s") : 0;
    const tile = el("div", "tile" + (longest > 60 ? " bad" : longest > 20 ? " warn" : ""));
    tile.dataset.queue = q.queue;
    tile.append(el("div", "name", q.queue));
    const big = el("div", "big", q.waiting);
    big.title = "callers waiting";
    tile.append(big);
    const sl = q.service_level_today === null || q.service_level_today === undefined
      ? "–" : `${Math.round(q.service_level_today * 100)}%`;
    const wait = q.waiting ? ticking(null, "queues", q.queue, "longest_wait_s", "longest ") : el("span", null, "–");
    for (const [k, v] of [["waiting", wait], ["EWT", dur(q.estimated_wait_s)],
                          ["SL today", sl], ["answered / abandoned", `${q.answered_today} / ${q.abandoned_today}`],
                          ["agents free / busy / paused", `${q.agents_available} / ${q.agents_busy} / ${q.agents_paused}`]]) {
      const row = el("div", "row");
      row.append(el("span", null, k), typeof v === "string" ? el("span", null, v) : v);
      tile.append(row);
    }
    box.append(tile);
  }
}

function renderAgents() {
  const box = $("agents");
  box.replaceChildren();
  for (const a of [...state.agents.values()].sort((x, y) => (x.display_name || x.agent).localeCompare(y.display_name || y.agent))) {
    const st = agentState(a);
    const tile = el("div", `agent st-${st}`);
    tile.dataset.agent = a.agent;
    tile.append(el("div", "name", a.display_name || a.name || a.agent));
    tile.append(el("div", "state", STATE_LABEL[st] + (st === "paused" && a.pause_reason ? ` (${a.pause_reason})` : "")));
    const call = a.call_id ? state.calls.get(a.call_id) : null;
    if (a.call_id) {
      const who = call ? (call.customer && call.customer.name) || call.caller_name || call.caller || "" : "";
      const tier = call && call.customer && call.customer.tier ? ` · ${call.customer.tier}` : "";
      const d = el("div", "detail");
      d.append(ticking(null, "agents", a.agent, "call_s", "", " "), el("span", null, `${who}${tier}`));
      tile.append(d);
    } else {
      tile.append(el("div", "detail muted", `${a.answered_today || 0} answered today`));
    }
    box.append(tile);
  }
}

function canSpy() {
  return state.me && (state.me.role === "admin" || state.me.role === "supervisor");
}

function renderCalls() {
  const body = $("calls").querySelector("tbody");
  body.replaceChildren();
  const calls = [...state.calls.values()].sort((a, b) => a.entered_at.localeCompare(b.entered_at));
  $("no-calls").classList.toggle("hidden", calls.length > 0);
  for (const c of calls) {
    const tr = el("tr");
    tr.dataset.call = c.call_id;
    const caller = el("td", null, (c.customer && c.customer.name) || c.caller_name || c.caller || "unknown");
    if (c.customer && c.customer.tier && c.customer.tier !== "standard") caller.append(el("span", "tier", c.customer.tier));
    const agent = c.agent ? (state.agents.get(c.agent) || {}).display_name || c.agent : (c.ringing || []).join(", ");
    const time = el("td");
    time.append(ticking(null, "calls", c.call_id, c.stage === "talking" ? "talk_s" : "wait_s"));
    tr.append(caller, el("td", null, c.stage), el("td", null, c.queue || ""), time, el("td", null, agent));
    const actions = el("td", "actions");
    if (canSpy() && c.agent) {
      for (const mode of ["listen", "whisper", "barge"]) {
        const b = el("button", `spy-${mode}`, mode);
        b.type = "button";
        b.dataset.mode = mode;
        b.dataset.call = c.call_id;
        actions.append(b);
      }
    }
    tr.append(actions);
    body.append(tr);
  }
}

function render() { renderQueues(); renderAgents(); renderCalls(); tick(); }

// --- live updates --------------------------------------------------------------------------------

function stamp(o) { o._rx = Date.now(); return o; }

function applySnapshot(s) {
  state.calls = new Map(s.calls.map((c) => [c.call_id, stamp(c)]));
  state.agents = new Map(s.agents.map((a) => [a.agent, stamp(a)]));
  state.queues = new Map(s.queues.map((q) => [q.queue, stamp(q)]));
  render();
}

function connect() {
  if (state.es) state.es.close();
  const es = new EventSource(`${API}/events?access_token=${encodeURIComponent(state.token)}`);
  state.es = es;
  es.onopen = () => { state.retry = 0; setConn(true); };
  es.onerror = () => {
    setConn(false);
    // The browser retries by itself; after repeated failures check whether the token still works.
    if (++state.retry === 3) api("GET", "/me");
  };
  es.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  // The controller publishes agent changes for status/pause/membership only; who is on which
  // call comes with the call notifications, so the agent tiles follow them here.
  es.addEventListener("call", (e) => {
    const d = JSON.parse(e.data).data;
    state.calls.set(d.call_id, stamp(d));
    const a = d.agent && state.agents.get(d.agent);
    if (a && a.call_id !== d.call_id) {
      state.agents.set(d.agent, stamp({ ...a, call_id: d.call_id, call_s: d.talk_s || 0 }));
    }
    render();
  });
  es.addEventListener("call_ended", (e) => {
    const id = JSON.parse(e.data).data.call_id;
    state.calls.delete(id);
    for (const [k, a] of state.agents) {
      if (a.call_id === id) state.agents.set(k, stamp({ ...a, call_id: null, call_s: null }));
    }
    render();
  });
  es.addEventListener("agent", (e) => {
    const d = JSON.parse(e.data).data;
    const old = state.agents.get(d.agent) || {};
    state.agents.set(d.agent, stamp({ ...old, ...d }));
    render();
  });
  es.addEventListener("queue", (e) => {
    const d = JSON.parse(e.data).data;
    state.queues.set(d.queue, stamp(d));
    render();
  });
  // Missed notifications (this tab was too slow): start again from a fresh snapshot.
  es.addEventListener("gap", () => connect());
}

function setConn(on) {
  const c = $("conn");
  c.textContent = on ? "live" : "reconnecting…";
  c.className = on ? "conn conn-on" : "conn conn-off";
}

// --- supervisor actions --------------------------------------------------------------------------

async function spy(callId, mode) {
  const input = $("my-endpoint");
  const endpoint = input.value.trim();
  if (!endpoint) {
    toast("Enter your phone (e.g. PJSIP/1009) under 'My phone' first.", true);
    input.focus();
    return;
  }
  localStorage.setItem("cc.endpoint", endpoint);
  const r = await api("POST", `/live/calls/${encodeURIComponent(callId)}/spy`, { mode, endpoint });
  if (r.status === 200) toast(`${mode}: your phone ${endpoint} is ringing`);
  else toast(`${mode} failed: ${(r.data && r.data.detail) || r.status}`, true);
}

// --- sign-in -------------------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem("cc.token");
  state.token = null;
  if (state.es) state.es.close();
  $("board").classList.add("hidden");
  $("logout").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("login-error").textContent = message || "";
}

async function start() {
  const r = await api("GET", "/me");
  if (r.status !== 200) {
    if (r.status !== 401) signOut(`Cannot sign in (${r.status}).`);
    return;
  }
  state.me = r.data;
  if (r.data.role === "analyst") {
    signOut("An analyst token cannot show the live floor: use a supervisor or admin token.");
    return;
  }
  $("who").textContent = `${r.data.name} · ${r.data.role}`;
  $("login").classList.add("hidden");
  $("board").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  $("endpoint-box").classList.toggle("hidden", !canSpy());
  connect();
}

function init() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem("cc.token", fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);  // not left in history
  }
  $("my-endpoint").value = localStorage.getItem("cc.endpoint") || "";
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("login-token").value.trim();
    if (!t) return;
    sessionStorage.setItem("cc.token", t);
    state.token = t;
    $("login-token").value = "";
    $("login-error").textContent = "";
    start();
  });
  $("logout").addEventListener("click", () => signOut());
  $("calls").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-mode]");
    if (b) spy(b.dataset.call, b.dataset.mode);
  });
  setInterval(() => {
    $("clock").textContent = new Date().toLocaleTimeString();
    if (state.token && state.me) tick();
  }, 1000);
  state.token = sessionStorage.getItem("cc.token");
  if (state.token) start(); else signOut();
}

document.addEventListener("DOMContentLoaded", init);
