/**
 * Process plumbing for bench/redis_tier.ts: redis-server, the example backend, proxies (`deno run -A
 * main.ts`) and bench/loadgen.ts, each its own process on a free loopback port, all registered with one
 * {@linkcode Fleet} so that a single `close()` stops every one of them, after an error too.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { type CollapserProcess, startCollapserProcess } from "../tests/_helpers.ts";
import { freePort, type RedisServer, startRedis } from "../tests/_redis.ts";
import { type RedisCluster, startCluster } from "../tests/_redis_cluster.ts";
import type { LoadResult } from "./loadgen.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = Deno.execPath();
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The example backend, run as its own process. */
export interface BackendProcess {
  readonly port: number;
  /** The backend's own count of Get calls served. */
  calls(): Promise<number>;
  /** Resolves once no Get has run or waited for 150 ms (the tail of a round is over); 10 s at most. */
  quiet(): Promise<void>;
}

/** A proxy process and its ports. */
export interface ProxyProcess {
  readonly port: number;
  readonly metricsPort: number;
  readonly process: CollapserProcess;
}

/** One loadgen process's result plus every latency it measured (ms). */
export type LoadRun = LoadResult & { latenciesMs: Float64Array };

/** Every process the bench started; `close()` stops them all (SIGTERM, then SIGKILL after 3 s). */
export class Fleet {
  readonly #stops = new Set<() => Promise<void>>();
  #tmp: string | undefined;
  #closing: Promise<void> | undefined;

  /** redis-server, no persistence. */
  async redis(): Promise<RedisServer> {
    const redis = await startRedis();
    this.#stops.add(() => redis.kill());
    return redis;
  }

  /** A Redis Cluster on loopback: 3 masters, each with a replica (tests/_redis_cluster.ts). */
  async cluster(): Promise<RedisCluster> {
    const cluster = await startCluster();
    this.#stops.add(async () => await cluster[Symbol.asyncDispose]());
    return cluster;
  }

  /** examples/backend.ts with `--delay delay`; resolves once it listens. */
  async backend(delay: string): Promise<BackendProcess> {
    const port = freePort();
    const child = new Deno.Command(DENO, {
      args: ["run", "-A", "examples/backend.ts", "--port", String(port), "--delay", delay],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#stops.add(() => stopChild(child));
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    for (let text = ""; !text.includes("listening");) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`example backend exited before listening: ${text}`);
      text += value;
    }
    reader.cancel().catch(() => {});
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    this.#stops.add(() => Promise.resolve(client.close()));
    const stats = () =>
      new Promise<{ calls: number; active: number; queued: number }>((resolve, reject) =>
        client.makeUnaryRequest(
          "/demo.Demo/Stats",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from("{}"),
          (err, reply) => err ? reject(err) : resolve(JSON.parse(reply!.toString())),
        )
      );
    return {
      port,
      calls: async () => (await stats()).calls,
      async quiet() {
        const until = performance.now() + 10_000;
        let quietSince = performance.now(), last = -1;
        while (performance.now() < until) {
          const s = await stats();
          if (s.calls !== last || s.active > 0 || s.queued > 0) {
            last = s.calls;
            quietSince = performance.now();
          } else if (performance.now() - quietSince >= 150) return;
          await sleep(50);
        }
      },
    };
  }

  /** A proxy (`deno run -A main.ts`) on `port` (a free one by default) in front of `backendPort`. */
  async proxy(backendPort: number, args: string[], port = freePort()): Promise<ProxyProcess> {
    const process = await startCollapserProcess([
      "--backend",
      `127.0.0.1:${backendPort}`,
      "--port",
      String(port),
      "--metrics-port",
      String(freePort()),
      ...args,
    ]);
    this.#stops.add(async () => {
      const stopped = await Promise.race([process.stop().then(() => true), sleep(3_000).then(() => false)]);
      if (!stopped) process.signal("SIGKILL");
      await process.stop();
    });
    if (process.port !== port) throw new Error(`proxy listens on ${process.port}, not ${port}`);
    return { port, metricsPort: process.metricsPort, process };
  }

  /** bench/loadgen.ts in its own process against `127.0.0.1:port`, killed after `limitMs`. */
  async loadgen(port: number, args: string[], limitMs: number): Promise<LoadRun> {
    this.#tmp ??= await Deno.makeTempDir({ prefix: "redis_tier-" });
    const file = `${this.#tmp}/${port}-${crypto.randomUUID()}.f64`;
    const child = new Deno.Command(DENO, {
      args: ["run", "-A", "bench/loadgen.ts", "--target", `127.0.0.1:${port}`, "--latencies", file, ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stop = () => stopChild(child);
    this.#stops.add(stop);
    const timer = setTimeout(stop, limitMs);
    try {
      const { code, stdout, stderr } = await child.output();
      const out = new TextDecoder().decode(stdout).trim();
      if (code !== 0) {
        throw new Error(
          `loadgen → :${port} exited ${code}: ${new TextDecoder().decode(stderr).slice(-1500)}`,
        );
      }
      const bytes = await Deno.readFile(file);
      await Deno.remove(file);
      const result: LoadResult = JSON.parse(out.split("\n").at(-1)!);
      return {
        ...result,
        latenciesMs: new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8),
      };
    } finally {
      clearTimeout(timer);
      this.#stops.delete(stop);
    }
  }

  /** Stops everything; never throws. Later calls wait for the first one. */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      const stops = [...this.#stops].reverse();
      this.#stops.clear();
      await Promise.all(stops.map((stop) => stop().catch(() => {})));
      if (this.#tmp) await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
    })();
  }
}

async function stopChild(child: Deno.ChildProcess): Promise<void> {
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    try {
      child.kill(signal);
    } catch {
      return; // already gone
    }
    if (await Promise.race([child.status.then(() => true), sleep(3_000).then(() => false)])) return;
  }
}

/** A `/metrics` scrape: every sample line's value by its series (`name{labels}`). */
export type Scrape = Map<string, number>;

/** Scrapes a proxy's `/metrics`. */
export async function scrape(proxy: ProxyProcess): Promise<Scrape> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
  const samples: Scrape = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Sum of the series of metric `name` whose labels contain `labels`, `after` minus `before`. */
export function delta(after: Scrape, before: Scrape | undefined, name: string, labels = ""): number {
  let sum = 0;
  for (const [series, value] of after) {
    const brace = series.indexOf("{");
    if ((brace < 0 ? series : series.slice(0, brace)) !== name || !series.includes(labels)) continue;
    sum += value - (before?.get(series) ?? 0);
  }
  return sum;
}

/** The q-quantile of sorted values (nearest rank). */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** All latencies of several runs, sorted. */
function mergeLatencies(runs: LoadRun[]): Float64Array {
  const all = new Float64Array(runs.reduce((n, r) => n + r.latenciesMs.length, 0));
  let at = 0;
  for (const r of runs) all.set(r.latenciesMs, (at += r.latenciesMs.length) - r.latenciesMs.length);
  return all.sort();
}

/** A configuration under test. */
export interface Config {
  name: string;
  /** Its proxy processes (their metrics are summed). */
  proxies: ProxyProcess[];
  /** The ports load goes to: one loadgen each, at once. */
  ports: number[];
}

/** One configuration's rounds, summed (`rps`: mean per round; latencies: all rounds merged). */
export interface Summary {
  name: string;
  runs: LoadRun[];
  rps: number;
  /** req/s of each round. */
  roundRps: number[];
  p50: number;
  p99: number;
  /** Requests answered, warm-up included (what the backend may have seen). */
  requests: number;
  /** The backend's own count over the rounds, and the proxies' `collapser_backend_calls_total`. */
  backendCalls: number;
  proxyBackendCalls: number;
  /** Seconds under load (warm-up included). */
  loadSeconds: number;
  /** Requests per process (`collapser_requests_total`). */
  perProcess: number[];
  /** Tier lookups by result, waits that ended in a backend call of the proxy's own, outages. */
  tier: Record<"hit" | "lock" | "wait" | "skipped" | "error" | "waitedLocal" | "outages", number>;
}

/** How to run rounds. */
export interface Rounds {
  rounds: number;
  ms: number;
  warmupMs: number;
  progress(line: string): void;
}

/**
 * Runs every configuration `r.rounds` times in alternating order (A B, B A, ...) with `load` (loadgen
 * flags); a failed call anywhere stops the run.
 */
export async function compare(
  fleet: Fleet,
  backend: BackendProcess,
  configs: Config[],
  label: string,
  load: string[],
  r: Rounds,
): Promise<Summary[]> {
  const summaries: Summary[] = configs.map((c) => ({
    name: c.name,
    runs: [],
    rps: 0,
    roundRps: [],
    p50: NaN,
    p99: NaN,
    requests: 0,
    backendCalls: 0,
    proxyBackendCalls: 0,
    loadSeconds: 0,
    perProcess: [],
    tier: { hit: 0, lock: 0, wait: 0, skipped: 0, error: 0, waitedLocal: 0, outages: 0 },
  }));
  const args = [...load, "--duration", `${r.ms}ms`, "--warmup", `${r.warmupMs}ms`];
  for (let round = 0; round < r.rounds; round++) {
    const order = round % 2 === 0 ? [...configs.keys()] : [...configs.keys()].reverse();
    for (const i of order) {
      const [config, s] = [configs[i], summaries[i]];
      r.progress(`${label}: ${config.name}, round ${round + 1}/${r.rounds}`);
      await backend.quiet();
      const before = await Promise.all(config.proxies.map(scrape));
      const calls = await backend.calls();
      const runs = await Promise.all(config.ports.map((p) => fleet.loadgen(p, args, r.ms + 60_000)));
      await backend.quiet();
      const after = await Promise.all(config.proxies.map(scrape));
      for (const run of runs) {
        if (run.failed > 0) {
          throw new Error(
            `${label}, ${config.name}: ${run.failed} failed calls: ${JSON.stringify(run.failures)}`,
          );
        }
      }
      const d = (name: string, labels = "") =>
        after.reduce((n, a, i) => n + delta(a, before[i], name, labels), 0);
      s.runs.push(...runs);
      s.roundRps.push(runs.reduce((n, run) => n + run.rps, 0));
      s.rps += s.roundRps.at(-1)! / r.rounds;
      s.requests += runs.reduce((n, run) => n + run.total, 0);
      s.backendCalls += (await backend.calls()) - calls;
      s.proxyBackendCalls += d("collapser_backend_calls_total");
      s.loadSeconds += (r.ms + r.warmupMs) / 1000;
      after.forEach((a, i) =>
        s.perProcess[i] = (s.perProcess[i] ?? 0) + delta(a, before[i], "collapser_requests_total")
      );
      for (const result of ["hit", "lock", "wait", "skipped", "error"] as const) {
        s.tier[result] += d("collapser_redis_lookups_total", `result="${result}"`);
      }
      for (const outcome of ["notice", "free", "timeout", "down"]) {
        s.tier.waitedLocal += d("collapser_redis_waits_total", `outcome="${outcome}"`);
      }
      s.tier.outages += d("collapser_redis_outages_total");
    }
  }
  for (const s of summaries) {
    const sorted = mergeLatencies(s.runs);
    [s.p50, s.p99] = [percentile(sorted, 0.5), percentile(sorted, 0.99)];
  }
  return summaries;
}

/** A summary for the JSON line: no latency arrays, rounded. */
export function summaryJson(s: Summary) {
  const { runs: _runs, ...rest } = s;
  const round = (n: number) => Math.round(n);
  return {
    ...rest,
    rps: round(s.rps),
    roundRps: s.roundRps.map(round),
    p50: +s.p50.toFixed(3),
    p99: +s.p99.toFixed(3),
  };
}

/** Rows under a header, each column padded to its widest cell (two text columns left, the rest right). */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]));
  return [head, ...rows].map((r) => line(r).join("  ").trimEnd()).join("\n");
}

/** Scripts run (EVALSHA and EVAL, the tier's round trips) on each master of `cluster` so far, by port. */
export async function scriptsPerMaster(cluster: RedisCluster): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const master of (await cluster.nodes()).filter((n) => n.role === "master" && !n.failed)) {
    const stats = await cluster.cli(master.port, "INFO", "commandstats");
    let calls = 0;
    for (const match of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(match[1]);
    counts.set(master.port, calls);
  }
  return counts;
}
