/**
 * The chart (bench/herd.svg), hand-written SVG: the herd as log-scale bars, the hot-key run as cumulative
 * curves against the TTL bound.
 *
 * @module
 */

import { fmt } from "./format.ts";
import type { HerdResult, HotRun } from "./types.ts";

/** Hand-written SVG: the herd as log-scale bars, and the hot-key run as cumulative curves on a log axis. */
export function svg(herdResult: HerdResult | undefined, hot: HotRun | undefined, cacheTtlMs: number): string {
  const W = 900, H = 420;
  const out: string[] = [];
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const text = (x: number, y: number, s: string, extra = "") =>
    out.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${extra}>${esc(s)}</text>`);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  );
  const logAxis = (x0: number, y0: number, h: number, decades: number, label: string) => {
    // The axis starts at 0.5 so that a count of 1 still shows as a small bar.
    const floor = Math.log10(2);
    const y = (v: number) => y0 + h - ((Math.log10(Math.max(0.5, v)) + floor) / (decades + floor)) * h;
    const names = ["1", "10", "100", "1k", "10k", "100k", "1M", "10M"];
    for (let d = 0; d <= decades; d++) {
      const yy = y(10 ** d);
      out.push(`<line x1="${x0}" x2="${x0 - 4}" y1="${yy}" y2="${yy}" stroke="#333"/>`);
      out.push(`<line x1="${x0}" x2="${x0 + (x0 < 200 ? 300 : 430)}" y1="${yy}" y2="${yy}" stroke="#eee"/>`);
      text(x0 - 6, yy + 4, names[d] ?? `1e${d}`, `text-anchor="end" fill="#333"`);
    }
    out.push(`<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y0 + h}" stroke="#333"/>`);
    text(
      x0 - 48,
      y0 + h / 2,
      label,
      `transform="rotate(-90 ${x0 - 48} ${y0 + h / 2})" text-anchor="middle" fill="#333"`,
    );
    return y;
  };
  const top = 50, plotH = 260;
  // Left: the herd.
  if (herdResult) {
    text(
      20,
      24,
      `Herd: ${fmt(herdResult.requests, 0)} concurrent identical calls`,
      `font-size="14" font-weight="bold"`,
    );
    const decades = Math.ceil(Math.log10(herdResult.requests)) || 1;
    const x0 = 80;
    const y = logAxis(x0, top, plotH, decades, "count (log scale)");
    const direct = herdResult.targets.find((t) => t.target === "direct");
    const proxy = herdResult.targets.find((t) => t.target === "proxy");
    const bars: [string, number, string][] = [
      ["requests", herdResult.requests, "#9aa5b1"],
      ["backend calls, direct", direct?.backendCalls ?? NaN, "#d9534f"],
      ["backend calls, proxy", proxy?.backendCalls ?? NaN, "#2e7d32"],
    ];
    const together = herdResult.targets.every((t) => t.allInFlightAtOnce);
    text(
      20,
      top + plotH + 58,
      `${
        together ? "All" : "NOT all"
      } calls in flight at once; backend answers after ${herdResult.backendDelayMs} ms.`,
      `font-size="11"`,
    );
    const allOk = herdResult.targets.every((t) => t.ok === herdResult.requests && t.failed === 0);
    text(
      20,
      top + plotH + 74,
      allOk
        ? "Every caller got a checked answer (grpc-status 0, its key)."
        : "Some callers got NO correct answer.",
      `font-size="11"`,
    );
    bars.forEach(([label, v, color], i) => {
      if (!Number.isFinite(v)) return;
      const bx = x0 + 20 + i * 90, yy = y(v);
      out.push(
        `<rect x="${bx}" y="${yy.toFixed(1)}" width="60" height="${
          (top + plotH - yy).toFixed(1)
        }" fill="${color}"/>`,
      );
      text(bx + 30, yy - 6, fmt(v, 0), `text-anchor="middle" font-weight="bold"`);
      const [l1, l2] = label.includes(",") ? label.split(", ") : [label, ""];
      text(bx + 30, top + plotH + 16, l1, `text-anchor="middle"`);
      if (l2) text(bx + 30, top + plotH + 30, l2, `text-anchor="middle"`);
    });
  }
  // Right: the hot-key run.
  if (hot && hot.series.length > 1) {
    const x0 = 430, plotW = 430;
    text(
      x0 - 60,
      24,
      `Hot key for ${fmt(hot.seconds, 0)} s through the proxy (TTL ${cacheTtlMs} ms)`,
      `font-size="14" font-weight="bold"`,
    );
    const maxReq = Math.max(hot.requests, ...hot.series.map((s) => s[1]));
    const decades = Math.max(1, Math.ceil(Math.log10(maxReq)));
    const y = logAxis(x0, top, plotH, decades, "cumulative count (log scale)");
    const tMax = Math.max(hot.seconds, hot.series.at(-1)![0]);
    const x = (t: number) => x0 + (t / tMax) * plotW;
    out.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
    const step = tMax > 5 ? 2 : tMax > 2 ? 1 : 0.5;
    for (let t = 0; t <= tMax + 1e-9; t += step) {
      out.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="#333"/>`);
      text(x(t), top + plotH + 16, `${t}`, `text-anchor="middle" fill="#333"`);
    }
    text(x0 + plotW / 2, top + plotH + 32, "seconds", `text-anchor="middle" fill="#333"`);
    const path = (points: [number, number][], color: string, dash = "") =>
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2"${
          dash ? ` stroke-dasharray="${dash}"` : ""
        } points="${
          points.filter(([, v]) => v >= 1).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")
        }"/>`,
      );
    path(hot.series.map(([t, r]) => [t, r]), "#9aa5b1");
    path(hot.series.map(([t, , c]) => [t, c]), "#2e7d32");
    path(
      [[0, 1], ...hot.series.map(([t]) => [t, t * 1000 / cacheTtlMs + 1] as [number, number])],
      "#555",
      "5,4",
    );
    const legend: [string, string, string][] = [
      ["#9aa5b1", "", `requests answered = backend calls without the proxy (${fmt(hot.requests, 0)})`],
      ["#2e7d32", "", `backend calls through the proxy (${hot.backendCalls})`],
      ["#555", "5,4", `bound: seconds / TTL + 1 (${hot.bound})`],
    ];
    legend.forEach(([color, dash, label], i) => {
      const ly = top + plotH + 54 + i * 16;
      const lx = x0;
      out.push(
        `<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"${
          dash ? ` stroke-dasharray="${dash}"` : ""
        }/>`,
      );
      text(lx + 30, ly + 4, label, `font-size="11"`);
    });
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}
