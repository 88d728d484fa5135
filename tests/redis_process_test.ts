/**
 * The shared tier as operators run it: proxy processes started from the command line, with `--redis`, and
 * with `--reuse-port` so that several of them share one port on one host.
 */

import { needs } from "./_needs.ts";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { admin, gate, parse, startCollapserProcess, startTestBackend, unary, until } from "./_helpers.ts";
import { freePort, heldBackend, startRedis } from "./_redis.ts";

/** `Deno.test`, ignored where redis-server is missing (see _needs.ts). */
const test = needs("redis-server").test;

/** The value of an unlabelled metric in a /metrics text. */
function metric(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (match === null) throw new Error(`no ${name} in /metrics`);
  return Number(match[1]);
}

test("Redis tier (process): a healthy Redis at start → the tier is in use, no warning, metrics say so", async () => {
  await using redis = await startRedis();
  const backend = await startTestBackend();
  try {
    await using proc = await startCollapserProcess(["--redis", redis.url], {
      BACKEND_ADDRESS: backend.address,
    });
    const text = (await admin(proc.metricsPort, "/metrics")).body;
    assert.equal(metric(text, "collapser_redis_up"), 1);
    assert.equal(metric(text, "collapser_redis_outages_total"), 0);
    assert.ok(proc.logs.some((l) => l.message === "redis: the shared tier is in use"));
    assert.deepEqual(proc.logs.filter((l) => l.level === "warning" || l.level === "warn"), []);
    const status = JSON.parse((await admin(proc.metricsPort, "/status.json")).body);
    assert.equal(status.config.redis, redis.url);
    assert.deepEqual(status.sharedTier, { up: true, fromFleet: 0, outages: 0 });
  } finally {
    backend.close();
  }
});

test("Two proxy processes with --reuse-port share one port, and with --redis a herd over both makes one backend call", async () => {
  await using redis = await startRedis();
  const release = gate();
  const backend = await startTestBackend(heldBackend(release.promise));
  const port = freePort();
  const args = ["--port", String(port), "--reuse-port", "--redis", redis.url, "--cache-ttl", "10s"];
  try {
    await using first = await startCollapserProcess(args, { BACKEND_ADDRESS: backend.address });
    await using second = await startCollapserProcess(args, { BACKEND_ADDRESS: backend.address });
    assert.equal(first.port, port);
    assert.equal(second.port, port, "the second process bound the same port");
    // One connection per client (no shared subchannel pool), so the kernel spreads them over both.
    const clients = Array.from(
      { length: 24 },
      () =>
        new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
          "grpc.use_local_subchannel_pool": 1,
        }),
    );
    try {
      const calls = clients.map((client) => unary(client, "/test.Test/Unary", { item: "shared port" }));
      const served = async (proc: typeof first) => {
        const text = (await admin(proc.metricsPort, "/metrics")).body;
        return metric(text, "collapser_waiting_callers");
      };
      await until(
        async () =>
          backend.calls.Unary === 1 && (await served(first)) + (await served(second)) === clients.length,
        "every caller waiting, on one backend call",
      );
      assert.ok((await served(first)) > 0 && (await served(second)) > 0, "both processes took connections");
      release.open();
      for (const result of await Promise.all(calls)) {
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
        assert.deepEqual(parse(result.response).echo, { item: "shared port" });
      }
      assert.equal(backend.calls.Unary, 1, "one backend call for both processes");
    } finally {
      for (const client of clients) client.close();
    }
  } finally {
    backend.close();
  }
});
