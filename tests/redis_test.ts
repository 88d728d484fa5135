/**
 * The shared tier on real parts: a real redis-server started by the test, several real proxies (in this
 * process, each with its own Redis connections) in front of one grpc-js backend, and grpc-js clients.
 * Faults (Redis down, killed, slow, refusing auth) are in tests/redis_faults_test.ts.
 */

import { needs } from "./_needs.ts";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { gate, metadata, parse, startTestBackend, unary, until } from "./_helpers.ts";
import { heldBackend, redisConfig, startFleet, startRedis } from "./_redis.ts";

/** `Deno.test`, ignored where redis-server is missing (see _needs.ts). */
const test = needs("redis-server").test;

test("Redis tier: a herd spread over three proxies makes exactly one backend call, and every caller gets its answer", async () => {
  await using redis = await startRedis();
  const release = gate();
  const backend = await startTestBackend(heldBackend(release.promise));
  try {
    await using fleet = await startFleet(backend, 3, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const perProxy = 20;
    const calls = fleet.clients.flatMap((client) =>
      Array.from({ length: perProxy }, () => unary(client, "/test.Test/Unary", { item: "hot" }))
    );
    // Everyone is waiting: one proxy holds the lock and made the backend call, the other two wait for it.
    await until(
      () => backend.calls.Unary === 1 && fleet.proxies.every((p) => p.collapser.stats().waiting === perProxy),
      "60 callers waiting and one backend call",
    );
    await until(
      () => fleet.proxies.filter((p) => p.tier!.stats.lookups.wait === 1).length === 2,
      "two proxies waiting on the third's lock",
    );
    release.open();
    const results = await Promise.all(calls);
    for (const result of results) {
      assert.equal(result.status.code, grpc.status.OK, result.status.details);
      assert.deepEqual(parse(result.response), { echo: { item: "hot" } });
    }
    assert.equal(backend.calls.Unary, 1, "one backend call for the whole fleet");
    for (const proxy of fleet.proxies) {
      const { lookups } = proxy.tier!.stats;
      const total = Object.values(lookups).reduce((a, b) => a + b, 0);
      assert.equal(total, 1, `a herd of ${perProxy} on one proxy is one lookup: ${JSON.stringify(lookups)}`);
    }
    const waits = fleet.proxies.map((p) => p.tier!.stats.waits.answer).sort();
    assert.deepEqual(waits, [0, 1, 1], "two proxies were answered by the published answer");
  } finally {
    backend.close();
  }
});

test("Redis tier: an answer one proxy cached is served by another within its TTL; other credentials are not", async () => {
  await using redis = await startRedis();
  const backend = await startTestBackend();
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const [a, b] = fleet.clients;
    const alice = { metadata: metadata({ authorization: "Bearer alice" }) };
    const first = await unary(a, "/test.Test/Unary", { item: 1 }, alice);
    assert.equal(first.status.code, grpc.status.OK);
    await until(() => fleet.proxies[0].tier!.stats.settles.stored === 1, "the answer to be stored");
    const second = await unary(b, "/test.Test/Unary", { item: 1 }, alice);
    assert.equal(second.status.code, grpc.status.OK);
    assert.deepEqual(parse(second.response), parse(first.response), "the same answer, from Redis");
    assert.equal(backend.calls.Unary, 1);
    assert.equal(fleet.proxies[1].tier!.stats.lookups.hit, 1);
    // Bob sends the same message with his own credentials: the key differs, so does the answer.
    const bob = await unary(b, "/test.Test/Unary", { item: 1 }, {
      metadata: metadata({ authorization: "Bearer bob" }),
    });
    assert.equal(bob.status.code, grpc.status.OK);
    assert.equal(parse(bob.response).auth, "Bearer bob");
    assert.equal(backend.calls.Unary, 2, "other credentials: a backend call of their own");
    // Stored with the method's TTL (10 s here), under the tier's prefix.
    const keys = await redis.command("KEYS", `${fleet.proxies[0].tier!.prefix}*:a`);
    assert.match(keys, /^\*2\r\n/, `two stored answers: ${JSON.stringify(keys)}`);
  } finally {
    backend.close();
  }
});

test("Redis tier: answers over --redis-max-bytes stay local; a proxy waiting for one calls the backend itself", async () => {
  await using redis = await startRedis();
  const release = gate();
  const backend = await startTestBackend(heldBackend(release.promise));
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(redis.url, { maxBytes: 16 }));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const [a, b] = fleet.clients;
    const first = unary(a, "/test.Test/Unary", { item: "big" });
    await until(() => backend.calls.Unary === 1, "the first proxy's backend call");
    const second = unary(b, "/test.Test/Unary", { item: "big" });
    await until(() => fleet.proxies[1].tier!.stats.lookups.wait === 1, "the second proxy to wait");
    release.open();
    for (const result of await Promise.all([first, second])) {
      assert.equal(result.status.code, grpc.status.OK, result.status.details);
      assert.deepEqual(parse(result.response), { echo: { item: "big" } });
    }
    assert.equal(fleet.proxies[1].tier!.stats.waits.notice, 1, "told to call the backend itself");
    assert.equal(backend.calls.Unary, 2);
    assert.equal(fleet.proxies[0].tier!.stats.settles.local_only, 1);
    assert.equal(await redis.command("DBSIZE"), ":0\r\n", "nothing stored, the lock released");
  } finally {
    backend.close();
  }
});

test("Redis tier: a lock holder that turns out to stream hands the lock back at once; the other proxy streams for itself", async () => {
  await using redis = await startRedis();
  const release = gate();
  const backend = await startTestBackend({
    ServerStream(call) {
      // Two messages now (the proxy learns it is a stream), the rest when the test says.
      call.write(Buffer.from(JSON.stringify({ seq: 0 })));
      call.write(Buffer.from(JSON.stringify({ seq: 1 })));
      release.promise.then(() => call.end());
    },
  });
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const [a, b] = fleet.clients;
    const stream = (client: grpc.Client) => {
      const call = client.makeServerStreamRequest(
        "/test.Test/ServerStream",
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.from("{}"),
      );
      const messages: unknown[] = [];
      call.on("data", (m: Buffer) => messages.push(parse(m)));
      call.on("error", () => {});
      const ended = new Promise<number>((resolve) =>
        call.on("status", (s: grpc.StatusObject) => resolve(s.code))
      );
      return { messages, ended };
    };
    const first = stream(a);
    await until(() => first.messages.length === 2, "the first proxy's stream to flow");
    await until(() => fleet.proxies[0].tier!.stats.settles.local_only === 1, "the lock handed back");
    const second = stream(b);
    await until(() => second.messages.length === 2, "the second proxy's own stream to flow, at once");
    assert.equal(backend.calls.ServerStream, 2);
    release.open();
    assert.equal(await first.ended, grpc.status.OK);
    assert.equal(await second.ended, grpc.status.OK);
  } finally {
    release.open();
    backend.close();
  }
});

test("Redis tier: a proxy that closes while holding a lock hands it back; the waiting proxy calls the backend itself at once", async () => {
  await using redis = await startRedis();
  let calls = 0;
  const never = gate();
  const backend = await startTestBackend({
    Unary(call, callback) {
      if (++calls === 1) return never.promise; // the closing proxy's call never answers
      callback(null, Buffer.from(JSON.stringify({ echo: parse(call.request) })));
    },
  });
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(redis.url, { lockTtlMs: 60_000 }));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const [a, b] = fleet.clients;
    const lost = unary(a, "/test.Test/Unary", { item: "k" });
    await until(() => calls === 1, "the first proxy to lead");
    const waiting = unary(b, "/test.Test/Unary", { item: "k" });
    await until(() => fleet.proxies[1].tier!.stats.lookups.wait === 1, "the second proxy to wait");
    await fleet.proxies[0].close();
    const result = await waiting;
    assert.equal(result.status.code, grpc.status.OK, result.status.details);
    assert.equal(fleet.proxies[1].tier!.stats.waits.notice, 1, "told at once, not left to a 60 s lock");
    await lost;
  } finally {
    never.open();
    backend.close();
  }
});

test("Redis tier: an availability failure is not passed on as an answer: the waiting proxy tries the backend itself", async () => {
  await using redis = await startRedis();
  let calls = 0;
  const release = gate();
  const backend = await startTestBackend({
    Unary(call, callback) {
      if (++calls === 1) {
        release.promise.then(() => callback({ code: grpc.status.UNAVAILABLE, details: "backend blip" }));
        return;
      }
      callback(null, Buffer.from(JSON.stringify({ echo: parse(call.request) })));
    },
  });
  try {
    await using fleet = await startFleet(backend, 2, redisConfig(redis.url));
    for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
    const [a, b] = fleet.clients;
    const first = unary(a, "/test.Test/Unary", { item: "k" });
    await until(() => calls === 1, "the first proxy to lead");
    const second = unary(b, "/test.Test/Unary", { item: "k" });
    await until(() => fleet.proxies[1].tier!.stats.lookups.wait === 1, "the second proxy to wait");
    release.open();
    assert.equal((await first).status.code, grpc.status.UNAVAILABLE);
    const result = await second;
    assert.equal(result.status.code, grpc.status.OK, "its own backend call succeeded");
    assert.equal(fleet.proxies[1].tier!.stats.waits.notice, 1);
    assert.equal(calls, 2);
  } finally {
    release.open();
    backend.close();
  }
});

test("Redis tier: proxies in front of different backends share nothing, even with the same prefix and Redis", async () => {
  await using redis = await startRedis();
  const one = await startTestBackend();
  const two = await startTestBackend();
  try {
    const config = redisConfig(redis.url);
    await using first = await startFleet(one, 1, config);
    await using second = await startFleet(two, 1, config);
    for (const proxy of [...first.proxies, ...second.proxies]) await until(() => proxy.tier!.up, "the tier");
    assert.equal(
      (await unary(first.clients[0], "/test.Test/Unary", { item: 1 })).status.code,
      grpc.status.OK,
    );
    await until(() => first.proxies[0].tier!.stats.settles.stored === 1, "the answer to be stored");
    assert.equal(
      (await unary(second.clients[0], "/test.Test/Unary", { item: 1 })).status.code,
      grpc.status.OK,
    );
    assert.equal(second.proxies[0].tier!.stats.lookups.hit, 0, "not served the other service's answer");
    assert.equal(one.calls.Unary, 1);
    assert.equal(two.calls.Unary, 1);
  } finally {
    one.close();
    two.close();
  }
});
