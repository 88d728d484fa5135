/**
 * Statistics: percentiles, medians, paired ratios between targets' rounds, a report row summarizing a
 * target's rounds, and the evaluation of the project's targets against the rows.
 *
 * @module
 */

import { fmt, ratio } from "./format.ts";
import type { Check, HotRun, LoadShape, Round, Row, Scenario, TargetCheck, TargetName } from "./types.ts";

export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/**
 * `a` relative to `b`: the median over rounds of a's round i / b's round i. Neighbouring rounds saw the same
 * machine, so the ratio cancels most of the drift that the plain req/s columns carry.
 */
export function pairedRatio(a: Row, b: Row): number {
  const n = Math.min(a.rpsRounds.length, b.rpsRounds.length);
  return median(Array.from({ length: n }, (_, i) => a.rpsRounds[i] / b.rpsRounds[i]));
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A target's row: the median round's req/s, latency percentiles over every round's answers, and `checks`. */
export function summarizeRounds(
  scenario: Scenario,
  t: { name: TargetName; rate?: number },
  list: Round[],
  checks: Check[],
): Row {
  const latencies = new Float64Array(list.reduce((n, round) => n + round.stats.latenciesMs.length, 0));
  let offset = 0;
  for (const round of list) {
    latencies.set(round.stats.latenciesMs, offset);
    offset += round.stats.latenciesMs.length;
  }
  latencies.sort();
  const requests = list.reduce((n, round) => n + round.stats.requests, 0);
  const calls = list.reduce((n, round) => n + round.calls, 0);
  const bounds = list.map((round) => round.bound);
  const peak = Math.max(...list.map((round) => round.peakRssMb));
  const rpsList = list.map((round) => round.stats.rps);
  const row: Row = {
    scenario: scenario.id,
    target: t.name,
    rate: t.rate,
    tool: scenario.tool,
    rps: median(rpsList),
    rpsMin: Math.min(...rpsList),
    rpsMax: Math.max(...rpsList),
    rpsRounds: rpsList,
    rounds: list.length,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    requests,
    errors: list.reduce((n, round) => n + round.stats.errors, 0),
    backendCalls: calls,
    collapseRatio: calls > 0 ? requests / calls : null,
    backendCallBound: bounds.every((b) => b !== undefined) ? bounds.reduce((a, b) => a! + b!, 0) : undefined,
    peakRssMb: Number.isFinite(peak) ? peak : null,
    cpuUsPerAnswer: requests > 0 ? (1000 * list.reduce((ms, round) => ms + round.cpuMs, 0)) / requests : null,
    otherCpuPct: Math.max(...list.map((round) => round.otherCpuPct)),
    vsDirect: null,
    vsNginx: null,
    verified: checks.every((c) => c.ok),
    checks: checks.map((c) => `${c.ok ? "✓" : "✗"} ${c.note}`),
  };
  return row;
}

/** The project's targets, each with what was measured and whether it was met. */
export function evaluate(
  rows: Row[],
  hot: HotRun | undefined,
  scenarios: Scenario[],
  load: LoadShape,
): TargetCheck[] {
  const get = (s: Scenario["id"], t: TargetName) => rows.find((r) => r.scenario === s && r.target === t);
  const out: TargetCheck[] = [];
  const d = { proxy: get("d", "proxy"), direct: get("d", "direct"), nginx: get("d", "nginx") };
  if (d.proxy && d.direct) {
    out.push({
      goal: "(d) slow backend: proxy throughput ≥ 10x direct",
      measured: `${fmt(d.proxy.rps, 0)} vs ${fmt(d.direct.rps, 0)} req/s (medians); paired ratio ${
        ratio(d.proxy.vsDirect)
      }`,
      met: d.proxy.vsDirect! >= 10,
    });
  }
  if (d.proxy && d.nginx) {
    out.push({
      goal: "(d) slow backend: proxy throughput ≥ 10x nginx",
      measured: `${fmt(d.proxy.rps, 0)} vs ${fmt(d.nginx.rps, 0)} req/s (medians); paired ratio ${
        ratio(d.proxy.vsNginx)
      }`,
      met: d.proxy.vsNginx! >= 10,
    });
  }
  if (d.proxy) {
    const limit = 2 * (scenarios.find((s) => s.id === "d")!.delayMs);
    const rated = get("d", "proxy@rate");
    const echoRated = get("d", "echo@rate");
    out.push({
      goal: `(d) slow backend: proxy p99 ≤ 2x backend latency (${limit} ms)`,
      measured: `p99 ${fmt(d.proxy.p99Ms, 2)} ms (p50 ${fmt(d.proxy.p50Ms, 2)} ms) at saturation, ` +
        `${load.connections * load.streams} streams in flight` +
        (rated
          ? `; p99 ${fmt(rated.p99Ms, 2)} ms (p50 ${fmt(rated.p50Ms, 2)} ms) at a fixed ${
            fmt(rated.rate, 0)
          } req/s`
          : "") +
        (echoRated ? ` (echo server at that rate: p99 ${fmt(echoRated.p99Ms, 2)} ms)` : ""),
      // Judged at saturation, the stricter of the two.
      met: d.proxy.p99Ms <= limit,
    });
  }
  const a = { proxy: get("a", "proxy"), echo: get("a", "echo") };
  if (a.proxy && a.echo) {
    const r = pairedRatio(a.proxy, a.echo);
    out.push({
      goal: "(a) cache hits: proxy throughput ≥ 0.9x the bare echo server",
      measured: `${fmt(a.proxy.rps, 0)} vs ${fmt(a.echo.rps, 0)} req/s (medians); paired ratio ${ratio(r)}`,
      met: r >= 0.9,
    });
  }
  const b = { proxy: get("b", "proxy"), nginx: get("b", "nginx"), relay: get("b", "relay") };
  if (b.proxy && b.nginx) {
    out.push({
      goal: "(b) unique keys: proxy/direct ≥ nginx/direct",
      measured: `${ratio(b.proxy.vsDirect)} vs ${ratio(b.nginx.vsDirect)}` +
        (b.relay ? `; the bare node:http2 relay (the runtime's ceiling): ${ratio(b.relay.vsDirect)}` : ""),
      met: b.proxy.vsDirect! >= b.nginx.vsDirect!,
    });
  }
  if (b.proxy && b.relay) {
    out.push({
      goal: "(b) unique keys: proxy ≥ 0.9x the bare relay (a miss at the runtime's own ceiling)",
      measured: `${ratio(b.proxy.rps / b.relay.rps)} (medians: ${fmt(b.proxy.rps, 0)} vs ${
        fmt(b.relay.rps, 0)
      } req/s)`,
      met: b.proxy.rps >= 0.9 * b.relay.rps,
    });
    if (b.proxy.cpuUsPerAnswer !== null && b.relay.cpuUsPerAnswer !== null) {
      // The same goal by cost rather than speed: the relay's CPU per answer over the proxy's (≥ 0.9 when a
      // miss costs at most 1/0.9 of the relay's). Steadier than req/s on cores shared with the load.
      out.push({
        goal: "(b) unique keys: CPU per miss ≤ the bare relay's / 0.9",
        measured: `${ratio(b.relay.cpuUsPerAnswer / b.proxy.cpuUsPerAnswer)} (${
          fmt(b.proxy.cpuUsPerAnswer, 0)
        } vs ${fmt(b.relay.cpuUsPerAnswer, 0)} µs per answer)`,
        met: b.relay.cpuUsPerAnswer >= 0.9 * b.proxy.cpuUsPerAnswer,
      });
    }
  }
  const c = get("c", "proxy");
  if (c && c.vsNginx !== null) {
    out.push({
      goal: "(c) Zipf: proxy ≥ nginx",
      measured: `paired ratio ${ratio(c.vsNginx)}`,
      met: c.vsNginx >= 1,
    });
  }
  const proxyRows = rows.filter((r) => r.target.startsWith("proxy") && r.peakRssMb !== null);
  if (proxyRows.length) {
    const worst = proxyRows.reduce((x, y) => (y.peakRssMb! > x.peakRssMb! ? y : x));
    const fastest = Math.max(...proxyRows.map((r) => r.rps));
    out.push({
      goal: "proxy RSS ≤ 150 MB at 10k req/s",
      measured: `peak ${fmt(worst.peakRssMb, 1)} MB in (${worst.scenario}) at ${fmt(worst.rps, 0)} req/s; ` +
        `fastest proxy run ${fmt(fastest, 0)} req/s${fastest < 10_000 ? " (10k req/s not reached)" : ""}`,
      met: worst.peakRssMb! <= 150,
    });
  }
  if (hot) {
    out.push({
      goal: `hot-key run: backend calls ≤ (seconds / TTL) + 1`,
      measured: `${hot.backendCalls} calls for ${fmt(hot.requests, 0)} requests in ${
        fmt(hot.seconds, 2)
      } s; bound ${hot.bound}`,
      met: hot.withinBound,
    });
  }
  return out;
}
