"use strict";
// The status page's number and text formats, shared with app.js through one frozen global (the page is
// classic inline scripts, no modules: it has to fit the admin port's content security policy).
globalThis.collapserFormat = (() => {
  const nf = new Intl.NumberFormat("en-US");

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
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
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
  const percent = (v) =>
    !isNum(v) ? "—" : (v > 0 && v < 0.001 ? "<0.1" : (v * 100).toFixed(v >= 0.9995 || v === 0 ? 0 : 1)) + "%";
  const seconds = (v) => !isNum(v) ? "—" : (v < 9.95 ? v.toFixed(1) : String(Math.round(v))) + " s";
  const clock = (iso) => {
    const d = new Date(iso);
    return isNaN(d) ? "—" : d.toLocaleTimeString("en-GB", { hour12: false });
  };
  const rawValue = (v) => typeof v === "string" ? v : JSON.stringify(v === undefined ? null : v);

  return Object.freeze({ isNum, int, rate, ratio, ms, bytes, duration, percent, seconds, clock, rawValue });
})();
