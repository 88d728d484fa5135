/**
 * The status page served at `GET /` on the admin port: one self-contained HTML document (no CDN, no build
 * step, no dependency) that reads `status.json` (relative, so it works behind any host, port or path prefix)
 * about once a second and draws it: rates, collapse ratios, a five-minute chart, hot keys, flights, the cache
 * and the effective configuration.
 *
 * It fits the admin port's content security policy: inline `<style>` and `<script>` only, the chart is
 * inline SVG, and the only request it makes is the same-origin fetch. Every value from the snapshot reaches
 * the DOM through `textContent` or `setAttribute`, never as markup.
 *
 * For tests and scrapers, every value drawn sits in an element whose `data-field` names its JSON path in the
 * snapshot (`sinceStart.requests`, `hotKeys.keys.0.key`, `config.cacheTtl`) and whose `data-value` holds the
 * raw value (a string as it is, anything else as JSON). `document.body.dataset.generatedAt` is the
 * `generatedAt` of the snapshot on screen, and `document.body.dataset.ready` is `"1"` once one was drawn.
 *
 * @module
 */

const STYLE = String.raw`
:root {
  --bg: #f4f5f7; --panel: #fff; --line: #e2e5ea; --grid: #eef0f3; --text: #1c2128; --muted: #69707d;
  --req: #2f6fde; --backend: #e2620e; --follower: #5b9bf5; --cache: #1aa37a;
  --ok: #1a7f4b; --ok-bg: #e3f4ea; --bad: #c62828; --bad-bg: #fde8e8; --warn: #a35f00; --warn-bg: #fdf1dc;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html { background: var(--bg); }
body {
  margin: 0 auto; max-width: 1280px; padding: 16px 20px 24px; color: var(--text);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-variant-numeric: tabular-nums;
}
code, .mono { font-family: var(--mono); font-size: 12px; }
header { display: flex; align-items: center; gap: 14px; flex-wrap: wrap; margin-bottom: 12px; }
h1 { font-size: 20px; margin: 0; letter-spacing: -0.01em; display: flex; align-items: center; gap: 8px; }
h1 svg { display: block; }
.version { font: 12px var(--mono); color: var(--muted); font-weight: normal; }
.facts { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; color: var(--muted); }
.facts b { color: var(--text); font-weight: 600; }
.pill {
  display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
  background: #eceef1; color: var(--muted);
}
.pill.ok { background: var(--ok-bg); color: var(--ok); }
.pill.bad { background: var(--bad-bg); color: var(--bad); }
.pill.warn { background: var(--warn-bg); color: var(--warn); }
.sep { color: #c3c8d0; }
.spacer { flex: 1; }
.updated { color: var(--muted); font-size: 12px; }
#error {
  margin: -4px 0 10px; padding: 5px 10px; border-left: 3px solid var(--bad); background: var(--bad-bg);
  color: var(--bad); font-size: 12px; border-radius: 0 4px 4px 0;
}
.tiles { display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; margin-bottom: 10px; }
.tile, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
.tile { padding: 10px 14px 11px; min-width: 0; }
.tile .label {
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-size: 11px; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); font-weight: 600;
}
.tile .value {
  font-size: 28px; font-weight: 600; line-height: 1.2; margin: 2px 0 1px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis;
}
.tile .value small { font-size: 15px; font-weight: 500; color: var(--muted); margin-left: 2px; }
.tile .sub { color: var(--muted); font-size: 12px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tile .sub b { color: var(--text); font-weight: 600; }
.tile.req { border-top: 3px solid var(--req); }
.tile.backend { border-top: 3px solid var(--backend); }
.tile.ratio { border-top: 3px solid #7b61d1; }
.tile.saved { border-top: 3px solid var(--cache); }
.panel { padding: 10px 14px 12px; margin-bottom: 10px; min-width: 0; }
.panel h2 {
  font-size: 13px; margin: 0 0 8px; font-weight: 600; display: flex; align-items: baseline; gap: 10px;
}
.panel h2 .note { font-weight: normal; color: var(--muted); font-size: 12px; }
.panel h2 .right { margin-left: auto; }
.legend { display: inline-flex; gap: 12px; font-weight: normal; font-size: 12px; color: var(--muted); }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.chart-wrap { position: relative; }
#chart { display: block; width: 100%; height: 230px; }
#chart text { font-size: 11px; fill: var(--muted); }
#tip {
  position: absolute; top: 8px; pointer-events: none; background: rgba(28, 33, 40, 0.92); color: #fff;
  padding: 4px 8px; border-radius: 4px; font-size: 12px; white-space: nowrap;
}
.cols { display: grid; grid-template-columns: minmax(0, 1.9fr) minmax(0, 1fr); gap: 10px; align-items: start; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th {
  text-align: left; font-size: 11px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted);
  font-weight: 600; padding: 4px 6px; border-bottom: 1px solid var(--line); white-space: nowrap;
}
td { padding: 4px 6px; border-bottom: 1px solid var(--grid); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
tr:last-child td { border-bottom: 0; }
.num { text-align: right; }
.rank { color: var(--muted); }
td.rank { text-overflow: clip; }
td.method { font-family: var(--mono); font-size: 12px; }
.bar { display: flex; height: 10px; border-radius: 2px; overflow: hidden; background: var(--grid); }
.bar span { display: block; height: 100%; }
.shares { display: flex; align-items: center; gap: 8px; }
.shares .bar { flex: 1; }
.shares .pct { width: 44px; text-align: right; color: var(--muted); font-size: 12px; }
.empty { color: var(--muted); padding: 10px 6px; }
.stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px 12px; }
.stat .k { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: 0.04em; font-weight: 600; }
.stat .v { font-size: 18px; font-weight: 600; }
.flight-summary { display: flex; gap: 24px; margin-bottom: 6px; }
.config { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 0 24px; }
.config div { display: flex; gap: 10px; padding: 3px 0; border-bottom: 1px solid var(--grid); min-width: 0; }
.config dt { color: var(--muted); width: 170px; flex: none; overflow-wrap: anywhere; }
.config dd { margin: 0; font-family: var(--mono); font-size: 12px; overflow-wrap: anywhere; min-width: 0; }
.config dd.none { color: #a3a9b3; font-family: inherit; }
footer { color: var(--muted); font-size: 12px; display: flex; gap: 14px; }
a { color: var(--req); text-decoration: none; }
a:hover { text-decoration: underline; }
@media (max-width: 1100px) {
  .tiles { grid-template-columns: repeat(3, 1fr); }
  .cols { grid-template-columns: minmax(0, 1fr); }
}
@media (max-width: 800px) {
  .tiles { grid-template-columns: repeat(2, 1fr); }
  .config { grid-template-columns: minmax(0, 1fr); }
}
`;

const BODY = String.raw`
<header>
  <h1><svg width="22" height="22" viewBox="0 0 22 22" aria-hidden="true"><path d="M2 4h6l5 7-5 7H2" fill="none" stroke="#2f6fde" stroke-width="2.2" stroke-linejoin="round"/><path d="M13 11h7" stroke="#e2620e" stroke-width="2.6" stroke-linecap="round"/></svg>collapser <span class="version" data-field="version">…</span></h1>
  <div class="facts">
    <span>backend <b class="mono" data-field="backend.target">…</b></span>
    <span class="pill" data-field="backend.ready">…</span>
    <span class="pill" data-field="draining">…</span>
    <span class="sep">·</span>
    <span>up <b data-field="uptimeSeconds">…</b></span>
  </div>
  <span class="spacer"></span>
  <span class="updated" id="updated">loading…</span>
</header>
<div id="error" role="status" hidden></div>

<section class="tiles">
  <div class="tile req">
    <div class="label">Requests / s</div>
    <div class="value" data-field="now.requestsPerSecond">—</div>
    <div class="sub"><b data-field="sinceStart.requests">—</b> since start</div>
  </div>
  <div class="tile backend">
    <div class="label">Backend calls / s</div>
    <div class="value" data-field="now.backendCallsPerSecond">—</div>
    <div class="sub"><b data-field="sinceStart.backendCalls">—</b> since start</div>
  </div>
  <div class="tile ratio">
    <div class="label">Collapse ratio now</div>
    <div class="value" data-field="now.collapseRatio">—</div>
    <div class="sub">over the last <b data-field="now.windowSeconds">—</b></div>
  </div>
  <div class="tile ratio">
    <div class="label">Collapse ratio total</div>
    <div class="value" data-field="sinceStart.collapseRatio">—</div>
    <div class="sub"><b data-field="sinceStart.collapsible">—</b> collapsible calls</div>
  </div>
  <div class="tile saved">
    <div class="label">Calls saved / s</div>
    <div class="value" data-field="now.savedPerSecond">—</div>
    <div class="sub">followers + cache hits</div>
  </div>
  <div class="tile saved">
    <div class="label">Calls saved total</div>
    <div class="value" data-field="sinceStart.saved">—</div>
    <div class="sub"><b id="saved-share">—</b> of requests</div>
  </div>
</section>

<section class="panel">
  <h2><span id="chart-title">Traffic</span>
    <span class="note">requests and backend calls per second · log scale</span>
    <span class="legend right">
      <span><span class="sw" style="background: var(--req)"></span>requests / s</span>
      <span><span class="sw" style="background: var(--backend)"></span>backend calls / s</span>
    </span>
  </h2>
  <div class="chart-wrap">
    <svg id="chart" role="img" aria-label="requests and backend calls per second over the last 5 minutes"></svg>
    <div id="tip" hidden></div>
  </div>
</section>

<div class="cols">
  <section class="panel">
    <h2>Hot keys <span class="note" id="hot-note"></span>
      <span class="legend right" id="hot-legend">
        <span><span class="sw" style="background: var(--backend)"></span>leader</span>
        <span><span class="sw" style="background: var(--follower)"></span>follower</span>
        <span><span class="sw" style="background: var(--cache)"></span>cache hit</span>
      </span>
    </h2>
    <table>
      <colgroup><col style="width: 32px"><col><col style="width: 118px"><col style="width: 84px"><col style="width: 176px"><col style="width: 104px"></colgroup>
      <thead><tr><th class="rank">#</th><th>Method</th><th>Key</th><th class="num">Calls / s</th><th>Served as <span style="text-transform: none; font-weight: normal">(% shared)</span></th><th class="num">Last backend</th></tr></thead>
      <tbody id="hot-keys"></tbody>
    </table>
  </section>
  <div>
    <section class="panel">
      <h2>Flights in progress <span class="note">shared backend calls now</span></h2>
      <div class="flight-summary">
        <div class="stat"><div class="k">In progress</div><div class="v" data-field="flights.inProgress">—</div></div>
        <div class="stat"><div class="k">Callers waiting</div><div class="v" data-field="flights.waiting">—</div></div>
      </div>
      <table>
        <colgroup><col><col style="width: 104px"><col style="width: 64px"><col style="width: 68px"></colgroup>
        <thead><tr><th>Method</th><th>Key</th><th class="num">Waiters</th><th class="num">Age</th></tr></thead>
        <tbody id="flights"></tbody>
      </table>
    </section>
    <section class="panel">
      <h2>Cache</h2>
      <div class="stats">
        <div class="stat"><div class="k">Entries</div><div class="v" data-field="cache.entries">—</div></div>
        <div class="stat"><div class="k">Size</div><div class="v" data-field="cache.bytes">—</div></div>
        <div class="stat"><div class="k">Hit ratio</div><div class="v" id="hit-ratio">—</div></div>
        <div class="stat"><div class="k">Hits</div><div class="v" data-field="cache.hits">—</div></div>
        <div class="stat"><div class="k">Misses</div><div class="v" data-field="cache.misses">—</div></div>
        <div class="stat"><div class="k">Evictions</div><div class="v" data-field="cache.evictions">—</div></div>
        <div class="stat"><div class="k">Refreshes</div><div class="v" data-field="cache.refreshes">—</div></div>
        <div class="stat"><div class="k">Shared tier</div><div class="v" id="tier-state">—</div></div>
        <div class="stat"><div class="k">From the fleet</div><div class="v" id="tier-saved">—</div></div>
      </div>
    </section>
  </div>
</div>

<section class="panel">
  <h2>Configuration <span class="note">effective, credentials masked</span></h2>
  <dl class="config" id="config"></dl>
</section>

<footer>
  <span>Raw data:</span>
  <a href="status.json">status.json</a><a href="metrics">metrics</a><a href="health">health</a><a href="ready">ready</a>
  <span class="spacer"></span><span>refreshed every second</span>
</footer>
`;

// The script avoids template literals and `${`, so this module's own template literal leaves it as it is.
const SCRIPT = String.raw`
"use strict";
(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 5000;
  const HISTORY_SECONDS = 300;
  const SVG = "http://www.w3.org/2000/svg";
  const nf = new Intl.NumberFormat("en-US");
  const body = document.body;

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const int = (v) => isNum(v) ? nf.format(Math.round(v)) : "—";
  const rate = (v) => {
    if (!isNum(v)) return "—";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a < 0.01) return "<0.01";
    if (a < 0.995) return v.toFixed(2);
    if (a < 9.95) return v.toFixed(1);
    return nf.format(Math.round(v));
  };
  const ratio = (v) => !isNum(v) ? "—" : (v < 10 ? v.toFixed(1) : nf.format(Math.round(v))) + ":1";
  const ms = (v) => {
    if (!isNum(v)) return "—";
    if (v < 9.95) return v.toFixed(1) + " ms";
    if (v < 1000) return Math.round(v) + " ms";
    return (v / 1000).toFixed(v < 9995 ? 2 : 1) + " s";
  };
  const bytes = (v) => {
    if (!isNum(v)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + " " + units[i];
  };
  const duration = (s) => {
    if (!isNum(s)) return "—";
    s = Math.floor(s);
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor(s / 60) % 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s / 3600) % 24 + "h";
  };
  const percent = (v) => !isNum(v) ? "—" : (v > 0 && v < 0.001 ? "<0.1" : (v * 100).toFixed(v >= 0.9995 || v === 0 ? 0 : 1)) + "%";
  const seconds = (v) => !isNum(v) ? "—" : (v < 9.95 ? v.toFixed(1) : String(Math.round(v))) + " s";
  const clock = (iso) => {
    const d = new Date(iso);
    return isNaN(d) ? "—" : d.toLocaleTimeString("en-GB", { hour12: false });
  };
  const rawValue = (v) => typeof v === "string" ? v : JSON.stringify(v === undefined ? null : v);

  /** An element with text (never markup). */
  const h = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  /** Marks node as showing the value at JSON path field. */
  const mark = (node, field, value, text) => {
    node.setAttribute("data-field", field);
    node.setAttribute("data-value", rawValue(value));
    node.textContent = text;
    return node;
  };
  const get = (object, path) => path.split(".").reduce((o, k) => o == null ? undefined : o[k], object);
  const fixed = new Map([...document.querySelectorAll("[data-field]")].map((n) => [n.getAttribute("data-field"), n]));
  const show = (snap, field, format) => {
    const value = get(snap, field);
    mark(fixed.get(field), field, value, format(value));
  };
  const pill = (field, value, text, kind) => {
    const node = fixed.get(field);
    mark(node, field, value, text);
    node.className = "pill " + kind;
  };

  function drawHeader(s) {
    show(s, "version", (v) => v ? "v" + v : "—");
    show(s, "backend.target", (v) => v || "—");
    const ready = get(s, "backend.ready");
    if (ready === true) pill("backend.ready", ready, "ready", "ok");
    else if (ready === false) pill("backend.ready", ready, "unreachable", "bad");
    else pill("backend.ready", ready, "readiness unknown", "");
    const draining = s.draining === true;
    pill("draining", s.draining, draining ? "draining" : "serving", draining ? "warn" : "ok");
    show(s, "uptimeSeconds", duration);
    document.getElementById("updated").textContent = "updated " + clock(s.generatedAt);
    document.title = "collapser · " + ratio(get(s, "now.collapseRatio")) + " · " + rate(get(s, "now.requestsPerSecond")) + " req/s";
  }

  function drawTiles(s) {
    show(s, "now.requestsPerSecond", rate);
    show(s, "now.backendCallsPerSecond", rate);
    show(s, "now.collapseRatio", ratio);
    show(s, "now.windowSeconds", seconds);
    show(s, "now.savedPerSecond", rate);
    show(s, "sinceStart.requests", int);
    show(s, "sinceStart.backendCalls", int);
    show(s, "sinceStart.collapseRatio", ratio);
    show(s, "sinceStart.collapsible", int);
    show(s, "sinceStart.saved", int);
    const requests = get(s, "sinceStart.requests");
    document.getElementById("saved-share").textContent = requests > 0 ? percent(get(s, "sinceStart.saved") / requests) : "—";
  }

  // --- the chart ---------------------------------------------------------------------------------------
  let history = { requests: [], backend: [] };
  let hoverX = null;
  const chart = document.getElementById("chart");
  const tip = document.getElementById("tip");
  const M = { left: 48, right: 12, top: 10, bottom: 22 };
  const scale = (v) => Math.log10(1 + Math.max(0, v));
  const tickLabel = (v) => v >= 1e6 ? v / 1e6 + "M" : v >= 1e3 ? v / 1e3 + "k" : String(v);
  const svg = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const geometry = () => {
    const width = chart.clientWidth || 800;
    const height = chart.clientHeight || 230;
    const all = history.requests.concat(history.backend).filter(isNum);
    let top = 10;
    while (top < Math.max(0, ...all)) top *= 10;
    // The whole history when it is shorter than five minutes (just after start), in whole minutes.
    const span = Math.min(HISTORY_SECONDS, Math.max(60, Math.ceil(history.requests.length / 60) * 60));
    const x = (age) => M.left + (width - M.left - M.right) * (1 - age / span);
    const y = (v) => height - M.bottom - (height - M.top - M.bottom) * scale(v) / scale(top);
    return { width, height, top, span, x, y };
  };

  function drawChart() {
    const g = geometry();
    chart.setAttribute("viewBox", "0 0 " + g.width + " " + g.height);
    const nodes = [];
    for (let v = 0; v <= g.top; v = v === 0 ? 1 : v * 10) {
      const y = Math.round(g.y(v)) + 0.5;
      nodes.push(svg("line", { x1: M.left, x2: g.width - M.right, y1: y, y2: y, stroke: v === 0 ? "#c9ced6" : "#eef0f3" }));
      nodes.push(svg("text", { x: M.left - 6, y: y + 4, "text-anchor": "end" }, tickLabel(v)));
    }
    const step = g.span <= 60 ? 10 : g.span <= 180 ? 30 : 60;
    for (let age = g.span; age >= 0; age -= step) {
      const x = Math.round(g.x(age)) + 0.5;
      nodes.push(svg("line", { x1: x, x2: x, y1: M.top, y2: g.height - M.bottom, stroke: "#f3f4f6" }));
      const anchor = age === g.span ? "start" : age === 0 ? "end" : "middle";
      const label = age === 0 ? "now" : age % 60 === 0 ? "−" + age / 60 + " min" : "−" + age + " s";
      nodes.push(svg("text", { x, y: g.height - 6, "text-anchor": anchor }, label));
    }
    document.getElementById("chart-title").textContent = "Traffic, last " + (g.span === 60 ? "minute" : g.span / 60 + " minutes");
    const series = (values, color, fill) => {
      if (values.length === 0) return;
      const points = values.map((v, i) => [g.x(values.length - 1 - i), g.y(isNum(v) ? v : 0)]);
      const line = points.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1)).join("");
      const base = g.y(0).toFixed(1);
      const first = points[0][0].toFixed(1);
      const last = points[points.length - 1][0].toFixed(1);
      nodes.push(svg("path", { d: line + "L" + last + "," + base + "L" + first + "," + base + "Z", fill, stroke: "none" }));
      nodes.push(svg("path", { d: line, fill: "none", stroke: color, "stroke-width": 1.6, "stroke-linejoin": "round" }));
    };
    series(history.requests, "#2f6fde", "rgba(47, 111, 222, 0.12)");
    series(history.backend, "#e2620e", "rgba(226, 98, 14, 0.14)");
    if (history.requests.length === 0) {
      nodes.push(svg("text", { x: g.width / 2, y: g.height / 2, "text-anchor": "middle" }, "collecting the first samples…"));
    }
    if (hoverX !== null) nodes.push(...hover(g));
    chart.replaceChildren(...nodes);
  }

  function hover(g) {
    const n = history.requests.length;
    const age = Math.round((1 - (hoverX - M.left) / (g.width - M.left - M.right)) * g.span);
    const i = n - 1 - age;
    if (age < 0 || i < 0 || i >= n) {
      tip.hidden = true;
      return [];
    }
    const x = g.x(age);
    tip.hidden = false;
    tip.textContent = (age === 0 ? "now" : "−" + age + " s") + " · " + rate(history.requests[i]) + " req/s · " +
      rate(history.backend[i]) + " backend calls/s";
    tip.style.left = Math.min(Math.max(x + 10, 0), g.width - tip.offsetWidth) + "px";
    return [
      svg("line", { x1: x, x2: x, y1: M.top, y2: g.height - M.bottom, stroke: "#9aa1ad", "stroke-dasharray": "3 3" }),
      svg("circle", { cx: x, cy: g.y(history.requests[i] || 0), r: 3, fill: "#2f6fde" }),
      svg("circle", { cx: x, cy: g.y(history.backend[i] || 0), r: 3, fill: "#e2620e" }),
    ];
  }
  chart.addEventListener("mousemove", (e) => {
    hoverX = e.clientX - chart.getBoundingClientRect().left;
    drawChart();
  });
  chart.addEventListener("mouseleave", () => {
    hoverX = null;
    tip.hidden = true;
    drawChart();
  });
  window.addEventListener("resize", drawChart);

  // --- tables ------------------------------------------------------------------------------------------
  const emptyRow = (columns, text) => {
    const tr = h("tr");
    const td = tr.appendChild(h("td", "empty", text));
    td.colSpan = columns;
    return tr;
  };

  function drawHotKeys(s) {
    const tbody = document.getElementById("hot-keys");
    const note = document.getElementById("hot-note");
    const hot = s.hotKeys || {};
    const keys = Array.isArray(hot.keys) ? hot.keys : [];
    const rows = [];
    document.getElementById("hot-legend").hidden = hot.enabled === false;
    if (hot.enabled === false) {
      note.textContent = "";
      rows.push(emptyRow(6, "Hot-key tracking is off (--hot-keys 0); start with --hot-keys N to see the busiest keys."));
    } else {
      note.textContent = keys.length > 0 ? "top " + keys.length + " by calls, last 5–10 s" : "";
      keys.forEach((k, i) => {
        const p = "hotKeys.keys." + i + ".";
        const tr = h("tr");
        tr.appendChild(h("td", "rank", String(i + 1)));
        const method = mark(h("td", "method"), p + "method", k.method, k.method);
        method.title = k.method;
        tr.appendChild(method);
        tr.appendChild(h("td")).appendChild(mark(h("code"), p + "key", k.key, k.key));
        tr.appendChild(mark(h("td", "num"), p + "callsPerSecond", k.callsPerSecond, rate(k.callsPerSecond)));
        const shares = h("div", "shares");
        const bar = h("div", "bar");
        for (const [role, color] of [["leader", "var(--backend)"], ["follower", "var(--follower)"], ["cache", "var(--cache)"]]) {
          const seg = mark(h("span"), p + role, k[role], "");
          seg.style.width = (isNum(k[role]) ? k[role] * 100 : 0) + "%";
          seg.style.background = color;
          seg.title = role + ": " + percent(k[role]);
          bar.appendChild(seg);
        }
        shares.appendChild(bar);
        shares.appendChild(h("span", "pct", percent((k.follower || 0) + (k.cache || 0))));
        shares.title = "leader " + percent(k.leader) + " · follower " + percent(k.follower) + " · cache " + percent(k.cache);
        tr.appendChild(h("td")).appendChild(shares);
        tr.appendChild(mark(h("td", "num"), p + "lastBackendMs", k.lastBackendMs ?? null, ms(k.lastBackendMs)));
        rows.push(tr);
      });
      if (keys.length === 0) rows.push(emptyRow(6, "No collapsible calls in the last few seconds."));
    }
    tbody.replaceChildren(...rows);
  }

  function drawFlights(s) {
    show(s, "flights.inProgress", int);
    show(s, "flights.waiting", int);
    const top = Array.isArray(get(s, "flights.top")) ? s.flights.top : [];
    const rows = top.slice(0, 10).map((f, i) => {
      const p = "flights.top." + i + ".";
      const tr = h("tr");
      const method = mark(h("td", "method"), p + "method", f.method, f.method || "—");
      method.title = f.method;
      tr.appendChild(method);
      tr.appendChild(h("td")).appendChild(mark(h("code"), p + "key", f.key, f.key));
      tr.appendChild(mark(h("td", "num"), p + "waiters", f.waiters, int(f.waiters)));
      tr.appendChild(mark(h("td", "num"), p + "ageMs", f.ageMs, ms(f.ageMs)));
      return tr;
    });
    if (top.length > 10) rows.push(emptyRow(4, "and " + (top.length - 10) + " more"));
    if (top.length === 0) rows.push(emptyRow(4, "No shared backend call running."));
    document.getElementById("flights").replaceChildren(...rows);
  }

  function drawCache(s) {
    for (const f of ["entries", "hits", "misses", "evictions", "refreshes"]) show(s, "cache." + f, int);
    show(s, "cache.bytes", bytes);
    const hits = get(s, "cache.hits");
    const lookups = hits + get(s, "cache.misses");
    document.getElementById("hit-ratio").textContent = lookups > 0 ? percent(hits / lookups) : "—";
    const tier = s.sharedTier;
    document.getElementById("tier-state").textContent = tier ? (tier.up ? "up" : "down") : "off";
    document.getElementById("tier-saved").textContent = tier ? int(tier.fromFleet) : "—";
  }

  function configText(v) {
    if (v === null || v === undefined || v === "") return null;
    if (Array.isArray(v)) return v.length === 0 ? null : v.map((x) => typeof x === "string" ? x : JSON.stringify(x)).join(", ");
    if (typeof v === "boolean") return v ? "on" : "off";
    if (typeof v === "object") return JSON.stringify(v);
    return typeof v === "number" ? nf.format(v) : String(v);
  }

  function drawConfig(s) {
    const config = s.config && typeof s.config === "object" ? s.config : {};
    const items = Object.keys(config).map((key) => {
      const row = h("div");
      row.appendChild(h("dt", "", key));
      const text = configText(config[key]);
      row.appendChild(mark(h("dd", text === null ? "none" : ""), "config." + key, config[key], text === null ? "none" : text));
      return row;
    });
    document.getElementById("config").replaceChildren(...items);
  }

  // --- polling -----------------------------------------------------------------------------------------
  let lastDrawn = null;
  let failingSince = null;

  function draw(s) {
    drawHeader(s);
    drawTiles(s);
    const hist = s.history || {};
    history = {
      requests: (Array.isArray(hist.requestsPerSecond) ? hist.requestsPerSecond : []).slice(-HISTORY_SECONDS),
      backend: (Array.isArray(hist.backendCallsPerSecond) ? hist.backendCallsPerSecond : []).slice(-HISTORY_SECONDS),
    };
    drawChart();
    drawHotKeys(s);
    drawFlights(s);
    drawCache(s);
    drawConfig(s);
    body.dataset.generatedAt = String(s.generatedAt);
    body.dataset.ready = "1";
  }

  function failed(message) {
    if (failingSince === null) failingSince = new Date();
    const error = document.getElementById("error");
    error.hidden = false;
    error.textContent = "Cannot load status.json (" + message + ") since " + failingSince.toLocaleTimeString("en-GB", { hour12: false }) +
      "; retrying every second." + (lastDrawn ? " Showing the data of " + clock(lastDrawn) + "." : "");
    document.getElementById("updated").textContent = lastDrawn ? "stale: " + clock(lastDrawn) : "no data yet";
  }

  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch("status.json", { cache: "no-store", signal: abort.signal });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const snapshot = await response.json();
      if (!snapshot || typeof snapshot !== "object") throw new Error("not a status snapshot");
      draw(snapshot);
      lastDrawn = snapshot.generatedAt;
      failingSince = null;
      document.getElementById("error").hidden = true;
    } catch (err) {
      // fetch() rejects with a TypeError when nothing answers (the proxy is restarting, or gone).
      const reason = err instanceof TypeError ? "no answer" : err && err.name === "AbortError" ? "timed out" : String(err && err.message || err);
      failed(reason);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
`;

/** The page's HTML: one document, its style and script inline. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>collapser</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;
