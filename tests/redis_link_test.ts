/**
 * The shared tier's three Lua scripts against a real redis-server, through the real client: what each
 * returns and leaves behind, token checks, refresh freshness, and reloading after a Redis forgets them.
 */

import { needs } from "./_needs.ts";
import assert from "node:assert/strict";
import { parseRedisUrl } from "../src/fleet/redis_config.ts";
import { openRedisLink, singleKeys } from "../src/fleet/redis_link.ts";
import type { RedisLink, TierKeys } from "../src/fleet/link.ts";
import { until } from "./_helpers.ts";
import { type RedisServer, startRedis } from "./_redis.ts";

/** `Deno.test`, ignored where redis-server is missing (see _needs.ts). */
const test = needs("redis-server").test;

function keys(name: string): TierKeys {
  const k = singleKeys("t:", name);
  assert.deepEqual(k, {
    answer: `t:{${name}}:a`,
    lock: `t:{${name}}:l`,
    waiters: `t:{${name}}:w`,
    channel: "t:answers",
  });
  return k;
}

async function withLink(redis: RedisServer, body: (link: RedisLink) => Promise<void>): Promise<void> {
  const link = openRedisLink({
    ...parseRedisUrl(redis.url),
    prefix: "t:",
    maxBytes: 1024,
    timeoutMs: 1_000,
    lockTtlMs: 1_000,
  });
  try {
    await until(async () => {
      try {
        await link.look(keys("connected?"), 0);
        return true;
      } catch {
        return false;
      }
    }, "the link to connect");
    await body(link);
  } finally {
    await link.close();
  }
}

const bytes = (text: string) => new TextEncoder().encode(text);

test("Redis link: acquire takes the lock, then others wait; settle stores, releases and tells waiters", async () => {
  await using redis = await startRedis();
  await withLink(redis, async (link) => {
    const published: string[] = [];
    await link.subscribe("t:", (message) => published.push(new TextDecoder().decode(message)));
    const k = keys("k1");
    assert.deepEqual(await link.acquire(k, "token-a", 5_000, 0), { kind: "lock" });
    assert.deepEqual(await link.acquire(k, "token-b", 5_000, 0), { kind: "wait" });
    assert.deepEqual(await link.look(k, 0), { kind: "wait" }, "the lock is held");
    assert.equal(
      await link.settle(k, "token-b", bytes("not mine"), 10_000, bytes("K|")),
      "lost",
    );
    assert.equal(await redis.command("EXISTS", k.answer), ":0\r\n", "a wrong token stores nothing");
    assert.equal(
      await link.settle(k, "token-a", bytes("answer"), 10_000, bytes("K|")),
      "published",
    );
    await until(() => published.length === 1, "the answer to be published to the waiter");
    assert.deepEqual(published, ["K|answer"], "notice then answer, in one message");
    assert.equal(await redis.command("EXISTS", k.lock), ":0\r\n", "lock released");
    const found = await link.look(k, 0);
    assert.equal(found.kind, "hit");
    assert.equal(new TextDecoder().decode((found as { value: Uint8Array }).value), "answer");
    assert.ok((found as { ttlMs: number }).ttlMs > 5_000 && (found as { ttlMs: number }).ttlMs <= 10_000);
  });
});

test("Redis link: nobody waiting → nothing published; ttl 0 → nothing stored; lock gone → free", async () => {
  await using redis = await startRedis();
  await withLink(redis, async (link) => {
    const published: Uint8Array[] = [];
    await link.subscribe("t:", (message) => published.push(message));
    const k = keys("k2");
    assert.deepEqual(await link.acquire(k, "a", 5_000, 0), { kind: "lock" });
    assert.equal(await link.settle(k, "a", bytes("x"), 0, bytes("K|")), "released");
    assert.equal(await redis.command("DBSIZE"), ":0\r\n", "nothing stored, lock released");
    assert.deepEqual(await link.look(k, 0), { kind: "free" });
    // Messages reach the subscriber in the order Redis published them: once a sentinel published after the
    // settle has arrived, anything the settle published would have too.
    await redis.command("PUBLISH", "t:answers", "sentinel");
    await until(() => published.length > 0, "the sentinel");
    assert.deepEqual(published.map((m) => new TextDecoder().decode(m)), ["sentinel"]);
  });
});

test("Redis link: a refresh takes a stored answer only if it has more life left than asked", async () => {
  await using redis = await startRedis();
  await withLink(redis, async (link) => {
    const k = keys("k3");
    await redis.command("SET", k.answer, "stored", "PX", "10000");
    assert.equal((await link.acquire(k, "a", 5_000, 0)).kind, "hit", "a miss takes any stored answer");
    assert.equal((await link.acquire(k, "a", 5_000, 5_000)).kind, "hit", "fresh enough for a refresh");
    assert.deepEqual(await link.acquire(k, "b", 5_000, 20_000), { kind: "lock" }, "too old: refresh it");
    assert.deepEqual(await link.look(k, 20_000), { kind: "wait" }, "a poll also refuses it, and waits");
    assert.equal((await link.look(k, 0)).kind, "hit");
  });
});

test("Redis link: after SCRIPT FLUSH (or a restarted Redis) the scripts are loaded again", async () => {
  await using redis = await startRedis();
  await withLink(redis, async (link) => {
    assert.deepEqual(await link.acquire(keys("k4"), "a", 5_000, 0), { kind: "lock" });
    assert.equal(await redis.command("SCRIPT", "FLUSH"), "+OK\r\n");
    assert.deepEqual(await link.acquire(keys("k5"), "a", 5_000, 0), { kind: "lock" });
  });
});

test("Redis link: extend keeps a lock alive only for its holder", async () => {
  await using redis = await startRedis();
  await withLink(redis, async (link) => {
    const k = keys("k6");
    assert.deepEqual(await link.acquire(k, "mine", 1_000, 0), { kind: "lock" });
    assert.equal(await link.extend(k, "theirs", 60_000), false);
    assert.equal(await link.extend(k, "mine", 60_000), true);
    const pttl = Number((await redis.command("PTTL", k.lock)).slice(1));
    assert.ok(pttl > 1_000 && pttl <= 60_000, `extended: ${pttl} ms left`);
  });
});
