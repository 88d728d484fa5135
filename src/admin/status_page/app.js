"use strict";
(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 5000;
  const HISTORY_SECONDS = 300;
  const SVG = "http://www.w3.org/2000/svg";
  const nf = new Intl.NumberFormat("en-US");
  const body = document.body;

  const { isNum, int, rate, ratio, ms, bytes, duration, percent, seconds, clock, rawValue } =
    globalThis.collapserFormat;

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
  const fixed = new Map(
    [...document.querySelectorAll("[data-field]")].map((n) => [n.getAttribute("data-field"), n]),
  );
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
    document.title = "collapser · " + ratio(get(s, "now.collapseRatio")) + " · " +
      rate(get(s, "now.requestsPerSecond")) + " req/s";
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
    document.getElementById("saved-share").textContent = requests > 0
      ? percent(get(s, "sinceStart.saved") / requests)
      : "—";
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
      nodes.push(
        svg("line", {
          x1: M.left,
          x2: g.width - M.right,
          y1: y,
          y2: y,
          stroke: v === 0 ? "#c9ced6" : "#eef0f3",
        }),
      );
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
    document.getElementById("chart-title").textContent = "Traffic, last " +
      (g.span === 60 ? "minute" : g.span / 60 + " minutes");
    const series = (values, color, fill) => {
      if (values.length === 0) return;
      const points = values.map((v, i) => [g.x(values.length - 1 - i), g.y(isNum(v) ? v : 0)]);
      const line = points.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1)).join("");
      const base = g.y(0).toFixed(1);
      const first = points[0][0].toFixed(1);
      const last = points[points.length - 1][0].toFixed(1);
      nodes.push(
        svg("path", {
          d: line + "L" + last + "," + base + "L" + first + "," + base + "Z",
          fill,
          stroke: "none",
        }),
      );
      nodes.push(
        svg("path", {
          d: line,
          fill: "none",
          stroke: color,
          "stroke-width": 1.6,
          "stroke-linejoin": "round",
        }),
      );
    };
    series(history.requests, "#2f6fde", "rgba(47, 111, 222, 0.12)");
    series(history.backend, "#e2620e", "rgba(226, 98, 14, 0.14)");
    if (history.requests.length === 0) {
      nodes.push(
        svg(
          "text",
          { x: g.width / 2, y: g.height / 2, "text-anchor": "middle" },
          "collecting the first samples…",
        ),
      );
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
    tip.textContent = (age === 0 ? "now" : "−" + age + " s") + " · " + rate(history.requests[i]) +
      " req/s · " +
      rate(history.backend[i]) + " backend calls/s";
    tip.style.left = Math.min(Math.max(x + 10, 0), g.width - tip.offsetWidth) + "px";
    return [
      svg("line", {
        x1: x,
        x2: x,
        y1: M.top,
        y2: g.height - M.bottom,
        stroke: "#9aa1ad",
        "stroke-dasharray": "3 3",
      }),
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
  globalThis.addEventListener("resize", drawChart);

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
      rows.push(
        emptyRow(
          6,
          "Hot-key tracking is off (--hot-keys 0); start with --hot-keys N to see the busiest keys.",
        ),
      );
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
        for (
          const [role, color] of [["leader", "var(--backend)"], ["follower", "var(--follower)"], [
            "cache",
            "var(--cache)",
          ]]
        ) {
          const seg = mark(h("span"), p + role, k[role], "");
          seg.style.width = (isNum(k[role]) ? k[role] * 100 : 0) + "%";
          seg.style.background = color;
          seg.title = role + ": " + percent(k[role]);
          bar.appendChild(seg);
        }
        shares.appendChild(bar);
        shares.appendChild(h("span", "pct", percent((k.follower || 0) + (k.cache || 0))));
        shares.title = "leader " + percent(k.leader) + " · follower " + percent(k.follower) + " · cache " +
          percent(k.cache);
        tr.appendChild(h("td")).appendChild(shares);
        tr.appendChild(
          mark(h("td", "num"), p + "lastBackendMs", k.lastBackendMs ?? null, ms(k.lastBackendMs)),
        );
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

  const { drawAddresses, drawPurges } = globalThis.collapserPanels({
    h,
    mark,
    get,
    show,
    int,
    ms,
    clock,
    isNum,
    emptyRow,
  });

  function configText(v) {
    if (v === null || v === undefined || v === "") return null;
    if (Array.isArray(v)) {
      return v.length === 0 ? null : v.map((x) => typeof x === "string" ? x : JSON.stringify(x)).join(", ");
    }
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
      row.appendChild(
        mark(
          h("dd", text === null ? "none" : ""),
          "config." + key,
          config[key],
          text === null ? "none" : text,
        ),
      );
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
      backend: (Array.isArray(hist.backendCallsPerSecond) ? hist.backendCallsPerSecond : []).slice(
        -HISTORY_SECONDS,
      ),
    };
    drawChart();
    drawHotKeys(s);
    drawFlights(s);
    drawCache(s);
    drawAddresses(s);
    drawPurges(s);
    drawConfig(s);
    body.dataset.generatedAt = String(s.generatedAt);
    body.dataset.ready = "1";
  }

  function failed(message) {
    if (failingSince === null) failingSince = new Date();
    const error = document.getElementById("error");
    error.hidden = false;
    error.textContent = "Cannot load status.json (" + message + ") since " +
      failingSince.toLocaleTimeString("en-GB", { hour12: false }) +
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
      const reason = err instanceof TypeError
        ? "no answer"
        : err && err.name === "AbortError"
        ? "timed out"
        : String(err && err.message || err);
      failed(reason);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
