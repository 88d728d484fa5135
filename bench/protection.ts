/**
 * Backend protection load test: proves that with `--max-backend-concurrency N` the backend never sees more
 * than N calls at once, however many callers there are. Starts the example backend (`--delay`, no limit of
 * its own; its `Stats` counts `peakActive`), the proxy (`deno run -A main.ts`) and `bench/loadgen.ts` as three processes, drives
 * unique keys (nothing collapses) at a concurrency far above N, samples the proxy's /metrics every 100 ms
 * (max `collapser_backend_queue_length`, max `collapser_inflight_requests`), then reads the backend's
 * `demo.Demo/Stats` (peakActive, calls) and `collapser_backend_shed_total{reason}`. The same load runs
 * without the limit for comparison. RESOURCE_EXHAUSTED answers are counted (loadgen's `grpc-status 8`
 * failures), not treated as a harness failure. Exits 1 if the backend's peakActive exceeded N with the limit.
 *
 * ```sh
 * deno task bench:protection                   # N=8, 8 connections × 64 streams, 10 s per configuration
 * deno task bench:protection --limit 2         # another N
 * deno task bench:protection --quick           # smoke run, < 20 s
 * ```
 *
 * Flags: `--limit N` (8), `--delay DURATION` (20ms, backend time per call), `--connections N` (8),
 * `--streams N` (64 per connection), `--duration DURATION` (10s), `--max-queue N` and `--queue-timeout
 * DURATION` (passed to the proxy; unset = the proxy's defaults 1024 and 1s), `--quick`.
 *
 * Results (Deno 2.8.3, 2-core machine, load average 3–5 during the runs, partly another benchmark), unique
 * keys, 8 × 64 streams, 10 s, delay 20ms. RESOURCE_EXHAUSTED counts answers inside loadgen's window; the shed
 * totals count the whole run. `deno task bench:protection`:
 *
 * | configuration | OK req/s | RESOURCE_EXHAUSTED | OK p50 ms | OK p99 ms | backend calls | backend peakActive | max inflight | max queue | shed queue_full/queue_timeout |
 * | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
 * | --max-backend-concurrency 8 | 244 | 2303 | 1012.7 | 1151.5 | 2667 | 8 | 8 | 504 | 0/2583 |
 * | no limit | 697 | 0 | 648.7 | 1574.9 | 7478 | 512 | 512 | 0 | 0/0 |
 *
 * `deno task bench:protection --limit 2`:
 *
 * | --max-backend-concurrency 2 | 37 | 3591 | 1042.2 | 1881.1 | 419 | 2 | 2 | 510 | 0/4053 |
 * | no limit | 282 | 0 | 1524.6 | 3202.0 | 3328 | 366 | 512 | 0 | 0/0 |
 *
 * The bound held in both runs (peakActive = N). With the limit on, throughput stays below N / delay because
 * 512 closed-loop callers keep the proxy busy answering RESOURCE_EXHAUSTED. The queue (max 1024) never
 * fills at 512 callers, so every shed is a queue_timeout; `--max-queue 64` produces queue_full sheds.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { type CollapserProcess, startCollapserProcess } from "../tests/_helpers.ts";
import { parseDuration } from "../src/util/duration.ts";
import type { LoadResult } from "./loadgen.ts";

const USAGE =
  "usage: deno task bench:protection [--limit N] [--delay 20ms] [--connections N] [--streams N]\n" +
  "       [--duration 10s] [--max-queue N] [--queue-timeout DURATION] [--quick]";
const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();

const opt = (() => {
  try {
    const str = (d?: string) => ({ type: "string" as const, default: d });
    const { values: v } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        limit: str("8"),
        delay: str("20ms"),
        connections: str("8"),
        streams: str("64"),
        duration: str(),
        "max-queue": str(),
        "queue-timeout": str(),
        quick: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (v.help) console.log(USAGE), Deno.exit(0);
    const int = (name: string, s: string, min: number) => {
      if (!/^\d+$/.test(s) || Number(s) < min) {
        throw new Error(`--${name} must be an integer >= ${min}: ${s}`);
      }
      return Number(s);
    };
    if (v["max-queue"] !== undefined) int("max-queue", v["max-queue"], 0);
    if (v["queue-timeout"] !== undefined) parseDuration(v["queue-timeout"]);
    return {
      limit: int("limit", v.limit!, 1),
      delay: (parseDuration(v.delay!), v.delay!),
      connections: int("connections", v.connections!, 1),
      streams: int("streams", v.streams!, 1),
      duration: v.duration ?? (v.quick ? "3s" : "10s"),
      durationMs: parseDuration(v.duration ?? (v.quick ? "3s" : "10s")),
      proxyFlags: [
        ...(v["max-queue"] !== undefined ? ["--max-queue", v["max-queue"]] : []),
        ...(v["queue-timeout"] !== undefined ? ["--queue-timeout", v["queue-timeout"]] : []),
      ],
    };
  } catch (e) {
    console.error(`bench:protection: ${(e as Error).message.split("\n")[0]}\n${USAGE}`);
    Deno.exit(1);
  }
})();

/** Everything started, stopped in `finally` (and on Ctrl-C) whatever happened. */
const children = new Set<Deno.ChildProcess>();
const proxies = new Set<CollapserProcess>();
async function stopAll() {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.status;
  }
  children.clear();
  await Promise.all([...proxies].map((p) => p.stop()));
  proxies.clear();
}
Deno.addSignalListener("SIGINT", () => stopAll().finally(() => Deno.exit(130)));

/** Starts the example backend; resolves with its port once it prints its listening line. */
async function startBackend(): Promise<{ port: number; child: Deno.ChildProcess }> {
  const child = new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      `${ROOT}examples/backend.ts`,
      "--port",
      "0",
      "--delay",
      opt.delay,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.add(child);
  let text = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    const port = text.match(/listening on [\d.]+:(\d+)/)?.[1];
    if (port) return { port: Number(port), child };
  }
  throw new Error(`backend exited before listening: ${text}`);
}

function backendStats(port: number): Promise<Record<string, number>> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<Record<string, number>>((resolve, reject) =>
    client.makeUnaryRequest(
      "/demo.Demo/Stats",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from("{}"),
      { deadline: Date.now() + 5000 },
      (err, res) => err ? reject(err) : resolve(JSON.parse(res!.toString())),
    )
  ).finally(() => client.close());
}

/** `name{labels} value` lines of a Prometheus text page → `name{labels}` → value. */
async function metrics(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = line.match(/^(collapser_[a-z_]+(?:\{[^}]*\})?) (\S+)$/);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

async function runLoadgen(port: number): Promise<LoadResult> {
  const child = new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      `${ROOT}bench/loadgen.ts`,
      ...["--target", `127.0.0.1:${port}`, "--keys", "unique", "--duration", opt.duration],
      ...["--connections", String(opt.connections), "--streams", String(opt.streams)],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.add(child);
  const out = new TextDecoder().decode((await child.output()).stdout).trim();
  children.delete(child);
  const line = out.split("\n").at(-1) ?? "";
  if (!line.startsWith("{")) throw new Error(`loadgen printed no result: ${out}`);
  return JSON.parse(line);
}

interface Row {
  config: string;
  limit: number | null;
  okRps: number;
  resourceExhausted: number;
  otherFailures: Record<string, number>;
  p50: number;
  p99: number;
  backendCalls: number;
  peakActive: number;
  maxInflight: number;
  maxQueue: number;
  shed: Record<string, number>;
}

async function measure(limit: number | null): Promise<Row> {
  const backend = await startBackend();
  const limitFlags = limit === null ? [] : ["--max-backend-concurrency", String(limit), ...opt.proxyFlags];
  const proxy = await startCollapserProcess(["--backend", `127.0.0.1:${backend.port}`, ...limitFlags]);
  proxies.add(proxy);
  try {
    let maxInflight = 0, maxQueue = 0, sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const m = await metrics(proxy.metricsPort);
        maxInflight = Math.max(maxInflight, m.get("collapser_inflight_requests") ?? 0);
        maxQueue = Math.max(maxQueue, m.get("collapser_backend_queue_length") ?? 0);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const load = await runLoadgen(proxy.port).finally(() => sampling = false);
    await sampler;
    const [stats, m] = await Promise.all([backendStats(backend.port), metrics(proxy.metricsPort)]);
    const { "grpc-status 8": resourceExhausted = 0, ...otherFailures } = load.failures;
    return {
      config: limit === null ? "no limit" : `--max-backend-concurrency ${limit}`,
      limit,
      okRps: Math.round(load.rps),
      resourceExhausted,
      otherFailures,
      p50: load.latencyMs.p50,
      p99: load.latencyMs.p99,
      backendCalls: stats.calls,
      peakActive: stats.peakActive,
      maxInflight,
      maxQueue,
      shed: Object.fromEntries(
        ["queue_full", "queue_timeout"].map((
          r,
        ) => [r, m.get(`collapser_backend_shed_total{reason="${r}"}`) ?? 0]),
      ),
    };
  } finally {
    proxies.delete(proxy);
    await proxy.stop();
    backend.child.kill("SIGKILL");
    await backend.child.status;
    children.delete(backend.child);
  }
}

function table(rows: Row[]): string {
  const head = [
    "configuration",
    "OK req/s",
    "RESOURCE_EXHAUSTED",
    "OK p50 ms",
    "OK p99 ms",
    "backend calls",
    "backend peakActive",
    "max inflight",
    "max queue",
    "shed queue_full/queue_timeout",
  ];
  const body = rows.map((r) => [
    r.config,
    String(r.okRps),
    String(r.resourceExhausted),
    r.p50.toFixed(1),
    r.p99.toFixed(1),
    String(r.backendCalls),
    String(r.peakActive),
    String(r.maxInflight),
    String(r.maxQueue),
    `${r.shed.queue_full}/${r.shed.queue_timeout}`,
  ]);
  return [head, head.map(() => "---"), ...body].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

let failed = false;
try {
  console.error(
    `bench:protection: unique keys, ${opt.connections} connections × ${opt.streams} streams, ${opt.duration}` +
      ` per configuration, backend delay ${opt.delay}`,
  );
  const limited = await measure(opt.limit);
  const unlimited = await measure(null);
  const rows = [limited, unlimited];
  console.log(table(rows));
  for (const r of rows) {
    if (Object.keys(r.otherFailures).length) {
      console.error(`warning: ${r.config}: other failures ${JSON.stringify(r.otherFailures)}`);
    }
  }
  const held = limited.peakActive <= opt.limit;
  console.log(
    held
      ? `bound held: backend peakActive ${limited.peakActive} <= N=${opt.limit}`
      : `BOUND VIOLATED: backend peakActive ${limited.peakActive} > N=${opt.limit}`,
  );
  console.log(JSON.stringify({ bench: "protection", ...opt, proxyFlags: undefined, held, rows }));
  failed = !held;
} catch (err) {
  console.error(`bench:protection: ${(err as Error).stack ?? err}`);
  failed = true;
} finally {
  await stopAll();
}
Deno.exit(failed ? 1 : 0);
