"use strict";
// Two panels of the status page: the backend's addresses and the purges. Given app.js's helpers, through one
// global (the page is classic inline scripts, no modules: it has to fit the admin port's CSP).
globalThis.collapserPanels = ({ h, mark, get, show, int, ms, clock, isNum, emptyRow }) => {
  const STATE_PILL = { active: "ok", ejected: "bad", draining: "warn" };

  function drawAddresses(s) {
    const list = get(s, "backend.addresses");
    const rows = (Array.isArray(list) ? list : []).map((a, i) => {
      const p = "backend.addresses." + i + ".";
      const tr = h("tr");
      const named = a.address + (a.name ? " (" + a.name + ")" : "");
      tr.appendChild(mark(h("td", "method"), p + "address", a.address, named));
      const state = a.state + (isNum(a.ejectedForMs) ? " · " + ms(a.ejectedForMs) : "");
      const pill = h("span", "pill " + (STATE_PILL[a.state] || ""));
      tr.appendChild(h("td")).appendChild(mark(pill, p + "state", a.state, state));
      for (const f of ["inflight", "calls", "errors", "ejections"]) {
        tr.appendChild(mark(h("td", "num"), p + f, a[f], int(a[f])));
      }
      return tr;
    });
    if (rows.length === 0) {
      rows.push(
        emptyRow(6, list === null ? "One address: the backend target above." : "No address resolved."),
      );
    }
    document.getElementById("addresses").replaceChildren(...rows);
  }

  function drawPurges(s) {
    show(s, "purges.total", int);
    show(s, "purges.dropped", int);
    const purges = s.purges || {};
    document.getElementById("purge-note").textContent = purges.enabled
      ? "POST /purge with the admin token · last 10"
      : "off: start the proxy with --admin-token to purge";
    const recent = Array.isArray(purges.recent) ? purges.recent : [];
    const rows = recent.map((p, i) => {
      const f = "purges.recent." + i + ".";
      const tr = h("tr");
      tr.appendChild(mark(h("td"), f + "at", p.at, clock(p.at)));
      tr.appendChild(mark(h("td"), f + "kind", p.kind, p.kind));
      const value = mark(h("td", "method"), f + "value", p.value, p.value);
      value.title = p.value;
      tr.appendChild(value);
      const from = p.origin === "fleet" ? "fleet" : "this proxy";
      tr.appendChild(
        mark(h("td"), f + "origin", p.origin, isNum(p.fleetSeq) ? from + " #" + p.fleetSeq : from),
      );
      tr.appendChild(mark(h("td", "num"), f + "dropped", p.dropped, int(p.dropped)));
      tr.appendChild(mark(h("td", "num"), f + "inFlight", p.inFlight, int(p.inFlight)));
      return tr;
    });
    if (recent.length === 0) rows.push(emptyRow(6, purges.enabled ? "No purge yet." : "Purging is off."));
    document.getElementById("purges").replaceChildren(...rows);
  }

  return { drawAddresses, drawPurges };
};
