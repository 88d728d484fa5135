/**
 * Load drivers and probes: h2load (one body for every request), the bench/loadgen.ts child (a new body per
 * request), and grpc-js unary calls for probing a target and reading the backend's call counter. The grpc-js
 * clients, one per port, are owned here (`closeClient`, `closeClients`).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { ECHO_MESSAGE } from "../echo_server.ts";
import type { LoadResult } from "../loadgen.ts";
import { DENO, runToEnd } from "./procs.ts";

export const GET = "/demo.Demo/Get";

/** Requests in flight: connections × streams per connection. */
export interface Concurrency {
  connections: number;
  streams: number;
}

// ---------------------------------------------------------------------------------------------------------
// gRPC: a real grpc-js client for probes and the backend's call counter

const identity = (b: Buffer): Buffer => b;
const clients = new Map<number, grpc.Client>();

function client(port: number): grpc.Client {
  let c = clients.get(port);
  if (c === undefined) {
    c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    clients.set(port, c);
  }
  return c;
}

/** Closes the grpc-js client of `port`, if there is one. */
export function closeClient(port: number): void {
  clients.get(port)?.close();
  clients.delete(port);
}

/** Closes every grpc-js client. */
export function closeClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

function unary(port: number, path: string, message: unknown, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client(port).makeUnaryRequest(
      path,
      identity,
      identity,
      Buffer.from(JSON.stringify(message)),
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, value) => (err ? reject(err) : resolve(value!)),
    );
  });
}

/**
 * Waits until the backend has had no call running or queued for 150 ms, so that a round's backend count does
 * not include the tail of the round before (in-flight calls at the stop, or the proxy's refresh-ahead call
 * started by one of the previous round's last hits). Gives up after 10 s.
 */
export async function backendQuiet(port: number): Promise<void> {
  const until = performance.now() + 10_000;
  let quietSince = performance.now();
  let last = await backendCalls(port);
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stats = JSON.parse((await unary(port, "/demo.Demo/Stats", {})).toString());
    if (stats.calls !== last || stats.active > 0 || stats.queued > 0) {
      last = stats.calls;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= 150) return;
  }
}

/** The backend's Get counter, read with a direct grpc-js call to `/demo.Demo/Stats`. */
export async function backendCalls(port: number): Promise<number> {
  return JSON.parse((await unary(port, "/demo.Demo/Stats", {})).toString()).calls;
}

/** One real call through `port`; true when the answer is right for `key` (or is the echo answer). */
export async function probe(
  port: number,
  key: string,
  echo: boolean,
): Promise<{ ok: boolean; note: string }> {
  try {
    const reply = (await unary(port, GET, { key })).toString();
    if (echo) {
      return { ok: reply === ECHO_MESSAGE, note: reply === ECHO_MESSAGE ? "ok" : `bad echo ${reply}` };
    }
    const parsed = JSON.parse(reply);
    const ok = parsed.key === key && parsed.value === `value of ${key}`;
    return { ok, note: ok ? "ok" : `wrong answer ${reply}` };
  } catch (err) {
    return { ok: false, note: `probe failed: ${(err as Error).message}` };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Load tools

export interface RunStats {
  rps: number;
  /** Latency of every answered request in the window, in ms (unsorted). */
  latenciesMs: Float64Array;
  /** Requests answered in the counted window (what the backend counter is compared with). */
  requests: number;
  /** Requests that failed (non-2xx, stream errors, grpc-status ≠ 0 where the tool can see it). */
  errors: number;
  /** Tool-specific check of the answers. */
  answerCheck: { ok: boolean; note: string };
}

export interface H2loadOptions {
  durationMs: number;
  /** Smallest correct answer in bytes (0: do not check). */
  minAnswerBytes: number;
  /** Open-loop rate per connection (`--rps`); closed loop when absent. */
  rpsPerClient?: number;
  /** Keep each answer's time for the chart. */
  keepAnswers?: boolean;
}

export interface H2loadResult extends RunStats {
  /** When each request was answered (epoch ms), when `keepAnswers`. */
  answeredAt?: Float64Array;
}

/**
 * h2load against `port` with the same body on every request. Latency percentiles come from its per-request
 * `--log-file`; the answer check compares the DATA bytes it received with the smallest correct answer (a
 * trailers-only gRPC error carries no message).
 */
export async function h2load(
  port: number,
  bodyFile: string,
  o: H2loadOptions,
  tmp: string,
  load: Concurrency,
): Promise<H2loadResult> {
  const logFile = `${tmp}/h2load-${port}-${Date.now()}.tsv`;
  const args = [
    "-t",
    "1",
    "-c",
    String(load.connections),
    "-m",
    String(load.streams),
    "-D",
    `${o.durationMs}ms`,
    "-d",
    bodyFile,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    "--log-file",
    logFile,
  ];
  if (o.rpsPerClient) args.push("--rps", String(o.rpsPerClient));
  args.push(`http://127.0.0.1:${port}${GET}`);
  const out = await runToEnd("h2load", "h2load", args, tmp, o.durationMs + 60_000);
  const need = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`cannot parse h2load output (${re}):\n${out}`);
    return m.slice(1).map(Number);
  };
  const [rps] = need(/finished in [\d.]+m?s, ([\d.]+) req\/s/);
  const [, , done, succeeded, failed, errored, timeout] = need(
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/,
  );
  const [s2xx, s3xx, s4xx, s5xx] = need(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  const [dataBytes] = need(/traffic: .*?, .*? headers .*?\), [\d.]+[KMG]?B \((\d+)\) data/);
  const rows = (await Deno.readTextFile(logFile)).split("\n");
  await Deno.remove(logFile).catch(() => {});
  const latencies: number[] = [];
  const answeredAt: number[] = [];
  for (const row of rows) {
    const [start, status, us] = row.split("\t");
    if (status !== "200") continue;
    latencies.push(Number(us) / 1000);
    if (o.keepAnswers) answeredAt.push((Number(start) + Number(us)) / 1000);
  }
  const errors = failed + errored + timeout + s3xx + s4xx + s5xx + Math.max(0, done - succeeded);
  // h2load counts a 200 when the headers arrive; a stream per slot may be cut off before its DATA at the stop.
  const cut = load.connections * load.streams;
  const enough = dataBytes >= Math.max(0, s2xx - cut) * o.minAnswerBytes;
  return {
    rps,
    latenciesMs: Float64Array.from(latencies),
    requests: s2xx,
    errors,
    answerCheck: {
      ok: enough && s2xx > 0,
      note: `${s2xx} × HTTP 200 carried ${dataBytes} B of messages (≥ ${o.minAnswerBytes} B each: ${
        enough ? "yes" : "NO"
      })`,
    },
    answeredAt: o.keepAnswers ? Float64Array.from(answeredAt) : undefined,
  };
}

/** bench/loadgen.ts in its own process; every answer's grpc-status and key are checked there. */
export async function loadgen(
  port: number,
  args: string[],
  tmp: string,
  limitMs: number,
): Promise<LoadResult & { latenciesMs: Float64Array }> {
  const file = `${tmp}/latencies-${port}-${Date.now()}.f64`;
  const out = await runToEnd(
    "loadgen",
    DENO,
    ["run", "-A", "bench/loadgen.ts", "--target", `127.0.0.1:${port}`, "--latencies", file, ...args],
    tmp,
    limitMs,
  );
  const bytes = await Deno.readFile(file);
  await Deno.remove(file).catch(() => {});
  const result: LoadResult = JSON.parse(out.trim().split("\n").at(-1)!);
  return { ...result, latenciesMs: new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8) };
}

export function loadgenStats(r: LoadResult & { latenciesMs: Float64Array }): RunStats {
  const failures = Object.entries(r.failures).map(([k, v]) => `${v} × ${k}`).join(", ");
  return {
    rps: r.rps,
    latenciesMs: r.latenciesMs,
    requests: r.total,
    errors: r.failed,
    answerCheck: {
      ok: r.failed === 0 && r.ok > 0,
      note: `${r.ok} answers checked (grpc-status 0, right key)${failures ? `; failures: ${failures}` : ""}`,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The wire: h2load's request body, and the smallest correct answer

/** One gRPC message (5-byte prefix, uncompressed) holding `{"key": key}`. */
export function requestBody(key: string): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ key }));
  const frame = new Uint8Array(5 + json.byteLength);
  new DataView(frame.buffer).setUint32(1, json.byteLength);
  frame.set(json, 5);
  return frame;
}

/** Size of the smallest correct answer for `key` on the wire: prefix + `{"key","value","call":1}`. */
export function minAnswerBytes(key: string, echo: boolean): number {
  const message = echo ? ECHO_MESSAGE : JSON.stringify({ key, value: `value of ${key}`, call: 1 });
  return 5 + new TextEncoder().encode(message).byteLength;
}
