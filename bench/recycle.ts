/**
 * Memory that comes back: many short client connections (one unary call each, opened and closed one after
 * another) through the proxy, with and without recycling, under a light steady load on one long-lived
 * connection. Reports the resident set of the proxy's whole process tree (the supervisor and its workers, as
 * a container's memory limit counts it) after a warm-up (1,000 connections: the JIT's code and the heap's
 * working size) and at the end, and every call's outcome: a worker handed over must not fail a call.
 *
 * ```sh
 * deno task bench:recycle                                  # 50,000 connections, --workers 1 --recycle-connections 1000
 * deno task bench:recycle --connections 5000 --proxy-args="--workers 1"     # no recycling, for comparison
 * ```
 *
 * Exits 1 if a call failed or, with recycling, the end RSS is more than 50 MB above the start.
 *
 * @module
 */

import * as http2 from "node:http2";
import { parseArgs } from "node:util";
import { admin, newClient, startCollapserProcess, startTestBackend, unary } from "../tests/_helpers.ts";
import { memory } from "./lib/procs.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    connections: { type: "string", default: "50000" },
    "proxy-args": { type: "string", default: "--workers 1 --recycle-connections 1000" },
    "steady-rps": { type: "string", default: "50" },
    warmup: { type: "string", default: "1000" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    'Usage: deno task bench:recycle [--connections N] [--proxy-args "..."] [--steady-rps R] [--warmup N]\n\n' +
      "  --connections N      short connections, one call each (default 50000)\n" +
      '  --proxy-args "..."   proxy flags (default "--workers 1 --recycle-connections 1000")\n' +
      "  --steady-rps R       calls per second on one long-lived connection meanwhile (default 50)\n" +
      "  --warmup N           short connections before the start RSS is taken (default 1000)",
  );
  Deno.exit(0);
}
const CONNECTIONS = Number(values.connections);
const STEADY_RPS = Number(values["steady-rps"]);
const WARMUP = Number(values.warmup);
const proxyArgs = values["proxy-args"]!.split(/\s+/).filter(Boolean);
const recycling = proxyArgs.some((arg) => arg.startsWith("--recycle"));
const MB = 2 ** 20;

/** Resident set of a process and all its descendants, in bytes (bench/lib/procs.ts reads /proc). */
function treeRss(pid: number): number {
  return (memory(pid)?.rssMb ?? 0) * MB;
}

/** Bound on one short call, so that a call that never ends is counted as failed, not a hang. */
const SHORT_CALL_LIMIT_MS = 10_000;

/**
 * One short connection: connect, one unary call, close. Resolves with undefined when the call succeeded,
 * else what went wrong. It resolves on the session's `close` event, which comes however the session ends
 * (`session.close()`'s callback does not come for a session an error already destroyed: the stall that
 * hung the first 50,000-connection runs).
 */
function shortCall(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    let status: unknown;
    let error: string | undefined;
    const limit = setTimeout(() => {
      error = `no answer within ${SHORT_CALL_LIMIT_MS} ms`;
      session.destroy();
    }, SHORT_CALL_LIMIT_MS);
    session.on("error", (err) => error ??= `session: ${err.message}`);
    session.on("close", () => {
      clearTimeout(limit);
      resolve(
        status === "0"
          ? undefined
          : error ?? (status === undefined ? "no status" : `grpc-status ${status} ${message ?? ""}`),
      );
    });
    const body = new Uint8Array([0, 0, 0, 0, 2, 0x7b, 0x7d]); // one message: "{}"
    const stream = session.request({
      ":method": "POST",
      ":path": "/test.Test/Unary",
      "content-type": "application/grpc",
      te: "trailers",
    });
    let message: unknown;
    stream.on("trailers", (trailers) => {
      status = trailers["grpc-status"];
      message = trailers["grpc-message"];
    });
    stream.on("response", (headers) => {
      status ??= headers["grpc-status"];
      message ??= headers["grpc-message"];
    });
    stream.on("error", (err) => error ??= `stream: ${err.message}`);
    stream.resume();
    stream.on("close", () => session.close());
    stream.end(body);
  });
}

const backend = await startTestBackend();
await using proxy = await startCollapserProcess(["--backend", backend.address, ...proxyArgs]);
const pid = proxy.child.pid;
await new Promise((resolve) => setTimeout(resolve, 1_000));
const coldRss = treeRss(pid);
console.log(`proxy ${proxyArgs.join(" ")}: RSS at start ${(coldRss / MB).toFixed(1)} MB (process tree)`);

// Light steady load on one long-lived connection, for the whole run.
const steady = newClient(proxy.port);
let steadyCalls = 0;
let steadyFailed = 0;
let running = true;
const steadyLoop = (async () => {
  while (running) {
    const result = await unary(steady, "/test.Test/Unary", { key: `steady${steadyCalls % 50}` });
    steadyCalls++;
    if (result.error !== null) steadyFailed++;
    await new Promise((resolve) => setTimeout(resolve, 1000 / STEADY_RPS));
  }
})();

let failed = 0;
/** Each failure's reason and how many times it came. */
const failures = new Map<string, number>();
// Warm-up: the JIT's code and the heap's working size are there after the first calls, recycling or not;
// the bound is on what grows after that.
for (let i = 0; i < WARMUP; i++) {
  const failure = await shortCall(proxy.port);
  if (failure !== undefined) {
    failed++;
    failures.set(failure, (failures.get(failure) ?? 0) + 1);
  }
}
const startRss = treeRss(pid);
console.log(`after ${WARMUP} warm-up connections: RSS ${(startRss / MB).toFixed(1)} MB (the start below)`);
let peakRss = startRss;
const started = performance.now();
for (let i = 0; i < CONNECTIONS; i++) {
  const failure = await shortCall(proxy.port);
  if (failure !== undefined) {
    failed++;
    failures.set(failure, (failures.get(failure) ?? 0) + 1);
    console.log(`connection ${i + 1}: ${failure}`);
  }
  if ((i + 1) % Math.max(1, Math.floor(CONNECTIONS / 10)) === 0) {
    const rss = treeRss(pid);
    peakRss = Math.max(peakRss, rss);
    console.log(
      `${String(i + 1).padStart(7)} connections: RSS ${(rss / MB).toFixed(1)} MB, ${failed} failed, ` +
        `${((i + 1) / ((performance.now() - started) / 1000)).toFixed(0)} conn/s`,
    );
  }
}
running = false;
await steadyLoop;
steady.close();
await new Promise((resolve) => setTimeout(resolve, 2_000));
const endRss = treeRss(pid);
const recycles = (await admin(proxy.metricsPort, "/metrics")).body.match(
  /^collapser_worker_recycles_total (\d+)/m,
);
console.log(
  `end RSS ${(endRss / MB).toFixed(1)} MB (start ${(startRss / MB).toFixed(1)}, peak ${
    (peakRss / MB).toFixed(1)
  }, ` +
    `${
      ((endRss - startRss) / MB).toFixed(1)
    } MB above start); ${CONNECTIONS} short calls, ${failed} failed; ` +
    `${steadyCalls} steady calls, ${steadyFailed} failed; recycles: ${recycles?.[1] ?? "n/a"}`,
);
for (const [why, n] of failures) console.log(`  ${n} × ${why}`);
backend.close();
const bad = failed + steadyFailed > 0 || (recycling && endRss - startRss > 50 * MB);
Deno.exit(bad ? 1 : 0);
