// bulkhead console: the Alerts view. A list (newest first, filtered by
// state and severity), an alert's detail with its evidence as the API
// gives it, and the actions an operator takes on it: acknowledge, close,
// and quarantine the workload it names (through the same confirmation
// dialog as the workloads view). Values go into the page as text only.
"use strict";

const alerts = { shown: null };

function alertQuery() {
  const q = new URLSearchParams();
  const state = $("al-state").value;
  const severity = $("al-severity").value;
  if (state) { q.set("state", state); }
  if (severity) { q.set("severity", severity); }
  q.set("limit", "200");
  return "/api/v1/alerts?" + q.toString();
}

async function loadAlerts() {
  const body = $("alerts");
  body.dataset.state = "loading";
  try {
    const list = await api("GET", alertQuery());
    body.replaceChildren();
    for (const a of list) {
      const tr = document.createElement("tr");
      tr.dataset.id = a.id;
      tr.classList.add("alert-row", "sev-" + a.severity);
      if (a.state !== "open") { tr.classList.add("handled"); }
      cell(tr, a.last_at);
      const sev = cell(tr, "");
      const b = document.createElement("span");
      b.className = "badge sev " + a.severity;
      b.textContent = a.severity;
      sev.replaceChildren(b);
      cell(tr, a.kind);
      cell(tr, a.workload || a.mac);
      cell(tr, a.indicator);
      const s = cell(tr, "");
      const link = document.createElement("a");
      link.className = "workload-link";
      link.textContent = a.summary;
      link.addEventListener("click", () => openAlert(a.id));
      s.replaceChildren(link);
      cell(tr, a.count);
      cell(tr, a.state);
      body.appendChild(tr);
    }
    $("alerts-summary").textContent = list.length === 0
      ? "No alert matches."
      : list.length + " alert" + (list.length === 1 ? "" : "s") + ", newest first.";
    body.dataset.state = "ready";
    if (alerts.shown !== null) { openAlert(alerts.shown, true); }
  } catch (e) {
    body.dataset.state = "error";
    say(e.message, true);
  }
}

async function openAlert(id, quiet) {
  try {
    const a = await api("GET", "/api/v1/alerts/" + encodeURIComponent(id));
    alerts.shown = a.id;
    const panel = $("alert-detail");
    panel.dataset.id = a.id;
    panel.dataset.mac = a.mac;
    $("alert-title").textContent = "Alert " + a.id + ": " + a.summary;
    const dl = $("alert-fields");
    dl.replaceChildren();
    const add = (k, v) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v === null || v === undefined || v === "" ? "-" : String(v);
      dl.append(dt, dd);
    };
    add("Kind", a.kind);
    add("Severity", a.severity);
    add("Workload", (a.workload ? a.workload + " " : "") + "(" + a.mac + ")");
    add("Indicator", a.indicator);
    add("First raised", a.first_at);
    add("Last raised", a.last_at + (a.count > 1 ? " (" + a.count + " times)" : ""));
    add("State", a.state + (a.state_by ? " by " + a.state_by + " at " + a.state_at : ""));
    $("alert-evidence").textContent = JSON.stringify(a.evidence, null, 2);
    $("alert-ack").hidden = a.state !== "open";
    $("alert-close").hidden = a.state === "closed";
    panel.hidden = false;
  } catch (e) { if (!quiet) { say(e.message, true); } }
}

async function setAlertState(action) {
  const id = $("alert-detail").dataset.id;
  if (!id) { return; }
  try {
    const a = await api("POST", "/api/v1/alerts/" + encodeURIComponent(id) + "/" + action);
    say("Alert " + a.id + " " + a.state);
    await loadAlerts();
  } catch (e) { say(e.message, true); }
}

function quarantineFromAlert() {
  const panel = $("alert-detail");
  const mac = panel.dataset.mac;
  const reason = "alert " + panel.dataset.id + ": " + $("alert-title").textContent.replace(/^Alert \d+: /, "");
  askQuarantine(mac, reason.slice(0, 1024), loadAlerts);
}

function showAlerts() { loadAlerts(); }

function resetAlerts() {
  alerts.shown = null;
  $("alerts").replaceChildren();
  $("alert-detail").hidden = true;
}

document.addEventListener("DOMContentLoaded", () => {
  $("alerts-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAlerts(); });
  $("alert-ack").addEventListener("click", () => setAlertState("ack"));
  $("alert-close").addEventListener("click", () => setAlertState("close"));
  $("alert-quarantine").addEventListener("click", quarantineFromAlert);
  $("alert-hide").addEventListener("click", () => { alerts.shown = null; $("alert-detail").hidden = true; });
});
