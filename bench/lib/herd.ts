/**
 * The herd check (many identical calls at once, direct and through the proxy) and the long hot-key run
 * through the proxy, whose backend counter is sampled for the chart.
 *
 * @module
 */

import { fmt } from "./format.ts";
import {
  backendCalls,
  type Concurrency,
  h2load,
  type H2loadResult,
  loadgen,
  minAnswerBytes,
  probe,
  requestBody,
} from "./drivers.ts";
import { cpuSnapshot, memory, otherCpuPct, resetPeak, sleep } from "./procs.ts";
import { type Stack, type StackOptions, startStack, stopStack } from "./stack.ts";
import type { HerdResult, HerdShape, HotRun } from "./types.ts";

/** `shape.requests` concurrent identical calls, direct and through the proxy, on a fresh stack. */
export async function herd(stackOptions: StackOptions, tmp: string, shape: HerdShape): Promise<HerdResult> {
  console.error(
    `\n== herd: ${shape.requests} concurrent identical calls, backend ${shape.delayMs} ms per call`,
  );
  const stack = await startStack(stackOptions, "herd", tmp, { delayMs: shape.delayMs }, false);
  try {
    const result: HerdResult = {
      requests: shape.requests,
      backendDelayMs: shape.delayMs,
      targets: [],
      verified: true,
    };
    for (const target of ["direct", "proxy"] as const) {
      const server = target === "direct" ? stack.backend : stack.proxy;
      const key = `herd-${target}`;
      const before = await backendCalls(stack.backend.port);
      for (const pid of server.pids()) resetPeak(pid);
      const r = await loadgen(
        server.port,
        [
          "--keys",
          "hot",
          "--hot-key",
          key,
          "--requests",
          String(shape.requests),
          "--burst",
          "--connections",
          String(shape.connections),
        ],
        tmp,
        120_000,
      );
      const calls = (await backendCalls(stack.backend.port)) - before;
      const peakRssMb = server.pids().map((pid) => memory(pid)?.hwmMb ?? NaN).reduce((a, b) => a + b, 0);
      // All calls were open at once if every request was sent before the first answer came back.
      const allInFlightAtOnce = r.maxInflight === shape.requests && r.sendSpanMs! < r.firstAnswerMs!;
      result.targets.push({
        target,
        ok: r.ok,
        failed: r.failed,
        backendCalls: calls,
        maxInflight: r.maxInflight,
        sendSpanMs: r.sendSpanMs!,
        firstAnswerMs: r.firstAnswerMs!,
        allInFlightAtOnce,
        seconds: r.seconds,
        peakRssMb,
      });
      const expected = target === "proxy" ? 1 : shape.requests;
      if (r.ok !== shape.requests || calls !== expected || !allInFlightAtOnce) result.verified = false;
      console.error(
        `   ${
          target.padEnd(6)
        } ${r.ok}/${shape.requests} ok → ${calls} backend call(s) (expected ${expected}); ` +
          `all sent in ${fmt(r.sendSpanMs!, 0)} ms, first answer at ${fmt(r.firstAnswerMs!, 0)} ms; ` +
          `peak RSS ${fmt(peakRssMb, 1)} MB`,
      );
    }
    return result;
  } finally {
    await stopStack(stack);
  }
}

/** The hot-key run: its length, the proxy's cache TTL (for the bound), and h2load's concurrency. */
export interface HotRunOptions {
  runMs: number;
  cacheTtlMs: number;
  load: Concurrency;
  /** Processes that each collapse on their own (`--workers N`): the bound is per process. @default {1} */
  collapsers?: number;
}

/** An options.runMs hot-key run through the proxy; samples the backend counter every 100 ms for the chart. */
export async function hotRun(
  stack: Stack,
  tmp: string,
  bodyFile: string,
  options: HotRunOptions,
): Promise<HotRun> {
  const { runMs, cacheTtlMs, load } = options;
  console.error(`\n== hot-key run: ${runMs / 1000} s through the proxy, backend calls vs the bound`);
  const port = stack.backend.port;
  const base = await backendCalls(port);
  const samples: [number, number][] = [];
  let sampling = true;
  const cpuBefore = cpuSnapshot();
  for (const pid of stack.proxy.pids()) resetPeak(pid);
  const t0 = Date.now();
  const sampler = (async () => {
    while (sampling) {
      const at = Date.now();
      try {
        samples.push([at, (await backendCalls(port)) - base]);
      } catch {
        // a missed sample is a gap in the chart, nothing more
      }
      await sleep(Math.max(0, 100 - (Date.now() - at)));
    }
  })();
  let run: H2loadResult;
  try {
    run = await h2load(
      stack.proxy.port,
      bodyFile,
      {
        durationMs: runMs,
        minAnswerBytes: minAnswerBytes("hot-a", false),
        keepAnswers: true,
      },
      tmp,
      load,
    );
  } finally {
    sampling = false;
    await sampler;
  }
  const wallMs = Date.now() - t0;
  const otherCpu = otherCpuPct(cpuBefore, cpuSnapshot());
  const peakRssMb = stack.proxy.pids().map((pid) => memory(pid)?.hwmMb ?? NaN).reduce((a, b) => a + b, 0);
  const calls = (await backendCalls(port)) - base;
  samples.push([Date.now(), calls]);
  const bound = (Math.ceil(wallMs / cacheTtlMs) + 1) * (options.collapsers ?? 1);
  // Requests answered so far at each sample time, from h2load's per-request log.
  const answeredAt = run.answeredAt!.sort();
  const start = Math.min(t0, answeredAt[0] ?? t0);
  const series: [number, number, number][] = [];
  let j = 0;
  for (const [at, c] of samples) {
    while (j < answeredAt.length && answeredAt[j] <= at) j++;
    series.push([(at - start) / 1000, j, c]);
  }
  console.error(
    `   ${run.requests} requests → ${calls} backend calls; bound ${bound}; ${fmt(run.rps, 0)} req/s; ` +
      `peak RSS ${fmt(peakRssMb, 1)} MB`,
  );
  return {
    seconds: wallMs / 1000,
    requests: run.requests,
    rps: run.rps,
    backendCalls: calls,
    bound,
    withinBound: calls <= bound && run.answerCheck.ok && run.errors === 0,
    otherCpuPct: otherCpu,
    peakRssMb,
    series,
  };
}

/** The hot-key run on a stack of its own, when scenario (a) (which runs it on its stack) is not run. */
export async function hotRunAlone(
  stackOptions: StackOptions,
  tmp: string,
  options: HotRunOptions,
): Promise<HotRun> {
  const stack = await startStack(stackOptions, "hot", tmp, { delayMs: 0 }, false);
  try {
    const bodyFile = `${tmp}/body-a.bin`;
    await Deno.writeFile(bodyFile, requestBody("hot-a"));
    await probe(stack.proxy.port, "hot-a", false);
    return await hotRun(stack, tmp, bodyFile, options);
  } finally {
    await stopStack(stack);
  }
}
