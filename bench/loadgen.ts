/**
 * A small gRPC load generator on `node:http2`, for what h2load cannot do: h2load posts one body (`-d FILE`)
 * for every request and only varies the URI, but the collapse key is the message, so unique keys and a
 * skewed (Zipf) key mix need a different body per request. It also checks every answer: `grpc-status` 0
 * (h2load counts any HTTP 200 as a success) and, for the demo service, that the reply names the key asked
 * for — a proxy that handed one caller another caller's answer fails here.
 *
 * It prints one JSON line ({@linkcode LoadResult}) on stdout (and with `--latencies FILE` writes every measured
 * latency in ms as raw float64). Run it in its own process so it does not share an event loop with what it
 * measures:
 *
 * ```sh
 * deno run -A bench/loadgen.ts --target 127.0.0.1:50052 --keys zipf --connections 8 --streams 16 --duration 8s
 * deno run -A bench/loadgen.ts --target 127.0.0.1:50052 --keys hot --requests 10000 --connections 10 --burst
 * ```
 *
 * @module
 */

import * as http2 from "node:http2";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { parseDuration } from "../src/util/duration.ts";

/** How request keys are chosen. */
export type KeyMode = "hot" | "unique" | "zipf";

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  /** `host:port` to send to. */
  target: string;
  /** Method path. @default {"/demo.Demo/Get"} */
  path?: string;
  /** Key choice per request. @default {"hot"} */
  keys?: KeyMode;
  /** The one key of `hot` mode. @default {"hot"} */
  hotKey?: string;
  /** Number of keys of `zipf` mode. @default {1000} */
  zipfKeys?: number;
  /** Zipf exponent: key k (1-based) is drawn with weight 1/k^s. @default {1} */
  zipfS?: number;
  /** HTTP/2 connections. @default {8} */
  connections?: number;
  /** Streams in flight per connection (ignored with `burst`). @default {16} */
  streams?: number;
  /** Measured time in ms (timed mode). @default {5000} */
  durationMs?: number;
  /** Time before measuring starts, in ms (timed mode); its requests count in `total` only. @default {0} */
  warmupMs?: number;
  /** Counted mode: send exactly this many requests instead of running for a time. */
  requests?: number;
  /** Counted mode: open every request at once instead of keeping `streams` in flight per connection. */
  burst?: boolean;
  /** What a correct answer is: the demo reply for the key asked, the echo server's reply, or any OK. */
  expect?: "key" | "echo" | "any";
  /** Give up on answers still missing this long after the last request was sent, in ms. @default {30000} */
  drainTimeoutMs?: number;
}

/** {@linkcode runLoad}'s result plus the latency of every measured OK request, in ms, in answer order. */
export interface LoadRun {
  result: LoadResult;
  latenciesMs: Float64Array;
}

/** What {@linkcode runLoad} measured. */
export interface LoadResult {
  /** Requests answered with grpc-status 0 and a correct message inside the measured window. */
  ok: number;
  /** Requests that failed inside the measured window (see `failures`). */
  failed: number;
  /** Every request answered, warm-up included (what the backend may have seen). */
  total: number;
  /** Measured window in seconds. */
  seconds: number;
  /** `ok / seconds`. */
  rps: number;
  /** Latency of the measured OK requests, in ms. */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** Failure counts by cause, e.g. `grpc-status 14`, `wrong answer`, `stream error`. */
  failures: Record<string, number>;
  /** Counted mode: ms from the first request sent to the last one sent. */
  sendSpanMs?: number;
  /** Counted mode: ms from the first request sent to the first answer. */
  firstAnswerMs?: number;
  /** Most requests in flight at once. */
  maxInflight: number;
}

const ECHO_KEY = "echo";

/** Builds a `key → request body` function: the gRPC 5-byte prefix plus `{"key": ...}` JSON. */
function body(key: string): Buffer {
  const json = Buffer.from(JSON.stringify({ key }));
  const frame = Buffer.alloc(5 + json.byteLength);
  frame.writeUInt32BE(json.byteLength, 1);
  json.copy(frame, 5);
  return frame;
}

/** A sampler of key indexes 1..n with P(k) ∝ 1/k^s (inverse CDF by binary search). */
export function zipfSampler(n: number, s: number, random: () => number = Math.random): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) cdf[k - 1] = sum += 1 / k ** s;
  for (let i = 0; i < n; i++) cdf[i] /= sum;
  return () => {
    const u = random();
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Runs the load and resolves with what it measured. */
export async function runLoad(options: LoadOptions): Promise<LoadRun> {
  const {
    target,
    path = "/demo.Demo/Get",
    keys = "hot",
    hotKey = "hot",
    zipfKeys = 1000,
    zipfS = 1,
    connections = 8,
    streams = 16,
    durationMs = 5000,
    warmupMs = 0,
    requests,
    burst = false,
    expect = "key",
    drainTimeoutMs = 30_000,
  } = options;
  const counted = requests !== undefined;
  const run = crypto.randomUUID().slice(0, 8);
  let serial = 0;
  const hotBody = body(hotKey);
  const zipf = zipfSampler(zipfKeys, zipfS);
  const nextKey = (): string => {
    switch (keys) {
      case "hot":
        return hotKey;
      case "unique":
        return `u-${run}-${serial++}`;
      case "zipf":
        return `z-${zipf()}`;
    }
  };

  const sessions = await Promise.all(Array.from({ length: connections }, () => connect(target)));
  const latencies: number[] = [];
  const failures: Record<string, number> = {};
  let total = 0, ok = 0, failed = 0, sent = 0, inflight = 0, maxInflight = 0;
  let firstSentAt = NaN, lastSentAt = NaN, firstAnswerAt = NaN;
  const startedAt = performance.now();
  const measureFrom = counted ? startedAt : startedAt + warmupMs;
  const stopAt = counted ? Infinity : measureFrom + durationMs;
  let stopping = false;
  const allDone = Promise.withResolvers<void>();
  /** Counted mode: resolved when the last request has been sent (the drain timeout counts from there). */
  const allSent = Promise.withResolvers<void>();

  const fail = (cause: string, measured: boolean) => {
    if (!measured) return;
    failed++;
    failures[cause] = (failures[cause] ?? 0) + 1;
  };

  /** Sends one request on `session`; calls `done` when it has ended either way. */
  const send = (session: http2.ClientHttp2Session, done: () => void) => {
    const key = nextKey();
    const sentAt = performance.now();
    if (Number.isNaN(firstSentAt)) firstSentAt = sentAt;
    lastSentAt = sentAt;
    if (++sent === requests) allSent.resolve();
    maxInflight = Math.max(maxInflight, ++inflight);
    let status: string | undefined;
    const chunks: Buffer[] = [];
    let finished = false;
    const finish = (error?: string) => {
      if (finished) return;
      finished = true;
      inflight--;
      const now = performance.now();
      if (Number.isNaN(firstAnswerAt)) firstAnswerAt = now;
      total++;
      const measured = now >= measureFrom && now <= stopAt;
      if (error !== undefined) fail(error, measured);
      else if (status !== "0") fail(`grpc-status ${status ?? "missing"}`, measured);
      else if (!answerIsRight(Buffer.concat(chunks), key)) fail("wrong answer", measured);
      else if (measured) {
        ok++;
        latencies.push(now - sentAt);
      }
      done();
    };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        "te": "trailers",
      });
    } catch (err) {
      queueMicrotask(() => finish(`request error: ${(err as Error).message}`));
      return;
    }
    stream.on("response", (headers) => {
      if (headers[":status"] !== 200) return finish(`http ${headers[":status"]}`);
      const s = headers["grpc-status"];
      if (s !== undefined) status = String(s); // trailers-only answer
    });
    stream.on("trailers", (trailers) => {
      const s = trailers["grpc-status"];
      if (s !== undefined) status = String(s);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (err) => finish(`stream error: ${err.message}`));
    stream.on("close", () => finish(stream.rstCode ? `reset ${stream.rstCode}` : undefined));
    stream.end(keys === "hot" ? hotBody : body(key));
  };

  const answerIsRight = (message: Buffer, key: string): boolean => {
    if (expect === "any") return true;
    if (message.byteLength < 5 || message.readUInt32BE(1) !== message.byteLength - 5) return false;
    let reply: { key?: unknown; value?: unknown };
    try {
      reply = JSON.parse(message.subarray(5).toString());
    } catch {
      return false;
    }
    const want = expect === "echo" ? ECHO_KEY : key;
    return reply.key === want && reply.value === `value of ${want}`;
  };

  if (counted && burst) {
    // Everything at once: spread the requests over the connections, open them all, wait for all.
    let pending = requests;
    if (pending === 0) allDone.resolve();
    const done = () => {
      if (--pending === 0) allDone.resolve();
    };
    for (let i = 0; i < requests; i++) send(sessions[i % connections], done);
  } else {
    // Closed loop: each connection keeps `streams` requests in flight until time (or the count) runs out.
    let open = 0;
    const loop = (session: http2.ClientHttp2Session) => {
      const next = () => {
        const more = counted ? sent < requests : performance.now() < stopAt;
        if (more && !stopping) send(session, next);
        else if (--open === 0) allDone.resolve();
      };
      open++;
      send(session, next);
    };
    for (const session of sessions) for (let i = 0; i < streams; i++) loop(session);
    if (!counted) {
      setTimeout(() => {
        stopping = true;
      }, stopAt - performance.now());
    }
  }
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  const drained = new Promise<void>((resolve) => {
    const arm = () => {
      drainTimer = setTimeout(resolve, drainTimeoutMs);
    };
    if (counted) allSent.promise.then(arm);
    else setTimeout(arm, Math.max(0, stopAt - performance.now()));
  });
  await Promise.race([allDone.promise, drained]);
  clearTimeout(drainTimer);
  if (inflight > 0) {
    failed += inflight;
    failures["no answer"] = inflight;
  }
  for (const session of sessions) session.destroy();

  const seconds = counted
    ? (performance.now() - startedAt) / 1000
    : (Math.min(performance.now(), stopAt) - measureFrom) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  const mean = latencies.reduce((a, b) => a + b, 0) / (latencies.length || 1);
  const result: LoadResult = {
    ok,
    failed,
    total,
    seconds,
    rps: ok / seconds,
    latencyMs: {
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
      mean,
    },
    failures,
    ...(counted ? { sendSpanMs: lastSentAt - firstSentAt, firstAnswerMs: firstAnswerAt - firstSentAt } : {}),
    maxInflight,
  };
  return { result, latenciesMs: Float64Array.from(latencies) };
}

function connect(target: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${target}`, {
      // Allow as many streams as the server does; the server's SETTINGS still apply.
      peerMaxConcurrentStreams: 1_000_000,
      maxSessionMemory: 512,
    });
    session.once("connect", () => {
      session.off("error", reject);
      session.on("error", () => {});
      resolve(session);
    });
    session.once("error", reject);
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      target: { type: "string" },
      path: { type: "string", default: "/demo.Demo/Get" },
      keys: { type: "string", default: "hot" },
      "hot-key": { type: "string", default: "hot" },
      "zipf-keys": { type: "string", default: "1000" },
      "zipf-s": { type: "string", default: "1" },
      connections: { type: "string", default: "8" },
      streams: { type: "string", default: "16" },
      duration: { type: "string", default: "5s" },
      warmup: { type: "string", default: "0s" },
      requests: { type: "string" },
      burst: { type: "boolean", default: false },
      expect: { type: "string", default: "key" },
      latencies: { type: "string" },
    },
  });
  if (!values.target) {
    console.error("loadgen: --target HOST:PORT is required");
    Deno.exit(2);
  }
  if (!["hot", "unique", "zipf"].includes(values.keys)) {
    console.error(`loadgen: --keys must be hot, unique or zipf: received ${JSON.stringify(values.keys)}`);
    Deno.exit(2);
  }
  if (!["key", "echo", "any"].includes(values.expect)) {
    console.error(`loadgen: --expect must be key, echo or any: received ${JSON.stringify(values.expect)}`);
    Deno.exit(2);
  }
  const { result, latenciesMs } = await runLoad({
    target: values.target,
    path: values.path,
    keys: values.keys as KeyMode,
    hotKey: values["hot-key"],
    zipfKeys: Number(values["zipf-keys"]),
    zipfS: Number(values["zipf-s"]),
    connections: Number(values.connections),
    streams: Number(values.streams),
    durationMs: parseDuration(values.duration),
    warmupMs: parseDuration(values.warmup),
    requests: values.requests === undefined ? undefined : Number(values.requests),
    burst: values.burst,
    expect: values.expect as "key" | "echo" | "any",
  });
  if (values.latencies) await Deno.writeFile(values.latencies, new Uint8Array(latenciesMs.buffer));
  console.log(JSON.stringify(result));
  // Sessions are destroyed; exit without waiting for sockets to linger.
  Deno.exit(0);
}
