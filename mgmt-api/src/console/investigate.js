// bulkhead console: the Investigate view. A traceback search (GET
// /api/v1/traceback): the workloads that resolved or contacted a domain,
// address or network, by identity then and now, with their resolutions and
// contacts. And the blast radius of a workload (GET /api/v1/blast-radius)
// drawn by cytoscape.js as a graph over time: hops from the origin left to
// right, first contact within a hop top to bottom. Any workload found can be
// quarantined from here through console.js's confirmation dialog. Every
// value goes in as text (textContent, or cytoscape labels on a canvas).
"use strict";

// The traceback on screen: the answer's pages so far (`data`: the last
// one), their workloads and the query. `seq` drops late answers of an older
// search.
const traceback = { data: null, seq: 0, query: null, shown: 0 };
// The blast radius on screen: the cytoscape instance, the API's answer and
// the query. The browser test reads `blast.cy`.
// `names` are the workloads' names by MAC, for the paths.
const blast = { cy: null, data: null, query: null, seq: 0, names: {} };

// The drawing's grid: a column per hop, a row per node within it.
const COLUMN_PX = 240;
const ROW_PX = 90;

const QTYPES = { 1: "A", 5: "CNAME", 28: "AAAA", 65: "HTTPS", 255: "ANY" };
const RCODES = { 0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED" };

// The window controls `prefix`-window/-since/-until as API parameters.
function windowOf(prefix) {
  const w = $(prefix + "-window").value;
  if (w !== "custom") { return { since: w, until: "" }; }
  return { since: $(prefix + "-since").value.trim(), until: $(prefix + "-until").value.trim() };
}

function setWindow(prefix, since, until) {
  $(prefix + "-window").value = "custom";
  $(prefix + "-custom").hidden = false;
  $(prefix + "-since").value = since || "";
  $(prefix + "-until").value = until || "";
}

// "10:04:05" of an RFC 3339 time the API gives (always UTC, "Z").
function hms(t) { return typeof t === "string" && t.length >= 19 ? t.slice(11, 19) : (t || ""); }

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) { e.textContent = String(text); }
  if (className) { e.className = className; }
  return e;
}

function button(text, className, onClick) {
  const b = el("button", text, className);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function badge(td, text, className) {
  td.replaceChildren(el("span", text, "badge " + className));
}

// A table with a header row; returns its body.
function table(parent, headers, className) {
  const t = el("table", null, className);
  const tr = document.createElement("tr");
  for (const h of headers) { tr.appendChild(el("th", h)); }
  const head = document.createElement("thead");
  head.appendChild(tr);
  const body = document.createElement("tbody");
  t.append(head, body);
  parent.appendChild(t);
  return body;
}

function identityText(id) {
  if (!id) { return "unknown to the records"; }
  const parts = [id.name || "(no workload)"];
  if (Object.keys(id.labels || {}).length) { parts.push(labels(id.labels)); }
  if ((id.groups || []).length) { parts.push("groups: " + id.groups.join(", ")); }
  return parts.join(" \u00b7 ");
}

// A resolution's answers as its chain: "c2.evil.test \u2192 edge.cdn.test (CNAME,
// 60 s); edge.cdn.test \u2192 203.0.113.9 (30 s)".
function answersText(answers) {
  if (!answers || !answers.length) { return "no answer"; }
  return answers.map((a) => a.name + " \u2192 " + (a.cname ? a.cname + " (CNAME, " : a.ip + " (") +
    a.ttl + " s)").join("; ");
}

// ---- Traceback ----

async function runTraceback() {
  const target = $("tb-target").value.trim();
  if (!target) { return; }
  const win = windowOf("tb");
  const q = new URLSearchParams({ target });
  if (win.since) { q.set("since", win.since); }
  if (win.until) { q.set("until", win.until); }
  traceback.query = q;
  await loadTraceback(null);
}

// A page of the traceback: the first (`cursor` null) replaces what is
// shown, the next ones ("More") are added below it.
async function loadTraceback(cursor) {
  const q = new URLSearchParams(traceback.query);
  if (cursor) { q.set("cursor", cursor); }
  const box = $("traceback");
  box.dataset.state = "loading";
  $("tb-more").hidden = true;
  const seq = ++traceback.seq;
  try {
    const t = await api("GET", "/api/v1/traceback?" + q.toString());
    if (seq === traceback.seq) { drawTraceback(t, cursor !== null); }
  } catch (e) {
    if (seq !== traceback.seq) { return; }
    box.dataset.state = "error";
    if (!cursor) {
      box.replaceChildren();
      $("tb-summary").textContent = "";
    }
    say(e.message, true);
  }
}

function drawTraceback(t, more) {
  traceback.data = t;
  const box = $("traceback");
  const items = t.workloads.map((w) => tracedWorkload(t, w));
  if (more) { box.append(...items); } else { box.replaceChildren(...items); }
  traceback.shown = (more ? traceback.shown : 0) + t.workloads.length;
  const n = t.total;
  const shown = traceback.shown;
  $("tb-summary").textContent = t.target + ": " + n + (n === 1 ? " workload" : " workloads") +
    " from " + t.since + " to " + t.until +
    (t.answers.length ? "; answered " + t.answers.join(", ") : "") +
    ((t.shared_answers || []).length ? " (shared with many other names, contacts counted only " +
      "for workloads that resolved it: " + t.shared_answers.join(", ") + ")" : "") +
    (shown < n ? "; the first " + shown + " shown, first seen first" : "") +
    (n === 0 ? ": nobody resolved or contacted it in this window." : "");
  box.dataset.workloads = String(shown);
  box.dataset.total = String(n);
  box.dataset.state = "ready";
  const next = $("tb-more");
  next.hidden = !t.next;
  next.textContent = "More (" + (n - shown) + " left)";
}

function tracedWorkload(t, w) {
  const div = el("div", null, "traced");
  div.dataset.mac = w.mac;
  const then = w.identity_then;
  const now = w.identity_now;
  const name = (then && then.name) || (now && now.name) || "";
  div.appendChild(el("h3", (name ? name + " " : "") + w.mac +
    (w.resolved ? " \u00b7 resolved it" : " \u00b7 contacted it")));
  const dl = document.createElement("dl");
  const add = (k, v) => { dl.append(el("dt", k), el("dd", v || "-")); };
  add("Identity then", identityText(then));
  // "now" only when it changed: a renamed or relabelled workload stands out.
  add("Identity now", JSON.stringify(now) === JSON.stringify(then) ? "the same" : identityText(now));
  add("Addresses held", w.addresses.map((a) => a.ip + " (" + a.first + " to " + a.last + ", " +
    a.sources.join("/") + ")").join("; "));
  div.appendChild(dl);
  const since = firstActivity(w) || t.since;
  div.append(
    button("Blast radius", "blast-button", () => openBlast(w.mac, name, since, t.until)),
    button("Quarantine\u2026", "danger quarantine-button",
      () => askQuarantine(w.mac, "traceback of " + t.target, markQuarantined)));
  resolutionsTable(div, w);
  contactsTable(div, w);
  return div;
}

// When the workload first resolved or contacted the target: where its blast
// radius starts, so that what it reached before does not count.
function firstActivity(w) {
  const times = [];
  if (w.resolutions.length) { times.push(w.resolutions[0].time); }
  if (w.contacts.length) { times.push(w.contacts[0].first); }
  return times.sort()[0] || "";
}

function resolutionsTable(div, w) {
  div.appendChild(el("h4", "Resolutions"));
  if (!w.resolutions.length) { div.appendChild(el("p", "none in this window", "hint")); return; }
  const body = table(div, ["Time", "Client IP", "Query", "Answers (CNAME chain)", "Code"], "resolutions");
  for (const r of w.resolutions) {
    const tr = document.createElement("tr");
    tr.className = "resolution";
    tr.dataset.clientIp = r.client_ip;
    cell(tr, r.time);
    cell(tr, r.client_ip);
    cell(tr, r.qname + " " + (QTYPES[r.qtype] || "type " + r.qtype));
    cell(tr, answersText(r.answers));
    cell(tr, RCODES[r.rcode] || "rcode " + r.rcode);
    body.appendChild(tr);
  }
  if (w.more_resolutions) {
    div.appendChild(el("p", w.more_resolutions + " more resolutions not shown", "hint"));
  }
}

function contactsTable(div, w) {
  div.appendChild(el("h4", "Contacts"));
  if (!w.contacts.length) { div.appendChild(el("p", "none in this window", "hint")); return; }
  const body = table(div, ["First", "Last", "Address", "Service", "Verdict", "Flows", "Bytes"], "contacts");
  for (const c of w.contacts) {
    const tr = document.createElement("tr");
    tr.className = "contact";
    tr.dataset.ip = c.ip;
    cell(tr, c.first);
    cell(tr, c.last);
    cell(tr, c.ip + (c.mac ? " (" + c.mac + ")" : ""));
    cell(tr, c.service);
    badge(cell(tr, ""), c.allowed ? "allowed" : "denied", c.allowed ? "allow" : "deny");
    cell(tr, c.flows);
    cell(tr, c.bytes);
    body.appendChild(tr);
  }
}

// ---- Blast radius ----

// The blast radius of `mac`, from the detail panel (no window: the form's)
// or from a traceback (its window, from the workload's first activity).
function openBlast(mac, name, since, until) {
  if (!mac) { return; }
  if ($("view-investigate").hidden) { show("investigate"); }
  $("blast-mac").value = mac;
  if (name) { blast.names[mac] = name; }
  if (since) { setWindow("blast", since, until); }
  $("blast-panel").hidden = false;
  loadBlast();
  $("blast-panel").scrollIntoView();
}

async function loadBlast() {
  const mac = $("blast-mac").value.trim();
  if (!mac) { return; }
  const win = windowOf("blast");
  const q = new URLSearchParams({ mac, depth: $("blast-depth").value });
  if (win.since) { q.set("since", win.since); }
  if (win.until) { q.set("until", win.until); }
  const box = $("blast");
  box.dataset.state = "loading";
  $("blast-panel").hidden = false;
  const seq = ++blast.seq;
  try {
    const b = await api("GET", "/api/v1/blast-radius?" + q.toString());
    if (seq !== blast.seq) { return; }
    blast.query = { mac, since: b.since, until: b.until, depth: b.depth };
    drawBlast(b);
    blastTables(b);
    markQuarantined();
  } catch (e) {
    if (seq !== blast.seq) { return; }
    box.dataset.state = "error";
    $("blast-summary").textContent = "";
    say(e.message, true);
  }
}

// A node's key in the answer's paths: a MAC, or an address no workload has.
function keyOf(r) { return r.mac || r.ip; }

function nameOf(key) { return blast.names[key] || key; }

function drawBlast(b) {
  const box = $("blast");
  if (blast.cy) { blast.cy.destroy(); blast.cy = null; }
  blast.data = b;
  for (const r of b.reached) { if (r.mac && r.name) { blast.names[r.mac] = r.name; } }
  $("blast-title").textContent = "Blast radius of " + nameOf(b.origin) +
    (nameOf(b.origin) === b.origin ? "" : " (" + b.origin + ")");
  $("blast-summary").textContent = b.reached.length + " reached, " + b.attempted.length +
    (b.attempted.length === 1 ? " denied attempt, " : " denied attempts, ") + b.depth + " hops at most, from " + b.since + " to " + b.until +
    (b.truncated ? " (cut)" : "") + ". Left to right: hops from the origin; top to bottom: " +
    "first contact within the hop; edges say when (UTC) and on what.";
  const { elements, edges } = blastElements(b);
  box.dataset.nodes = String(b.reached.length + 1);
  box.dataset.edges = String(edges);
  const cy = cytoscape({ container: box, elements, style: blastStyle(), layout: { name: "preset" },
    wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
  blast.cy = cy;
  cy.fit(undefined, 40);
  box.dataset.state = "ready";
}

// Nodes at preset positions (x by depth, y by first contact within it, as
// the API orders `reached`) and an edge into each from its predecessor.
function blastElements(b) {
  const ids = { [b.origin]: "o" };
  const columns = [[]];
  for (const r of b.reached) { (columns[r.depth] = columns[r.depth] || []).push(r); }
  const elements = [{ group: "nodes", data: { id: "o", kind: "origin", depth: 0, label: nameOf(b.origin) },
    position: { x: 0, y: 0 } }];
  b.reached.forEach((r, i) => {
    const column = columns[r.depth];
    const row = column.indexOf(r) - (column.length - 1) / 2;
    ids[keyOf(r)] = "r" + i;
    elements.push({ group: "nodes", position: { x: r.depth * COLUMN_PX, y: row * ROW_PX }, data: {
      id: "r" + i, kind: r.mac ? "workload" : "external", depth: r.depth, key: keyOf(r),
      label: r.mac ? (r.name || r.mac) : r.ip,
    } });
  });
  let edges = 0;
  b.reached.forEach((r, i) => {
    const from = ids[r.path[r.path.length - 2]];
    if (!from) { return; } // a path through a node cut from the answer
    edges++;
    elements.push({ group: "edges", data: {
      id: "e" + i, source: from, target: "r" + i, depth: r.depth,
      label: hms(r.first_contact) + " " + r.services.join(", "),
    } });
  });
  return { elements, edges };
}

function blastStyle() {
  return [
    { selector: "node", style: {
      "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
      "background-color": "#2456a6", "width": 26, "height": 26, "color": "#1b1f24",
      "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 2,
    } },
    { selector: "node[kind = 'origin']", style: { "background-color": "#c62828", "width": 34, "height": 34 } },
    { selector: "node[kind = 'external']", style: { "shape": "diamond", "background-color": "#8d6e63" } },
    { selector: "edge", style: {
      "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2,
      // Green as in the access graph: every hop is an allowed flow (red
      // there means denied; the denied attempts are the table below).
      "line-color": "#2e7d32", "target-arrow-color": "#2e7d32",
      "label": "data(label)", "font-size": 10, "text-rotation": "autorotate",
      "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 2,
    } },
  ];
}

function blastTables(b) {
  const body = $("blast-reached");
  body.replaceChildren();
  for (const r of b.reached) {
    const tr = document.createElement("tr");
    tr.dataset.key = keyOf(r);
    tr.dataset.depth = String(r.depth);
    if (r.mac) { tr.dataset.mac = r.mac; }
    cell(tr, r.depth);
    cell(tr, r.mac ? (r.name ? r.name + " " : "") + r.mac : "external");
    cell(tr, r.ip);
    cell(tr, r.first_contact);
    cell(tr, r.path.map(nameOf).join(" \u2192 "));
    cell(tr, r.services.join(", "));
    cell(tr, r.flows);
    cell(tr, r.bytes);
    const act = cell(tr, "");
    act.className = "action";
    if (r.mac) {
      // One click and one confirmation, the reason filled in already.
      act.replaceChildren(button("Quarantine\u2026", "danger quarantine-button",
        () => askQuarantine(r.mac, "blast radius of " + b.origin, markQuarantined)));
    }
    body.appendChild(tr);
  }
  const att = $("blast-attempts");
  att.replaceChildren();
  for (const a of b.attempted) {
    const tr = document.createElement("tr");
    cell(tr, nameOf(a.from) === a.from ? a.from : nameOf(a.from) + " " + a.from);
    cell(tr, a.to_ip + (a.to_mac ? " (" + a.to_mac + ")" : ""));
    cell(tr, a.service);
    cell(tr, a.flows);
    cell(tr, a.first);
    cell(tr, a.last);
    att.appendChild(tr);
  }
  $("blast-no-attempts").hidden = b.attempted.length > 0;
}

// The reached workloads already quarantined say so instead of offering it.
async function markQuarantined() {
  try {
    const list = await api("GET", "/api/v1/quarantine");
    const q = new Set(list.map((x) => x.mac));
    for (const tr of $("blast-reached").rows) {
      if (tr.dataset.mac && q.has(tr.dataset.mac)) { badge(tr.querySelector("td.action"), "quarantined", "q"); }
    }
  } catch (e) { say(e.message, true); }
}

function showInvestigate() {
  if (blast.cy) { blast.cy.resize(); }
}

// Logging out forgets the searches.
function resetInvestigate() {
  if (blast.cy) { blast.cy.destroy(); }
  blast.cy = null; blast.data = null; blast.query = null; blast.seq++;
  blast.names = {};
  traceback.data = null; traceback.query = null; traceback.shown = 0; traceback.seq++;
  $("tb-more").hidden = true;
  const box = $("blast");
  box.dataset.state = "empty";
  delete box.dataset.nodes;
  delete box.dataset.edges;
  $("blast-panel").hidden = true;
  $("traceback").replaceChildren();
  $("traceback").dataset.state = "empty";
  $("tb-summary").textContent = "";
  $("tb-target").value = "";
}

function customToggle(prefix, reload) {
  $(prefix + "-window").addEventListener("change", () => {
    const custom = $(prefix + "-window").value === "custom";
    $(prefix + "-custom").hidden = !custom;
    if (!custom) { reload(); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("tb-form").addEventListener("submit", (ev) => { ev.preventDefault(); say(""); runTraceback(); });
  $("blast-form").addEventListener("submit", (ev) => { ev.preventDefault(); say(""); loadBlast(); });
  customToggle("tb", runTraceback);
  $("tb-more").addEventListener("click", () => {
    if (traceback.data && traceback.data.next) { say(""); loadTraceback(traceback.data.next); }
  });
  customToggle("blast", loadBlast);
  $("blast-depth").addEventListener("change", () => loadBlast());
  $("blast-button").addEventListener("click", () => {
    const name = $("detail-title").dataset.name || "";
    openBlast(current, name);
  });
});
