// bulkhead console: plain JavaScript, no build step. Every value from the API
// goes into the page as text (textContent), never as HTML. The access graph
// is in graph.js, the flows table in flows.js, traceback and blast radius in
// investigate.js, alerts in alerts.js; they use the helpers here.
"use strict";

const KEY = "bulkhead-token";
const $ = (id) => document.getElementById(id);
let current = null; // the workload in the detail panel
// What the confirmation dialog would quarantine: { mac, done } (done runs
// after it is quarantined: the view it was asked from refreshes).
let pending = null;

function token() { return sessionStorage.getItem(KEY); }

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (resp.status === 401) { logout("Your token was refused (revoked or wrong): log in again."); }
  if (!resp.ok) {
    const msg = data && data.message ? data.message : resp.status + " " + resp.statusText;
    const field = data && data.field ? " [" + data.field + "]" : "";
    throw new Error(msg + field);
  }
  return data;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined || text === "" ? "-" : String(text);
  row.appendChild(td);
  return td;
}

function labels(obj) {
  return Object.entries(obj || {}).map(([k, v]) => k + "=" + v).join(", ");
}

function show(view) {
  for (const v of document.querySelectorAll(".view")) { v.hidden = v.id !== "view-" + view; }
  for (const t of document.querySelectorAll(".tab")) { t.classList.toggle("active", t.dataset.view === view); }
  say("");
  if (view !== "flows") { stopLive(); }
  if (view === "workloads") { loadWorkloads(); }
  if (view === "quarantine") { loadQuarantines(); }
  if (view === "versions") { loadVersions(); }
  if (view === "graph") { showGraph(); } // graph.js
  if (view === "flows") { showFlows(); } // flows.js
  if (view === "investigate") { showInvestigate(); } // investigate.js
  if (view === "alerts") { showAlerts(); } // alerts.js
}

async function loadWorkloads() {
  try {
    const list = await api("GET", "/api/v1/workloads");
    const body = $("workloads");
    body.replaceChildren();
    for (const w of list) {
      const tr = document.createElement("tr");
      tr.dataset.mac = w.mac;
      if (w.quarantined) { tr.classList.add("quarantined"); }
      const name = cell(tr, "");
      const a = document.createElement("a");
      a.className = "workload-link";
      a.textContent = w.name || w.mac;
      a.addEventListener("click", () => openWorkload(w.mac));
      name.replaceChildren(a);
      cell(tr, w.mac);
      cell(tr, labels(w.labels));
      cell(tr, (w.groups || []).join(", "));
      cell(tr, (w.ips || []).join(", "));
      const state = cell(tr, "");
      state.className = "state";
      const b = document.createElement("span");
      b.className = "badge " + (w.quarantined ? "q" : "ok");
      b.textContent = w.quarantined ? "quarantined" : "normal";
      state.replaceChildren(b);
      body.appendChild(tr);
    }
    if (current) { openWorkload(current, true); }
  } catch (e) { say(e.message, true); }
}

async function openWorkload(mac, quiet) {
  try {
    const w = await api("GET", "/api/v1/workloads/" + encodeURIComponent(mac));
    current = w.mac;
    $("detail-title").textContent = (w.name || w.mac) + (w.quarantined ? " (quarantined)" : "");
    $("detail-title").dataset.name = w.name || "";
    const dl = $("detail-fields");
    dl.replaceChildren();
    const add = (k, v) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v || "-";
      dl.append(dt, dd);
    };
    add("MAC", w.mac);
    add("Labels", labels(w.labels));
    add("Groups", (w.groups || []).join(", "));
    add("IPs", (w.ips || []).join(", "));
    add("Origin", w.origin);
    add("Quarantine", w.quarantined ? "yes: " + (w.quarantine_reason || "no reason given") : "no");
    $("quarantine-button").hidden = w.quarantined;
    $("release-button").hidden = !w.quarantined;
    $("workload-detail").hidden = false;
  } catch (e) { if (!quiet) { say(e.message, true); } }
}

// Asks to quarantine `mac` (the detail panel's workload, or one a
// traceback or blast radius found), with `reason` filled in.
function askQuarantine(mac, reason, done) {
  if (!mac) { return; }
  pending = { mac, done: done || loadWorkloads };
  $("confirm-target").textContent = mac;
  $("confirm-reason").value = reason || "";
  // Escape closes the dialog without a returnValue: not the last one's "yes".
  $("confirm-dialog").returnValue = "";
  $("confirm-dialog").showModal();
}

async function confirmed() {
  const p = pending;
  pending = null;
  if ($("confirm-dialog").returnValue !== "yes" || !p) { return; }
  const reason = $("confirm-reason").value.trim();
  try {
    const r = await api("POST", "/api/v1/quarantine", { mac: p.mac, reason: reason || null });
    say(r.mac + (r.already ? " was already quarantined" : " quarantined") + " (generation " + r.generation + ")");
    await p.done();
  } catch (e) { say(e.message, true); }
}

async function release(mac) {
  try {
    const r = await api("DELETE", "/api/v1/quarantine/" + encodeURIComponent(mac));
    say(r.mac + (r.released ? " released" : " was not quarantined"));
    if (!$("view-workloads").hidden) { await loadWorkloads(); } else { await loadQuarantines(); }
  } catch (e) { say(e.message, true); }
}

async function loadQuarantines() {
  try {
    const list = await api("GET", "/api/v1/quarantine");
    const body = $("quarantines");
    body.replaceChildren();
    for (const q of list) {
      const tr = document.createElement("tr");
      tr.dataset.mac = q.mac;
      cell(tr, q.mac); cell(tr, q.name); cell(tr, q.at); cell(tr, q.actor); cell(tr, q.reason);
      const td = cell(tr, "");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "Release"; b.className = "release";
      b.addEventListener("click", () => release(q.mac));
      td.replaceChildren(b);
      body.appendChild(tr);
    }
  } catch (e) { say(e.message, true); }
}

async function loadVersions() {
  try {
    const list = await api("GET", "/api/v1/policy/versions");
    const body = $("versions");
    body.replaceChildren();
    for (const v of list.slice().reverse()) {
      const tr = document.createElement("tr");
      cell(tr, v.version); cell(tr, v.live ? "live" : ""); cell(tr, v.created_at);
      cell(tr, v.actor); cell(tr, v.compiled_rules); cell(tr, v.comment);
      body.appendChild(tr);
    }
  } catch (e) { say(e.message, true); }
}

function loggedIn() {
  $("login").hidden = true;
  $("nav").hidden = false;
  show("workloads");
}

function logout(why) {
  sessionStorage.removeItem(KEY);
  current = null;
  stopLive();
  resetFlows();
  resetGraph();
  resetInvestigate();
  resetAlerts();
  $("nav").hidden = true;
  for (const v of document.querySelectorAll(".view")) { v.hidden = true; }
  $("workload-detail").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  say("");
}

async function login(ev) {
  ev.preventDefault();
  const t = $("token").value.trim();
  if (!t) { return; }
  sessionStorage.setItem(KEY, t);
  try {
    await api("GET", "/api/v1/workloads");
    $("token").value = "";
    $("login-error").textContent = "";
    loggedIn();
  } catch (e) {
    sessionStorage.removeItem(KEY);
    $("token").value = "";
    $("login-error").textContent = "Login failed: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  for (const t of document.querySelectorAll(".tab")) {
    t.addEventListener("click", () => show(t.dataset.view));
  }
  $("quarantine-button").addEventListener("click", () => askQuarantine(current));
  $("release-button").addEventListener("click", () => current && release(current));
  $("detail-close").addEventListener("click", () => { current = null; $("workload-detail").hidden = true; });
  $("confirm-dialog").addEventListener("close", confirmed);
  if (token()) { loggedIn(); } else { logout(); }
});
