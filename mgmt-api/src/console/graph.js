// bulkhead console: the access graph (GET /api/v1/graph) drawn with the
// vendored cytoscape.js. Clicking an edge lists its flows in the flows view
// (flows.js). Labels are cytoscape text on a canvas, never HTML.
"use strict";

// The graph on screen: the cytoscape instance, the API's answer and the
// query that produced it. The browser test reads `graph.cy`.
const graph = { cy: null, data: null, query: null, seq: 0 };

const VERDICT_COLOURS = { allow: "#2e7d32", deny: "#c62828", "would-deny": "#f9a825" };
const PROTO_NAMES = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp" };
// Protocols whose edges carry the responder's port (graph.rs does the same).
const PORTED = new Set([6, 17, 132]);

function protoName(p) { return PROTO_NAMES[p] || String(p); }

// "tcp/5432", or "icmp" for a protocol without ports.
function service(proto, port) {
  return PORTED.has(proto) ? protoName(proto) + "/" + port : protoName(proto);
}

// What `from`/`to` of /api/v1/flows take for a node of the graph: a group,
// a group-level network (internet or private), else the MAC or address.
function selector(node) {
  if (node.kind === "group") { return "group:" + node.id; }
  if (node.kind === "external" && (node.id === "internet" || node.id === "private")) {
    return "external:" + node.id;
  }
  return node.id;
}

function nodeLabel(node) {
  if (node.kind === "group") { return node.id; }
  if (node.kind === "external") { return node.id; }
  return node.name || node.id;
}

// The window controls as API parameters: an age, or the custom since/until.
function graphWindow() {
  const w = $("graph-window").value;
  if (w !== "custom") { return { since: w, until: "" }; }
  return { since: $("graph-since").value.trim(), until: $("graph-until").value.trim() };
}

function graphStyle() {
  return [
    { selector: "node", style: {
      "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
      "background-color": "#2456a6", "width": 26, "height": 26, "color": "#1b1f24",
      "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 2,
    } },
    { selector: "node[kind = 'group']", style: { "shape": "round-rectangle", "width": 34, "background-color": "#5c6bc0" } },
    { selector: "node[kind = 'ungrouped']", style: { "background-color": "#78909c" } },
    { selector: "node[kind = 'external']", style: { "shape": "diamond", "background-color": "#8d6e63" } },
    { selector: "edge", style: {
      "curve-style": "bezier", "target-arrow-shape": "triangle", "arrow-scale": 1.1,
      "width": "data(width)", "line-color": "data(colour)", "target-arrow-color": "data(colour)",
      "label": "data(label)", "font-size": 10, "text-rotation": "autorotate",
      "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 2,
    } },
    { selector: "edge:selected", style: { "overlay-color": "#2456a6", "overlay-opacity": 0.15 } },
  ];
}

function showGraph() {
  if (graph.cy) { graph.cy.resize(); return; }
  loadGraph();
}

async function loadGraph() {
  const level = $("graph-level").value;
  const win = graphWindow();
  const q = new URLSearchParams({ level });
  if (win.since) { q.set("since", win.since); }
  if (win.until) { q.set("until", win.until); }
  const box = $("graph");
  box.dataset.state = "loading";
  const seq = ++graph.seq; // only the last request draws
  try {
    const g = await api("GET", "/api/v1/graph?" + q.toString());
    if (seq === graph.seq) { drawGraph(g, level); }
  } catch (e) {
    if (seq !== graph.seq) { return; }
    box.dataset.state = "error";
    $("graph-summary").textContent = "";
    say(e.message, true);
  }
}

function drawGraph(g, level) {
  const box = $("graph");
  if (graph.cy) { graph.cy.destroy(); graph.cy = null; }
  graph.data = g;
  graph.query = { level, since: g.since, until: g.until };
  const flows = g.edges.reduce((n, e) => n + e.flows, 0);
  $("graph-summary").textContent = g.nodes.length + " nodes, " + g.edges.length + " edges, " +
    flows + " flows from " + g.since + " to " + g.until +
    (g.truncated ? " (cut to the busiest edges)" : "") +
    (g.edges.length === 0 ? ": no traffic in this window." : "");
  const elements = [];
  g.nodes.forEach((n, i) => {
    elements.push({ group: "nodes", data: { id: "n" + i, kind: n.kind, label: nodeLabel(n) } });
  });
  g.edges.forEach((e, i) => {
    elements.push({ group: "edges", data: {
      id: "e" + i, source: "n" + e.src, target: "n" + e.dst, verdict: e.verdict,
      colour: VERDICT_COLOURS[e.verdict] || "#777777",
      width: Math.min(8, 1.5 + Math.log10(1 + e.flows) * 2),
      label: service(e.proto, e.port) + " \u00d7" + e.flows,
    } });
  });
  box.dataset.nodes = String(g.nodes.length);
  box.dataset.edges = String(g.edges.length);
  const cy = cytoscape({ container: box, elements, style: graphStyle(), layout: { name: "preset" },
    wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 4 });
  graph.cy = cy;
  cy.on("tap", "edge", (ev) => edgeFlows(Number(ev.target.id().slice(1))));
  const layout = cy.layout({ name: "cose", animate: false, randomize: false, padding: 30,
    nodeRepulsion: () => 400000, idealEdgeLength: () => 120 });
  layout.one("layoutstop", () => { cy.fit(undefined, 30); box.dataset.state = "ready"; });
  layout.run();
}

// The flows behind edge `i`: the flows view, filtered to its ends, service,
// verdict and the graph's window.
function edgeFlows(i) {
  const g = graph.data;
  const e = g && g.edges[i];
  if (!e) { return; }
  const src = g.nodes[e.src];
  const dst = g.nodes[e.dst];
  openFlows({
    from: selector(src), to: selector(dst), verdict: e.verdict, reason: "",
    proto: String(e.proto), port: PORTED.has(e.proto) ? String(e.port) : "",
    since: graph.query.since, until: graph.query.until,
  }, nodeLabel(src) + " \u2192 " + nodeLabel(dst) + ", " + service(e.proto, e.port) + ", " + e.verdict);
}

document.addEventListener("DOMContentLoaded", () => {
  $("graph-form").addEventListener("submit", (ev) => { ev.preventDefault(); say(""); loadGraph(); });
  $("graph-window").addEventListener("change", () => {
    const custom = $("graph-window").value === "custom";
    $("graph-custom").hidden = !custom;
    if (!custom) { loadGraph(); }
  });
  $("graph-level").addEventListener("change", () => loadGraph());
});

// Logging out forgets the graph.
function resetGraph() {
  if (graph.cy) { graph.cy.destroy(); }
  graph.cy = null; graph.data = null; graph.query = null; graph.seq++;
  const box = $("graph");
  box.dataset.state = "empty";
  delete box.dataset.nodes;
  delete box.dataset.edges;
  $("graph-summary").textContent = "";
}
