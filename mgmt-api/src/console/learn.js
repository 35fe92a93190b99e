// bulkhead console: the Learn view. Rule proposals from the flow records
// (GET /api/v1/proposals), accepted into the policy draft, never the live
// policy (POST /api/v1/proposals/accept, admin; another role gets the API's
// 403 as a message), and the draft's dry run (POST
// /api/v1/policy/draft/dry-run): what it would break, open and flag. Uses
// console.js's helpers and graph.js's service(). Values go into the page
// as text only.
"use strict";

// The proposals on screen and the window and groups they were asked for
// (accepting asks for the same ones, so the ids match). `seq` drops late
// answers of an older request; `accepting` is what the dialog would accept.
const learn = { data: null, query: null, seq: 0, drySeq: 0, accepting: null };

// The form as API parameters (blank ones left out).
function learnQuery() {
  const q = {};
  const since = $("learn-since").value.trim();
  const until = $("learn-until").value.trim();
  const groups = $("learn-groups").value.trim();
  if (since) { q.since = since; }
  if (until) { q.until = until; }
  if (groups) { q.groups = groups; }
  return q;
}

// A rule's services as text: `postgresql`, `tcp/8443`, `tcp/9000-9010`.
function learnServices(list) {
  return (list || []).map((s) => {
    if (typeof s === "string") { return s; }
    const ports = (s.ports || []).map(String).join(",");
    return String(s.proto) + (ports ? "/" + ports : "");
  }).join(", ");
}

// An end of a gap or an example: its name, else its address, else its MAC.
function learnEnd(e) {
  if (!e) { return ""; }
  return e.name || e.ip || e.mac;
}

function learnGroups(list) {
  return list && list.length ? list.join(", ") : "(no group)";
}

// `allow (rule 10)`, `deny (default)`.
function learnDecision(d) {
  if (!d) { return ""; }
  return d.verdict + " (" + d.reason + (d.rule !== undefined && d.rule !== null ? " " + d.rule : "") + ")";
}

function learnPlural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

async function loadProposals() {
  const seq = ++learn.seq;
  const query = learnQuery();
  const body = $("learn-proposals");
  body.dataset.state = "loading";
  try {
    const p = await api("GET", "/api/v1/proposals?" + new URLSearchParams(query).toString());
    if (seq !== learn.seq) { return; }
    learn.data = p;
    learn.query = query;
    drawProposals(p);
    body.dataset.state = "ready";
  } catch (e) {
    if (seq !== learn.seq) { return; }
    body.dataset.state = "error";
    say(e.message, true);
  }
}

function drawProposals(p) {
  const body = $("learn-proposals");
  body.replaceChildren();
  $("learn-check-all").checked = false;
  for (const x of p.proposals) {
    const tr = document.createElement("tr");
    tr.dataset.id = x.id;
    tr.title = x.id + ": seen " + (x.seen || []).join(", ");
    const pick = cell(tr, "");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "learn-pick";
    box.value = x.id;
    box.setAttribute("aria-label", "select " + x.src + " \u2192 " + x.dst);
    pick.replaceChildren(box);
    cell(tr, x.src + " \u2192 " + x.dst);
    cell(tr, learnServices(x.services));
    cell(tr, x.flows);
    cell(tr, x.bytes);
    cell(tr, x.pairs);
    cell(tr, x.first_seen);
    cell(tr, x.last_seen);
    const draft = cell(tr, "");
    draft.className = "draft";
    body.appendChild(tr);
  }
  $("learn-no-proposals").hidden = p.proposals.length > 0;

  const gaps = $("learn-gaps");
  gaps.replaceChildren();
  for (const g of p.gaps) {
    const tr = document.createElement("tr");
    tr.dataset.mac = g.end.mac;
    cell(tr, g.end.name);
    cell(tr, g.end.mac);
    cell(tr, g.end.ip);
    cell(tr, g.flows);
    cell(tr, g.peers);
    cell(tr, g.last_seen);
    gaps.appendChild(tr);
  }
  $("learn-no-gaps").hidden = p.gaps.length > 0;

  const scope = p.scope && p.scope.length ? " for " + p.scope.join(", ") : "";
  $("learn-summary").textContent = learnPlural(p.proposals.length, "proposal") + scope + ", "
    + p.since + " .. " + p.until + ": " + learnPlural(p.flows, "flow") + " judged; "
    + p.allowed_by_rule_flows + " allowed by a rule, "
    + p.denied_by_rule_flows + " denied by a rule, "
    + p.blocked_flows + " by the blocklist (never proposed), "
    + p.proposed_flows + " behind the proposals, "
    + p.gap_flows + " with an end in no group."
    + (p.truncated ? " The list is cut: narrow the window or the groups." : "");
  $("learn-proposals-panel").hidden = false;
}

function selectedProposals() {
  return Array.from(document.querySelectorAll("#learn-proposals input.learn-pick:checked"))
    .map((b) => b.value);
}

// Asks to accept the selected proposals (`all`: every one listed).
function askAccept(all) {
  if (!learn.data) { return; }
  const ids = all ? [] : selectedProposals();
  if (!all && ids.length === 0) { say("Select the proposals to accept first.", true); return; }
  if (all && learn.data.proposals.length === 0) { say("There is no proposal to accept.", true); return; }
  learn.accepting = { all, ids, query: learn.query };
  $("accept-what").textContent = all
    ? "all " + learnPlural(learn.data.proposals.length, "proposal")
    : learnPlural(ids.length, "proposal");
  $("accept-dialog").returnValue = "";
  $("accept-dialog").showModal();
}

async function acceptConfirmed() {
  const a = learn.accepting;
  learn.accepting = null;
  if ($("accept-dialog").returnValue !== "yes" || !a) { return; }
  const body = Object.assign({}, a.query);
  if (a.all) { body.all = true; } else { body.ids = a.ids; }
  try {
    const r = await api("POST", "/api/v1/proposals/accept", body);
    const names = {};
    for (const x of (learn.data ? learn.data.proposals : [])) { names[x.id] = x.src + " \u2192 " + x.dst; }
    for (const acc of r.accepted) {
      const tr = document.querySelector("#learn-proposals tr[data-id='" + CSS.escape(acc.proposal) + "']");
      if (!tr) { continue; }
      tr.classList.add("accepted");
      tr.querySelector("td.draft").textContent = "in the draft as rule " + acc.rule;
      const box = tr.querySelector("input.learn-pick");
      if (box) { box.checked = false; }
    }
    const rules = r.accepted.map((acc) => "rule " + acc.rule + (names[acc.proposal] ? " (" + names[acc.proposal] + ")" : ""));
    say("Accepted into the draft: " + (rules.length ? rules.join(", ") : "nothing")
      + ". The draft differs from the live policy by " + learnPlural(r.diff.changes.length, "change")
      + "; commit it to make them live.");
  } catch (e) { say(e.message, true); }
}

// One dry-run list into its table body; its "None." hint when empty.
function drawDryRun(id, list) {
  const body = $("learn-" + id);
  body.replaceChildren();
  for (const c of list) {
    const tr = document.createElement("tr");
    tr.dataset.src = c.src_groups.join(",");
    tr.dataset.dst = c.dst_groups.join(",");
    tr.dataset.service = service(c.proto, c.port);
    cell(tr, learnGroups(c.src_groups) + " \u2192 " + learnGroups(c.dst_groups));
    cell(tr, service(c.proto, c.port) + (c.service ? " " + c.service : ""));
    cell(tr, c.flows);
    cell(tr, c.pairs);
    cell(tr, c.last_seen);
    cell(tr, learnDecision(c.today));
    cell(tr, learnDecision(c.draft));
    const ex = (c.examples || []).map((e) => learnEnd(e.src) + " \u2192 " + learnEnd(e.dst) + " (" + e.flows + ")");
    cell(tr, ex.join("; "));
    body.appendChild(tr);
  }
  $("learn-no-" + id).hidden = list.length > 0;
}

function learnFlows(list) { return list.reduce((n, c) => n + c.flows, 0); }

async function loadDryRun() {
  const seq = ++learn.drySeq;
  const q = learnQuery();
  const body = {};
  if (q.since) { body.since = q.since; }
  if (q.until) { body.until = q.until; }
  const panel = $("learn-dry-panel");
  panel.dataset.state = "loading";
  try {
    const d = await api("POST", "/api/v1/policy/draft/dry-run", body);
    if (seq !== learn.drySeq) { return; }
    drawDryRun("breaks", d.breaks);
    drawDryRun("opens", d.opens);
    drawDryRun("flagged", d.flagged);
    $("learn-dry-summary").textContent = "The draft against the " + d.today + ", " + d.since + " .. " + d.until
      + ": " + learnPlural(d.flows, "flow") + " judged, " + d.unchanged_flows + " unchanged; "
      + "would break " + learnPlural(learnFlows(d.breaks), "flow") + " in " + learnPlural(d.breaks.length, "change") + ", "
      + "open " + learnPlural(learnFlows(d.opens), "flow") + " in " + learnPlural(d.opens.length, "change") + ", "
      + "flag " + learnPlural(learnFlows(d.flagged), "flow") + " in " + learnPlural(d.flagged.length, "change") + "."
      + (d.truncated ? " The lists are cut: narrow the window." : "")
      + (q.groups ? " (The dry run judges every group.)" : "");
    panel.hidden = false;
    panel.dataset.state = "ready";
  } catch (e) {
    if (seq !== learn.drySeq) { return; }
    panel.dataset.state = "error";
    say(e.message, true);
  }
}

function resetLearn() {
  learn.data = null;
  learn.query = null;
  learn.accepting = null;
  learn.seq++;
  learn.drySeq++;
  for (const id of ["learn-proposals", "learn-gaps", "learn-breaks", "learn-opens", "learn-flagged"]) {
    $(id).replaceChildren();
  }
  $("learn-proposals").dataset.state = "empty";
  $("learn-dry-panel").dataset.state = "empty";
  $("learn-proposals-panel").hidden = true;
  $("learn-dry-panel").hidden = true;
}

document.addEventListener("DOMContentLoaded", () => {
  $("learn-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadProposals(); });
  $("learn-dry-run").addEventListener("click", loadDryRun);
  $("learn-accept").addEventListener("click", () => askAccept(false));
  $("learn-accept-all").addEventListener("click", () => askAccept(true));
  $("accept-dialog").addEventListener("close", acceptConfirmed);
  $("learn-check-all").addEventListener("change", () => {
    for (const b of document.querySelectorAll("#learn-proposals input.learn-pick")) {
      b.checked = $("learn-check-all").checked;
    }
  });
  // console.js's logout() hides the nav: what one token was shown is not
  // left for the next.
  new MutationObserver(() => { if ($("nav").hidden) { resetLearn(); } })
    .observe($("nav"), { attributes: true, attributeFilter: ["hidden"] });
});
