// bulkhead console: the flows table (GET /api/v1/flows) with the API's
// filters, newest first, "More" paging by the API's cursor, and a live mode
// that polls every 2 s for records newer than the newest shown and puts them
// on top. Every value goes in as text.
"use strict";

const FILTERS = ["from", "to", "verdict", "reason", "proto", "port", "since", "until"];
const PAGE = 100;
const LIVE_EVERY_MS = 2000;
// Rows one live poll takes at most (pages of LIVE_PAGE): a burst beyond
// that is left for "Apply".
const LIVE_PAGE = 500;
const LIVE_PAGES = 10;

const flows = {
  applied: null, // the filters of the rows shown
  context: "", // what they are, when an edge of the graph chose them
  next: null, // the API's cursor for the next page
  newest: null, // the newest last_seen shown
  seen: new Set(), // the rows shown, so a poll does not show one twice
  timer: null,
  polling: false,
  seq: 0, // bumped by every new listing: late answers of an old one are dropped
};

function readFilters() {
  const f = {};
  for (const k of FILTERS) { f[k] = $("f-" + k).value.trim(); }
  return f;
}

function fillFilters(f) {
  for (const k of FILTERS) { $("f-" + k).value = f[k] || ""; }
}

function flowsQuery(filters, extra) {
  const q = new URLSearchParams();
  for (const k of FILTERS) { if (filters[k]) { q.set(k, filters[k]); } }
  for (const [k, v] of Object.entries(extra)) { q.set(k, v); }
  return "/api/v1/flows?" + q.toString();
}

function endText(e) {
  const ip = e.ip.includes(":") ? "[" + e.ip + "]" : e.ip;
  const addr = e.port ? ip + ":" + e.port : e.ip;
  return e.name ? e.name + " " + addr : addr + " (" + e.mac + ")";
}

function flowVerdict(f) {
  return f.verdict === "allow" && f.would_deny ? "would-deny" : f.verdict;
}

function flowRow(f) {
  const tr = document.createElement("tr");
  const verdict = flowVerdict(f);
  tr.dataset.verdict = verdict;
  tr.dataset.from = f.src.name || f.src.mac;
  tr.dataset.to = f.dst.name || f.dst.ip;
  tr.dataset.service = service(f.proto, f.dst.port);
  cell(tr, f.last_seen);
  cell(tr, endText(f.src));
  cell(tr, endText(f.dst));
  cell(tr, tr.dataset.service);
  const v = cell(tr, "");
  const b = document.createElement("span");
  b.className = "badge " + verdict;
  b.textContent = verdict;
  v.replaceChildren(b);
  cell(tr, f.reason + (f.rule !== undefined && f.rule !== null ? ":" + f.rule : ""));
  cell(tr, f.packets[0] + " / " + f.packets[1]);
  cell(tr, f.bytes[0] + " / " + f.bytes[1]);
  cell(tr, f.end);
  return tr;
}

function flowKey(f) { return JSON.stringify(f); }

// Adds rows (newest first) at the top or the bottom; returns how many were new.
function addFlows(list, atTop) {
  const body = $("flows");
  const frag = document.createDocumentFragment();
  let added = 0;
  for (const f of list) {
    const k = flowKey(f);
    if (flows.seen.has(k)) { continue; }
    flows.seen.add(k);
    frag.appendChild(flowRow(f));
    added++;
    if (!flows.newest || f.last_seen > flows.newest) { flows.newest = f.last_seen; }
  }
  if (atTop) { body.insertBefore(frag, body.firstChild); } else { body.appendChild(frag); }
  return added;
}

function flowsSummary(note) {
  const n = $("flows").rows.length;
  const parts = [];
  if (flows.context) { parts.push("Flows of " + flows.context + ":"); }
  parts.push(n + (n === 1 ? " flow" : " flows") + " shown, newest first");
  if (flows.next) { parts.push("(more below)"); }
  if (flows.timer) { parts.push("\u00b7 live"); }
  if (note) { parts.push("\u00b7 " + note); }
  $("flows-summary").textContent = parts.join(" ");
}

function clearFlows() {
  flows.seq++;
  flows.next = null;
  flows.newest = null;
  flows.seen = new Set();
  $("flows").replaceChildren();
  $("flows-more").hidden = true;
}

async function loadFlows(filters) {
  clearFlows();
  flows.applied = filters;
  const seq = flows.seq;
  const box = $("flows");
  box.dataset.state = "loading";
  try {
    const page = await api("GET", flowsQuery(filters, { limit: String(PAGE) }));
    if (seq !== flows.seq) { return; }
    addFlows(page.flows, false);
    flows.next = page.next || null;
    $("flows-more").hidden = !flows.next;
    box.dataset.state = "ready";
    flowsSummary();
  } catch (e) {
    if (seq !== flows.seq) { return; }
    box.dataset.state = "error";
    stopLive();
    $("flows-summary").textContent = "";
    say(e.message, true);
  }
}

async function moreFlows() {
  if (!flows.next || !flows.applied) { return; }
  const seq = flows.seq;
  try {
    const page = await api("GET", flowsQuery(flows.applied, { limit: String(PAGE), cursor: flows.next }));
    if (seq !== flows.seq) { return; }
    addFlows(page.flows, false);
    flows.next = page.next || null;
    $("flows-more").hidden = !flows.next;
    flowsSummary();
  } catch (e) { say(e.message, true); }
}

// One live poll: the records seen at or after the newest shown, on top.
async function pollFlows() {
  if (flows.polling || !flows.applied || $("flows").dataset.state !== "ready") { return; }
  flows.polling = true;
  const seq = flows.seq;
  const filters = Object.assign({}, flows.applied);
  if (flows.newest) { filters.since = flows.newest; }
  try {
    const fresh = [];
    let cursor = null;
    let note = "";
    for (let i = 0; i < LIVE_PAGES; i++) {
      const extra = { limit: String(LIVE_PAGE) };
      if (cursor) { extra.cursor = cursor; }
      const page = await api("GET", flowsQuery(filters, extra));
      fresh.push(...page.flows);
      cursor = page.next || null;
      if (!cursor) { break; }
      if (i === LIVE_PAGES - 1) { note = "more new flows than a poll shows: Apply to list them all"; }
    }
    if (seq !== flows.seq || !flows.timer) { return; }
    const added = addFlows(fresh, true);
    flowsSummary(note || (added ? added + " new" : ""));
  } catch (e) {
    if (seq === flows.seq) {
      stopLive();
      say("live: " + e.message, true);
    }
  } finally {
    flows.polling = false;
  }
}

function startLive() {
  if (flows.timer) { return; }
  flows.timer = setInterval(pollFlows, LIVE_EVERY_MS);
  $("flows-live").checked = true;
  if (!flows.applied) { loadFlows(readFilters()); } else { flowsSummary(); }
}

function stopLive() {
  if (flows.timer) { clearInterval(flows.timer); }
  flows.timer = null;
  $("flows-live").checked = false;
  if (flows.applied) { flowsSummary(); }
}

function showFlows() {
  if (!flows.applied) { loadFlows(readFilters()); }
}

// The flows view with these filters (from an edge of the graph).
function openFlows(filters, context) {
  stopLive();
  fillFilters(filters);
  flows.applied = null;
  flows.context = context || "";
  show("flows");
}

// Logging out forgets the rows.
function resetFlows() {
  clearFlows();
  flows.applied = null;
  flows.context = "";
  fillFilters({});
  $("flows-summary").textContent = "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("flows-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    say("");
    flows.context = "";
    loadFlows(readFilters());
  });
  $("flows-clear").addEventListener("click", () => {
    say("");
    fillFilters({});
    flows.context = "";
    loadFlows(readFilters());
  });
  $("flows-more").addEventListener("click", moreFlows);
  $("flows-live").addEventListener("change", () => {
    if ($("flows-live").checked) { startLive(); } else { stopLive(); }
  });
});
