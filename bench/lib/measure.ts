/**
 * Measuring one target of a scenario: its warm-up and one measured round, with the checks of every answer
 * against the backend's own call counter (and, for a hot key through the proxy, against the TTL bound).
 *
 * @module
 */

import {
  backendCalls,
  backendQuiet,
  h2load,
  loadgen,
  loadgenStats,
  minAnswerBytes,
  type RunStats,
} from "./drivers.ts";
import { cpuMs, cpuSnapshot, memory, otherCpuPct, resetPeak } from "./procs.ts";
import type { Server, Stack } from "./stack.ts";
import type { Check, LoadShape, Round, Scenario, TargetName } from "./types.ts";

/** One measured target in a scenario. */
export interface TargetSpec {
  name: TargetName;
  server: Server;
  /** The echo server answers with its fixed message. */
  echo: boolean;
  /** Open loop at this many requests per second in total (h2load `--rps`); closed loop when absent. */
  rate?: number;
}

/** What a measured round needs besides the target: the load shape and the proxy's cache TTL. */
export interface MeasureOptions {
  load: LoadShape;
  cacheTtlMs: number;
  /** Processes that each collapse on their own (`--workers N`: N; else 1): the hot-key bound is per process. */
  collapsers?: number;
}

function loadgenArgs(scenario: Scenario, t: TargetSpec, durationMs: number, load: LoadShape): string[] {
  return [
    "--keys",
    scenario.keys,
    "--hot-key",
    `hot-${scenario.id}`,
    "--connections",
    String(load.connections),
    "--streams",
    String(load.streams),
    "--duration",
    `${durationMs}ms`,
    "--expect",
    t.echo ? "echo" : "key",
  ];
}

/** Warm-up (JIT, connections, pools): the same load for load.warmupMs, not counted. */
export async function warmUp(
  scenario: Scenario,
  t: TargetSpec,
  tmp: string,
  bodyFile: string,
  load: LoadShape,
): Promise<void> {
  if (scenario.tool === "h2load") {
    await h2load(t.server.port, bodyFile, { durationMs: load.warmupMs, minAnswerBytes: 0 }, tmp, load);
  } else {
    await loadgen(t.server.port, loadgenArgs(scenario, t, load.warmupMs, load), tmp, load.warmupMs + 60_000);
  }
}

/** One measured round against one target, checked against the backend's counter. */
export async function measureRound(
  scenario: Scenario,
  stack: Stack,
  t: TargetSpec,
  tmp: string,
  bodyFile: string,
  options: MeasureOptions,
): Promise<Round> {
  const { load, cacheTtlMs, collapsers = 1 } = options;
  const hotKey = `hot-${scenario.id}`;
  const pids = t.server.pids();
  for (const pid of pids) resetPeak(pid);
  await backendQuiet(stack.backend.port);
  const callsBefore = await backendCalls(stack.backend.port);
  const startedAt = performance.now();
  const cpuBefore = cpuSnapshot();
  const targetCpuBefore = pids.reduce((ms, pid) => ms + cpuMs(pid), 0);
  const stats: RunStats = scenario.tool === "h2load"
    ? await h2load(
      t.server.port,
      bodyFile,
      {
        durationMs: load.roundMs,
        minAnswerBytes: minAnswerBytes(hotKey, t.echo),
        rpsPerClient: t.rate ? Math.ceil(t.rate / load.connections) : undefined,
      },
      tmp,
      load,
    )
    : loadgenStats(
      await loadgen(t.server.port, loadgenArgs(scenario, t, load.roundMs, load), tmp, load.roundMs + 60_000),
    );
  const wallMs = performance.now() - startedAt;
  const otherCpu = otherCpuPct(cpuBefore, cpuSnapshot());
  const targetCpu = pids.reduce((ms, pid) => ms + cpuMs(pid), 0) - targetCpuBefore;
  const peakRssMb = pids.map((pid) => memory(pid)?.hwmMb ?? NaN).reduce((a, b) => a + b, 0);
  const calls = (await backendCalls(stack.backend.port)) - callsBefore;

  const checks: Check[] = [stats.answerCheck, {
    ok: stats.errors === 0,
    note: `${stats.errors} failed requests`,
  }];
  const inflight = load.connections * load.streams;
  let bound: number | undefined;
  if (t.echo) {
    checks.push({ ok: calls === 0, note: `backend calls ${calls} (the echo server never calls it)` });
  } else if (t.name === "direct" || t.name === "nginx" || t.name === "relay") {
    // Every answer was a real backend call; a few more may have been in flight when the tool stopped.
    checks.push({
      ok: calls >= stats.requests && calls <= stats.requests + inflight + 10,
      note: `backend calls ${calls} = answers ${stats.requests} (+ ≤ ${inflight} in flight at the stop)`,
    });
  } else if (scenario.keys === "hot") {
    bound = (Math.ceil(wallMs / cacheTtlMs) + 1) * collapsers;
    checks.push({
      ok: calls >= 1 && calls <= bound,
      note: `backend calls ${calls} ≤ bound (${(wallMs / 1000).toFixed(2)} s / ${cacheTtlMs} ms) + 1` +
        `${
          collapsers > 1 ? ` per worker × ${collapsers} workers (each collapses on its own)` : ""
        } = ${bound}`,
    });
  } else if (scenario.keys === "unique") {
    checks.push({
      ok: calls >= stats.requests - inflight,
      note: `backend calls ${calls} ≈ answers ${stats.requests} (unique keys cannot collapse)`,
    });
  } else {
    checks.push({
      ok: calls >= 1 && calls <= stats.requests,
      note: `backend calls ${calls} ≤ answers ${stats.requests}`,
    });
  }
  return { stats, calls, bound, peakRssMb, otherCpuPct: otherCpu, cpuMs: targetCpu, checks };
}
