/**
 * The demo: the example backend (50 ms per call), the proxy in front of it, and the example client firing
 * the same herd at the backend directly and then through the proxy.
 *
 * Run it: `deno task demo` (optionally `--calls 5000 --delay 100ms --cache-ttl 200ms`). It prints the URL of
 * the proxy's status page; with `--keep` the stack stays up after the herds, with a light steady load (a hot
 * key and a trickle of unique ones), until Ctrl-C, so a person can watch the page.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseFlagsOrExit } from "./_cli.ts";
import { parseDuration } from "../src/util/duration.ts";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { serveAdmin } from "../src/admin/admin.ts";
import { Metrics } from "../src/admin/metrics.ts";
import { Proxy } from "../src/server/proxy.ts";
import { observers } from "../src/server/observer.ts";
import { StatusBoard } from "../src/admin/status.ts";
import { startBackend } from "./backend.ts";
import { describe, herd } from "./client.ts";

const identity = (b: Buffer): Buffer => b;

const { calls, delayMs, cacheTtlMs, metricsPort, values } = parseFlagsOrExit(
  "demo",
  "Usage: deno task demo [--calls N] [--delay DURATION] [--cache-ttl DURATION] [--metrics-port N] [--keep]\n" +
    "  (defaults: 1000 calls, 50ms per backend call, the proxy's 100ms cache TTL, status page on port 2112)",
  () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        calls: { type: "string", default: "1000" },
        delay: { type: "string", default: "50ms" },
        "cache-ttl": { type: "string", default: "100ms" },
        "metrics-port": { type: "string", default: "2112" },
        keep: { type: "boolean", default: false },
      },
    });
    const calls = Number(values.calls);
    if (!Number.isInteger(calls) || calls < 1) {
      throw new RangeError(`--calls must be a positive integer: ${values.calls}`);
    }
    const metricsPort = Number(values["metrics-port"]);
    if (!/^\d+$/.test(values["metrics-port"]!) || metricsPort > 65535) {
      throw new RangeError(`--metrics-port must be a port (0 picks a free one): ${values["metrics-port"]}`);
    }
    return {
      calls,
      delayMs: parseDuration(values.delay!),
      cacheTtlMs: parseDuration(values["cache-ttl"]!),
      metricsPort,
      values,
    };
  },
);

const backend = await startBackend({ delayMs });
const backendAddress = `127.0.0.1:${backend.port}`;
const metrics = new Metrics({ defaultMetrics: false });
using status = new StatusBoard();
const proxy = await Proxy.start({
  backend: backendAddress,
  host: "127.0.0.1",
  port: 0,
  cacheTtlMs,
  observer: observers(metrics, status),
});
const admin = await serveAdmin(proxy, {
  metrics,
  status,
  config: { backend: backendAddress, cacheTtl: values["cache-ttl"], demo: true },
  hostname: "127.0.0.1",
  port: metricsPort,
}).catch((err) => {
  console.error(
    `demo: cannot serve the status page on port ${metricsPort}: ${err.message} (try --metrics-port 0)`,
  );
  Deno.exit(1);
});
try {
  console.log(`backend on ${backendAddress} (${values.delay} per call), proxy on 127.0.0.1:${proxy.port}`);
  console.log(`status page: http://127.0.0.1:${admin.addr.port}/\n`);
  const direct = await herd({ target: backendAddress, backend: backendAddress, calls });
  console.log(describe("direct to the backend ", direct));
  const viaProxy = await herd({
    target: `127.0.0.1:${proxy.port}`,
    backend: backendAddress,
    calls,
    key: "other",
  });
  console.log(describe("through the collapser", viaProxy));
  console.log(
    `\nThe backend did ${direct.backendCalls} calls' work without the proxy and ${viaProxy.backendCalls} with it.`,
  );
  if (values.keep) {
    console.log(`\nKept up with a light load: watch http://127.0.0.1:${admin.addr.port}/ (Ctrl-C to stop).`);
    await steadyLoad(`127.0.0.1:${proxy.port}`);
  }
} finally {
  await admin.shutdown();
  await proxy.close();
  backend.close();
}

/** Every 100 ms, 20 identical calls and 2 unique ones, until SIGINT or SIGTERM. */
async function steadyLoad(target: string): Promise<void> {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => stop.resolve());
  let unique = 0;
  const call = (key: string) =>
    new Promise<void>((resolve) =>
      client.makeUnaryRequest(
        "/demo.Demo/Get",
        identity,
        identity,
        Buffer.from(JSON.stringify({ key })),
        () => resolve(),
      )
    );
  const timer = setInterval(() => {
    for (let i = 0; i < 20; i++) call("popular-item");
    for (let i = 0; i < 2; i++) call(`item-${unique++}`);
  }, 100);
  await stop.promise;
  clearInterval(timer);
  client.close();
}
