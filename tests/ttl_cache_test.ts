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
