import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { TtlCache } from "../src/ttl_cache.ts";

Deno.test("TtlCache expires entries by the given clock and evicts the oldest for room", async (t) => {
  const clock = FakeTimers.createClock();
  await t.step("expiry", () => {
    const cache = new TtlCache<string>({ ttlMs: 100, now: () => clock.now });
    cache.set("a", "A", 1);
    clock.tick(50);
    cache.set("b", "B", 1);
    clock.tick(49);
    assert.equal(cache.get("a"), "A");
    clock.tick(1);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.get("b"), "B");
    assert.equal(cache.size, 1, "expired entries are swept");
    assert.equal(cache.evictions, 0, "expiry is not eviction");
  });
  await t.step("entry bound", () => {
    const cache = new TtlCache<number>({ ttlMs: 1000, maxEntries: 3, now: () => clock.now });
    for (let i = 0; i < 5; i++) cache.set(`k${i}`, i, 1);
    assert.equal(cache.size, 3);
    assert.equal(cache.get("k0"), undefined);
    assert.equal(cache.get("k4"), 4);
    assert.equal(cache.evictions, 2);
  });
  await t.step("byte bound, and a value larger than the bound is not stored", () => {
    const cache = new TtlCache<number>({ ttlMs: 1000, maxBytes: 100, now: () => clock.now });
    cache.set("a", 1, 60);
    cache.set("b", 2, 30);
    cache.set("c", 3, 30);
    assert.equal(cache.get("a"), undefined);
    assert.equal(cache.bytes, 60);
    assert.equal(cache.set("huge", 4, 101), false);
    assert.equal(cache.get("huge"), undefined);
  });
  await t.step("invalid options are rejected with a clear message", () => {
    assert.throws(() => new TtlCache({ ttlMs: 0 }), /ttlMs must be a finite number > 0: received 0/);
    assert.throws(() => new TtlCache({ ttlMs: 1, maxEntries: 0 }), /maxEntries/);
  });
});

Deno.test("TtlCache evicts in insertion order, counting a replaced entry as new", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<string>({ ttlMs: 100, maxEntries: 3, now: () => clock.now });
  cache.set("a", "A1", 1);
  cache.set("b", "B", 1);
  cache.set("c", "C", 1);
  cache.set("a", "A2", 1); // replaces a; b is now the oldest
  cache.set("d", "D", 1);
  assert.equal(cache.get("b"), undefined);
  assert.equal(cache.get("a"), "A2");
  assert.equal(cache.get("c"), "C");
  assert.equal(cache.get("d"), "D");
  cache.delete("c");
  cache.set("e", "E", 1);
  cache.set("f", "F", 1); // a is the oldest live entry now
  assert.equal(cache.get("a"), undefined);
  assert.deepEqual([cache.get("d"), cache.get("e"), cache.get("f")], ["D", "E", "F"]);
  assert.equal(cache.size, 3);
  assert.equal(cache.bytes, 3);
});

Deno.test("TtlCache stays exact through many expiries and replacements", () => {
  const clock = FakeTimers.createClock();
  const cache = new TtlCache<number>({ ttlMs: 10, now: () => clock.now });
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 500; i++) cache.set(`k${i % 300}`, round, 2);
    assert.equal(cache.size, 300);
    assert.equal(cache.bytes, 600);
    clock.tick(10);
  }
  cache.set("last", 1, 5);
  assert.equal(cache.size, 1, "everything older expired");
  assert.equal(cache.bytes, 5);
  assert.equal(cache.evictions, 0);
});
