/**
 * Caching like an HTTP cache across a fleet, on real parts: a real redis-server, real proxies (in this
 * process, each with its own Redis connections) in front of one grpc-js backend whose answers carry
 * `surrogate-key` tags and `cache-control` as asked, and grpc-js clients. Purges: one proxy is asked to purge;
 * every proxy drops its matching answers, and the answers stored in Redis are not taken again. And what an
 * answer's `max-age` and a caller's `no-cache` mean for Redis.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { Policy } from "../src/policy/policy.ts";
import { Proxy } from "../src/server/proxy.ts";
import {
  bytes,
  metadata,
  newClient,
  parse,
  startTestBackend,
  unary,
  type UnaryResult,
  until,
} from "./_helpers.ts";
import { redisConfig, startFleet, startRedis } from "./_redis.ts";

/** A backend whose answers are numbered and carry the tags each request asks for. */
async function taggingBackend() {
  let n = 0;
  return await startTestBackend({
    Unary(call, callback) {
      const ask = parse(call.request) as { item: unknown; sk?: string; cc?: string };
      const headers = new grpc.Metadata();
      if (ask.sk) headers.set("surrogate-key", ask.sk);
      if (ask.cc) headers.set("cache-control", ask.cc);
      call.sendMetadata(headers);
      callback(null, bytes({ item: ask.item, n: ++n }));
    },
  });
}

const n = (r: UnaryResult) => {
  assert.equal(r.status.code, grpc.status.OK, r.status.details);
  return parse(r.response as Buffer).n as number;
};
const status = (r: UnaryResult) => String(r.status.metadata.get("cache-status")[0]);

Deno.test("purge across 3 proxies on a real Redis: by tag, every proxy drops its copies and Redis's copy is not taken again", async () => {
  await using redis = await startRedis();
  const backend = await taggingBackend();
  try {
    await using fleet = await startFleet(backend, 3, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const call = (i: number, item: string, sk?: string) =>
      unary(fleet.clients[i], "/test.Test/Unary", { item, sk });
    // Every proxy holds product-123's answer (one backend call: the others took it from Redis), and another.
    const first = n(await call(0, "p123", "product-123 catalog"));
    await until(() => fleet.proxies[0].tier!.stats.settles.stored === 1, "the answer stored in Redis");
    for (const i of [1, 2]) {
      assert.equal(n(await call(i, "p123", "product-123 catalog")), first, `proxy ${i}: from Redis`);
    }
    const other = n(await call(1, "p456", "product-456 catalog"));
    assert.equal(backend.calls.Unary, 2);

    const result = await fleet.proxies[2].purge({ kind: "tag", value: "product-123" });
    assert.deepEqual(result, {
      kind: "tag",
      value: "product-123",
      dropped: 1,
      inFlight: 0,
      fleet: { seq: 1, proxies: 3 },
    });
    // The other two hear it and drop their own copies.
    await until(
      () => fleet.proxies.every((p) => p.purges.stats.dropped === 1 && p.purges.fleetMark === 1),
      "every proxy to drop its copy",
    );
    assert.deepEqual(fleet.proxies.map((p) => p.purges.recent(1)[0].origin), ["fleet", "fleet", "admin"]);

    // Redis still holds the old answer: proxy 0 does not take it, but calls the backend (and stores anew).
    const after = await call(0, "p123", "product-123 catalog");
    assert.ok(n(after) > first, "a fresh answer");
    assert.match(status(after), /^collapser; fwd=miss; stored; key=/);
    assert.equal(backend.calls.Unary, 3);
    await until(() => fleet.proxies[0].tier!.stats.settles.stored === 2, "the fresh answer stored in Redis");
    // ... which the others now take from Redis, and what the purge did not name is still shared.
    assert.equal(n(await call(1, "p123", "product-123 catalog")), n(after));
    assert.equal(n(await call(2, "p456", "product-456 catalog")), other);
    assert.equal(backend.calls.Unary, 3);
  } finally {
    backend.close();
  }
});

Deno.test("purge across proxies by method glob and by key: an answer only Redis holds is not taken after it", async () => {
  await using redis = await startRedis();
  const backend = await taggingBackend();
  try {
    await using fleet = await startFleet(backend, 3, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const call = (i: number, item: string) => unary(fleet.clients[i], "/test.Test/Unary", { item });
    const a = n(await call(0, "a"));
    const b = n(await call(0, "b"));
    await until(() => fleet.proxies[0].tier!.stats.settles.stored === 2, "both answers stored in Redis");

    // Proxy 1 purges the method: it had no copy of its own; Redis's copies stop counting.
    const byMethod = await fleet.proxies[1].purge({ kind: "method", value: "/test.Test/*" });
    assert.equal(byMethod.dropped, 0);
    assert.equal(byMethod.fleet?.proxies, 3);
    await until(() => fleet.proxies[2].purges.fleetMark === 1, "proxy 2 to hear of it");
    assert.ok(n(await call(2, "a")) > b, "proxy 2 does not take a from Redis");
    assert.equal(fleet.proxies[2].tier!.stats.lookups.hit, 1, "it found it there, and refused it");

    // By key: the 12 hex digits cache-status shows.
    await until(() => fleet.proxies[2].tier!.stats.settles.stored === 1, "a's fresh answer stored");
    const fresh = await call(1, "a");
    const key = /key="([0-9a-f]{12})"/.exec(status(fresh))![1];
    const byKey = await fleet.proxies[0].purge({ kind: "key", value: key });
    assert.equal(byKey.fleet?.seq, 2);
    await until(() => fleet.proxies.every((p) => p.purges.fleetMark === 2), "every proxy to hear of it");
    const calls = backend.calls.Unary;
    assert.ok(n(await call(1, "a")) > n(fresh), "proxy 1 dropped its copy and refused Redis's");
    assert.equal(backend.calls.Unary, calls + 1);
    assert.notEqual(a, b);
  } finally {
    backend.close();
  }
});

Deno.test("a proxy that starts after a purge reads the fleet's purge log, and refuses answers stored before it", async () => {
  await using redis = await startRedis();
  const backend = await taggingBackend();
  const config = redisConfig(redis.url);
  try {
    await using fleet = await startFleet(backend, 1, config);
    await until(() => fleet.proxies[0].tier!.up, "the tier to come up");
    const old = n(await unary(fleet.clients[0], "/test.Test/Unary", { item: "x", sk: "t" }));
    await until(() => fleet.proxies[0].tier!.stats.settles.stored === 1, "the answer stored in Redis");
    // The answer stays in Redis, stamped with the purge number its flight began with: 0, before both.
    await fleet.proxies[0].purge({ kind: "tag", value: "unrelated" });
    await fleet.proxies[0].purge({ kind: "tag", value: "t" });

    const late = await Proxy.start({
      backend: backend.address,
      host: "127.0.0.1",
      port: 0,
      redis: config,
      policy: new Policy({ ttlMs: 10_000 }),
    });
    const client = newClient(late.port);
    try {
      await until(() => late.tier!.up && late.purges.fleetMark === 2, "the late proxy to read the purge log");
      assert.deepEqual(late.purges.recent(2).map((p) => [p.kind, p.value, p.fleetSeq]), [
        ["tag", "t", 2],
        ["tag", "unrelated", 1],
      ]);
      assert.ok(
        n(await unary(client, "/test.Test/Unary", { item: "x", sk: "t" })) > old,
        "not the purged answer",
      );
    } finally {
      client.close();
      await late.close();
    }
  } finally {
    backend.close();
  }
});

Deno.test("purge with Redis down: applied on this proxy, and the answer says it did not reach the fleet", async () => {
  await using redis = await startRedis();
  const backend = await taggingBackend();
  try {
    await using fleet = await startFleet(backend, 1, redisConfig(redis.url, { timeoutMs: 300 }));
    const proxy = fleet.proxies[0];
    await until(() => proxy.tier!.up, "the tier to come up");
    n(await unary(fleet.clients[0], "/test.Test/Unary", { item: "x", sk: "t" }));
    await redis.kill();
    await until(() => !proxy.tier!.up, "the tier to go down");
    const result = await proxy.purge({ kind: "tag", value: "t" });
    assert.equal(result.dropped, 1);
    assert.equal(result.fleet, null);
    assert.match(result.fleetError ?? "", /^the purge reached this proxy only: /);
  } finally {
    backend.close();
  }
});

Deno.test("across the fleet: an answer's max-age is its TTL in Redis too; a caller's allowed no-cache skips Redis and refreshes it", async () => {
  await using redis = await startRedis();
  const backend = await taggingBackend();
  try {
    await using fleet = await startFleet(backend, 3, redisConfig(redis.url), {
      policy: new Policy({ ttlMs: 100, clientNoCache: true }),
    });
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const ask = { item: "m", cc: "max-age=30" };
    const first = n(await unary(fleet.clients[0], "/test.Test/Unary", ask));
    await until(() => fleet.proxies[0].tier!.stats.settles.stored === 1, "the answer stored in Redis");
    const keys = await redis.command("KEYS", `${fleet.proxies[0].tier!.prefix}*:a`);
    const key = keys.split("\r\n").find((line) => line.endsWith(":a"))!;
    const pttl = Number((await redis.command("PTTL", key)).match(/:(\d+)/)![1]);
    assert.ok(
      pttl > 25_000 && pttl <= 30_000,
      `stored for max-age (30 s), not the method's 100 ms: ${pttl} ms`,
    );

    const fresh = await unary(fleet.clients[1], "/test.Test/Unary", ask, {
      metadata: metadata({ "cache-control": "no-cache" }),
    });
    assert.ok(n(fresh) > first, "not Redis's answer: a backend call of its own");
    assert.match(status(fresh), /^collapser; fwd=request; stored; key=/);
    await until(() => fleet.proxies[1].tier!.stats.settles.stored === 1, "the fresh answer stored in Redis");
    assert.equal(
      n(await unary(fleet.clients[2], "/test.Test/Unary", ask)),
      n(fresh),
      "proxy 2 takes the fresh one",
    );
    assert.equal(backend.calls.Unary, 2);
  } finally {
    backend.close();
  }
});
