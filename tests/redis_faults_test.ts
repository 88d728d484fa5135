/**
 * The shared tier when Redis fails: down at start, killed mid-run, slow, refusing auth, and a lock holder
 * that dies. In every case no client call fails, the proxies fall back to collapsing alone, and the tier
 * comes back by itself when Redis does.
 */

import { needs } from "./_needs.ts";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  admin,
  gate,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";
import { freePort, redisConfig, startFleet, startRedis } from "./_redis.ts";

/** `Deno.test`, ignored where redis-server is missing (see _needs.ts). */
const test = needs("redis-server").test;

/** Unary calls with distinct payloads through `clients`, round robin; every one must succeed. */
async function traffic(clients: grpc.Client[], tag: string, n: number): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => unary(clients[i % clients.length], "/test.Test/Unary", { tag, i })),
  );
  const failed = results.filter((r) => r.status.code !== grpc.status.OK);
  assert.equal(
    failed.length,
    0,
    `failed calls: ${failed.map((r) => r.status.details).slice(0, 3).join("; ")}`,
  );
}

test("Redis tier: Redis down at start → calls are served locally; when Redis starts the tier comes up by itself", async () => {
  const port = freePort();
  const backend = await startTestBackend();
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(`redis://127.0.0.1:${port}`));
    for (const proxy of fleet.proxies) {
      assert.equal(proxy.tier!.up, false);
      assert.equal(proxy.tier!.stats.outages, 1, "one outage, from start-up");
    }
    await traffic(fleet.clients, "before", 50);
    assert.equal(fleet.proxies[0].tier!.stats.outages, 1, "still one outage: not one per call or attempt");
    await using _redis = await startRedis({ port });
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up by itself");
    const before = backend.calls.Unary;
    await traffic(fleet.clients, "after", 50);
    assert.ok(fleet.proxies.some((p) => p.tier!.stats.lookups.lock > 0), "the tier is in use again");
    // The same 50 payloads again through the other proxy: every one is answered from Redis.
    await traffic([...fleet.clients].reverse(), "after", 50);
    assert.equal(backend.calls.Unary - before, 50, "the second round came from the shared tier");
  } finally {
    backend.close();
  }
});

test("Redis tier: Redis killed mid-run → 0 failed calls; restarted → the tier resumes by itself", async () => {
  await using redis = await startRedis();
  const backend = await startTestBackend();
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const running = traffic(fleet.clients, "during", 400);
    await until(() => backend.calls.Unary >= 50, "traffic to be flowing");
    await redis.kill();
    await running;
    await traffic(fleet.clients, "down", 100);
    for (const proxy of fleet.proxies) {
      assert.equal(proxy.tier!.up, false, "the tier noticed");
      assert.equal(proxy.tier!.stats.outages, 1, "one outage");
    }
    await redis.restart();
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to resume by itself");
    const before = backend.calls.Unary;
    await traffic(fleet.clients, "back", 50);
    await traffic([...fleet.clients].reverse(), "back", 50);
    assert.equal(backend.calls.Unary - before, 50, "shared again after the restart");
  } finally {
    backend.close();
  }
});

test("Redis tier: a slow Redis (DEBUG SLEEP) → calls fall back within --redis-timeout; the tier comes back after", async () => {
  await using redis = await startRedis({ args: ["--enable-debug-command", "yes"] });
  const backend = await startTestBackend();
  try {
    await using fleet = await startFleet(backend, 1, redisConfig(redis.url, { timeoutMs: 100 }));
    const [proxy] = fleet.proxies;
    await until(() => proxy.tier!.up, "the tier to come up");
    const sleeping = redis.command("DEBUG", "SLEEP", "1.5");
    sleeping.then((reply) => assert.match(reply, /^\+OK/, "DEBUG SLEEP must be allowed"));
    // Calls go on until one of them meets the sleeping Redis (the tier goes down): none may fail.
    let round = 0;
    while (proxy.tier!.up) {
      await traffic(fleet.clients, `slow${round++}`, 5);
      if (round > 200) assert.fail("the tier never noticed the sleeping Redis");
    }
    await traffic(fleet.clients, "while-slow", 20);
    assert.ok(proxy.tier!.stats.outages >= 1);
    await sleeping;
    await until(() => proxy.tier!.up, "the tier to come back after the sleep");
  } finally {
    backend.close();
  }
});

test("Redis tier: a lock holder that dies → the waiting proxy calls the backend itself once the lock expires", async () => {
  await using redis = await startRedis();
  // The first call is held forever (its proxy dies holding the lock); later calls are answered at once.
  let calls = 0;
  const never = gate();
  const backend = await startTestBackend({
    Unary(call, callback) {
      if (++calls === 1) return never.promise;
      callback(null, Buffer.from(JSON.stringify({ echo: parse(call.request), n: calls })));
    },
  });
  try {
    // The waiting proxy first, so that it asks while the dying one's lock (2 s) still holds.
    await using fleet = await startFleet(
      backend,
      1,
      redisConfig(redis.url, { prefix: "dies:", lockTtlMs: 2_000 }),
    );
    const [proxy] = fleet.proxies;
    await until(() => proxy.tier!.up, "the tier to come up");
    await using dying = await startCollapserProcess([
      "--cache-ttl",
      "10s",
      "--redis",
      redis.url,
      "--redis-lock-ttl",
      "2s",
      "--redis-prefix",
      "dies:",
    ], { BACKEND_ADDRESS: backend.address });
    const doomed = newClient(dying.port);
    const lost = unary(doomed, "/test.Test/Unary", { item: "orphan" });
    await until(() => calls === 1, "the first proxy to lead");
    const waiting = unary(fleet.clients[0], "/test.Test/Unary", { item: "orphan" });
    await until(() => proxy.tier!.stats.lookups.wait === 1, "the second proxy to wait on the lock");
    dying.signal("SIGKILL");
    const result = await waiting;
    assert.equal(result.status.code, grpc.status.OK, result.status.details);
    assert.deepEqual(parse(result.response).echo, { item: "orphan" });
    const { waits } = proxy.tier!.stats;
    assert.equal(
      waits.free + waits.timeout,
      1,
      `gave up on the dead holder's lock: ${JSON.stringify(waits)}`,
    );
    assert.equal(calls, 2);
    doomed.close();
    await lost;
  } finally {
    never.open();
    backend.close();
  }
});

test("Redis tier (process): Redis refusing auth → one warning, calls served, /ready ready, collapser_redis_up 0", async () => {
  await using redis = await startRedis({ args: ["--requirepass", "secret"] });
  const backend = await startTestBackend();
  try {
    await using proc = await startCollapserProcess([
      "--redis",
      `redis://:not-the-password-7f3a@127.0.0.1:${redis.port}`,
    ], {
      BACKEND_ADDRESS: backend.address,
    });
    const client = newClient(proc.port);
    try {
      await traffic([client], "auth", 100);
    } finally {
      client.close();
    }
    // node-redis retries about once a second: let a few attempts fail.
    const metrics = async () => (await admin(proc.metricsPort, "/metrics")).body;
    await until(async () => /collapser_redis_outages_total 1/.test(await metrics()), "the outage in metrics");
    assert.match(await metrics(), /^collapser_redis_up 0$/m);
    assert.equal((await admin(proc.metricsPort, "/ready")).status, 200, "ready: Redis is not the backend");
    const warnings = proc.logs.filter((l) => String(l.message).startsWith("redis unavailable"));
    assert.equal(warnings.length, 1, `one warning, not one per call: ${JSON.stringify(warnings)}`);
    assert.match(String(warnings[0].message), /WRONGPASS|auth|password/i);
    assert.equal(
      JSON.stringify(proc.logs).includes("not-the-password"),
      false,
      "the password is never logged",
    );
  } finally {
    backend.close();
  }
});
