import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { TtlCache } from "../src/core/ttl_cache.ts";

Deno.test("TtlCache expires entries by the given clock and evicts the oldest for room", async (t) => {
  const clock = FakeTimers.createClock();
  await t.step("expiry", () => {
    const cache = new TtlCache<string>({ now: () => clock.now });
    cache.set("a", "A", 1, { ttlMs: 100 });
    clock.tick(50);
    cache.set("b", "B", 1, { ttlMs: 100 });
    clock.tick(49);
    assert.equal(cache.get("a"), "A");
    clock.tick(1);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.get("b"), "B");
    assert.equal(cache.size, 1, "expired entries are swept");
    assert.equal(cache.evictions, 0, "expiry is not eviction");
  });
  await t.step("entry bound", () => {
    const cache = new TtlCache<number>({ maxEntries: 3, now: () => clock.now });
    for (let i = 0; i < 5; i++) cache.set(`k${i}`, i, 1, { ttlMs: 1000 });
    assert.equal(cache.size, 3);
    assert.equal(cache.get("k0"), undefined);
    assert.equal(cache.get("k4"), 4);
    assert.equal(cache.evictions, 2);
  });
  await t.step("byte bound, and a value larger than the bound is not stored", () => {
    const cache = new TtlCache<number>({ maxBytes: 100, now: () => clock.now });
    cache.set("a", 1, 60, { ttlMs: 1000 });
    cache.set("b", 2, 30, { ttlMs: 1000 });
    cache.set("c", 3, 30, { ttlMs: 1000 });
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.bytes, 60);
    assert.equal(cache.set("huge", 4, 101, { ttlMs: 1000 }), false);
    assert.equal(cache.get("huge"), undefined);
  });
  await t.step("invalid options are rejected with a clear message", () => {
    assert.throws(() => new TtlCache({ maxEntries: 0 }), /maxEntries must be an integer >= 1: received 0/);
    assert.throws(() => new TtlCache({ maxBytes: -1 }), /maxBytes/);
    assert.throws(() => new TtlCache().set("k", 1, 1, { ttlMs: -1 }), /ttlMs and graceMs/);
    assert.throws(() => new TtlCache().set("k", 1, 1, { ttlMs: 1, graceMs: Infinity }), /ttlMs and graceMs/);
  });
});

Deno.test("TtlCache evicts in insertion order, counting a replaced entry as new", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<string>({ maxEntries: 3, now: () => clock.now });
  cache.set("a", "A1", 1, { ttlMs: 100 });
  cache.set("b", "B", 1, { ttlMs: 100 });
  cache.set("c", "C", 1, { ttlMs: 100 });
  cache.set("a", "A2", 1, { ttlMs: 100 }); // replaces a; b is now the oldest
  cache.set("d", "D", 1, { ttlMs: 100 });
  assert.equal(cache.get("b"), undefined);
  assert.equal(cache.get("a"), "A2");
  assert.equal(cache.get("c"), "C");
  assert.equal(cache.get("d"), "D");
  cache.delete("c");
  cache.set("e", "E", 1, { ttlMs: 100 });
  cache.set("f", "F", 1, { ttlMs: 100 }); // a is the oldest live entry now
  assert.equal(cache.get("a"), undefined);
  assert.deepEqual([cache.get("d"), cache.get("e"), cache.get("f")], ["D", "E", "F"]);
  assert.equal(cache.size, 3);
  assert.equal(cache.bytes, 3);
});

Deno.test("TtlCache stays exact through many expiries and replacements", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<number>({ now: () => clock.now });
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 500; i++) cache.set(`k${i % 300}`, round, 2, { ttlMs: 10 });
    assert.equal(cache.size, 300);
    assert.equal(cache.bytes, 600);
    clock.tick(10);
  }
  cache.set("last", 1, 5, { ttlMs: 10 });
  assert.equal(cache.size, 1, "everything older expired");
  assert.equal(cache.bytes, 5);
  assert.equal(cache.evictions, 0);
});

Deno.test("TtlCache gives each entry its own TTL, expiring and evicting the first to expire first", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<string>({ maxEntries: 3, now: () => clock.now });
  cache.set("long", "L", 1, { ttlMs: 1000 });
  cache.set("short", "S", 1, { ttlMs: 10 });
  cache.set("mid", "M", 1, { ttlMs: 100 });
  clock.tick(10);
  assert.equal(cache.get("short"), undefined);
  assert.equal(cache.get("mid"), "M");
  cache.set("short", "S2", 1, { ttlMs: 10 });
  cache.set("x", "X", 1, { ttlMs: 500 }); // full: "short" (10 ms) stops being fresh first, so it goes
  assert.equal(cache.get("short"), undefined);
  assert.deepEqual([cache.get("long"), cache.get("mid"), cache.get("x")], ["L", "M", "X"]);
  assert.equal(cache.evictions, 1);
  clock.tick(90);
  assert.equal(cache.get("mid"), undefined);
  assert.equal(cache.get("long"), "L");
  assert.equal(cache.set("nothing", "N", 1, { ttlMs: 0 }), false, "TTL 0 and no grace: nothing to keep");
  assert.equal(cache.size, 2);
});

Deno.test("TtlCache keeps an entry for its grace after the TTL, for getStale() only", async (t) => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<string>({ maxEntries: 2, now: () => clock.now });
  await t.step("fresh: get() yes, getStale() no", () => {
    cache.set("k", "V", 1, { ttlMs: 100, graceMs: 1000 });
    clock.tick(99);
    assert.equal(cache.get("k"), "V");
    assert.equal(cache.getStale("k"), undefined);
  });
  await t.step("past the TTL, within the grace: get() no, getStale() yes", () => {
    clock.tick(1);
    assert.equal(cache.get("k"), undefined);
    assert.equal(cache.getStale("k"), "V");
    clock.tick(999);
    assert.equal(cache.getStale("k"), "V");
  });
  await t.step("past the grace: gone", () => {
    clock.tick(1);
    assert.equal(cache.getStale("k"), undefined);
    assert.equal(cache.get("k"), undefined);
    assert.equal(cache.size, 0);
  });
  await t.step("TTL 0 with a grace is kept for getStale() only", () => {
    cache.set("z", "Z", 1, { ttlMs: 0, graceMs: 50 });
    assert.equal(cache.get("z"), undefined);
    assert.equal(cache.getStale("z"), "Z");
  });
  await t.step("stale entries count against the bounds and are evicted before fresh ones", () => {
    cache.set("fresh", "F", 1, { ttlMs: 1000 });
    cache.set("new", "N", 1, { ttlMs: 1000 });
    assert.equal(cache.getStale("z"), undefined, "the stale entry made room");
    assert.equal(cache.get("fresh"), "F");
    assert.equal(cache.size, 2);
  });
});

Deno.test("TtlCache keeps exact expiry with many distinct TTLs (one heap, not one FIFO per TTL)", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<number>({ now: () => clock.now });
  for (let i = 0; i < 1_000; i++) cache.set(`k${i}`, i, 1, { ttlMs: ((i * 7919) % 1000) + 1 });
  for (let t = 1; t <= 1000; t++) {
    clock.tick(1);
    const fresh = [...Array(1_000).keys()].filter((i) => cache.get(`k${i}`) !== undefined).length;
    const expected = [...Array(1_000).keys()].filter((i) => ((i * 7919) % 1000) + 1 > t).length;
    if (t % 97 === 0 || t === 1000) assert.equal(fresh, expected, `fresh entries at ${t} ms`);
  }
  cache.set("last", 0, 1, { ttlMs: 5 });
  assert.equal(cache.size, 1, "every expired entry swept");
});

Deno.test("TtlCache evicts the entry that stops being fresh first, across TTLs", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<string>({ maxEntries: 3, now: () => clock.now });
  cache.set("30s", "a", 1, { ttlMs: 30_000 });
  cache.set("5s", "b", 1, { ttlMs: 5_000 });
  cache.set("60s", "c", 1, { ttlMs: 60_000 });
  cache.set("new", "d", 1, { ttlMs: 10_000 });
  assert.equal(cache.get("5s"), undefined);
  assert.deepEqual([cache.get("30s"), cache.get("60s"), cache.get("new")], ["a", "c", "d"]);
});

Deno.test("TtlCache.deleteWhere() removes every matching entry, fresh or stale, and counts them", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<string>({ now: () => clock.now });
  for (let i = 0; i < 10; i++) cache.set(`k${i}`, i % 2 ? "odd" : "even", 3, { ttlMs: 10, graceMs: 100 });
  clock.tick(20);
  assert.equal(cache.deleteWhere((_key, value) => value === "odd"), 5);
  assert.equal(cache.size, 5);
  assert.equal(cache.bytes, 15);
  assert.equal(cache.getStale("k1"), undefined);
  assert.equal(cache.getStale("k2"), "even");
});

Deno.test("TtlCache: a deleted entry's value is let go at once, and dead slots do not pile up", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<{ big: Uint8Array }>({ now: () => clock.now });
  const values = Array.from({ length: 5_000 }, () => ({ big: new Uint8Array(1) }));
  values.forEach((value, i) => cache.set(`k${i}`, value, 1, { ttlMs: 3_600_000 }));
  assert.equal(cache.deleteWhere(() => true), 5_000);
  assert.ok(values.every((value) => value.big.byteLength === 1)); // (still ours: the cache dropped them)
  assert.ok(cache.slots <= 64, `dead slots compacted away: ${cache.slots}`);
  // Long TTLs: the slots would sit in the heap for an hour; they are compacted away instead. Replacing the
  // same keys over and over stays bounded too.
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 500; i++) cache.set(`r${i}`, values[i], 1, { ttlMs: 3_600_000 });
  }
  assert.equal(cache.size, 500);
  assert.equal(cache.bytes, 500);
  assert.ok(cache.slots <= 2 * 500 + 64, `slots stay bounded: ${cache.slots}`);
});
