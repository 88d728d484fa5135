/**
 * ShardHealth (src/fleet/shard_health.ts), one circuit breaker per Cluster master, on a fake clock: a
 * failure opens it at once, timeouts only three in a row, one trial call after the retry time, an answer
 * closes it, and a master no longer serving keys is forgotten.
 */

import assert from "node:assert/strict";
import { ShardUnavailable } from "../src/fleet/link.ts";
import { ShardHealth } from "../src/fleet/shard_health.ts";
import { TierTimeout } from "../src/fleet/tier_health.ts";

function clocked() {
  let now = 0;
  const health = new ShardHealth({ retryMs: 1_000, now: () => now });
  return { health, advance: (ms: number) => now += ms };
}

const gone = (shard: string) =>
  new ShardUnavailable(shard, { cause: new Error("Socket closed unexpectedly") });

Deno.test("ShardHealth: a shard's failure opens its breaker at once; one trial after retryMs; an answer closes it", () => {
  const { health, advance } = clocked();
  const a = "master 10.0.0.1:7000", b = "master 10.0.0.2:7000";
  assert.equal(health.failed(a, gone(a), false), true);
  assert.deepEqual(health.down(), [a]);
  assert.equal(health.outages, 1);
  assert.equal(health.usable(a), false, "down: its keys stay local");
  assert.equal(health.usable(b), true, "other masters are untouched");
  advance(999);
  assert.equal(health.usable(a), false);
  advance(1);
  assert.equal(health.usable(a), true, "one trial call");
  assert.equal(health.usable(a), false, "only one");
  health.failed(a, gone(a), false);
  assert.equal(health.outages, 1, "a failed trial is the same outage");
  advance(1_000);
  assert.equal(health.usable(a), true);
  health.answered(a);
  assert.deepEqual(health.down(), []);
  assert.equal(health.usable(a), true);
  assert.equal(health.usable(a), true, "closed: every call goes");
});

Deno.test("ShardHealth: timeouts open a breaker only three in a row; other errors are the whole tier's", () => {
  const { health } = clocked();
  const a = "master 10.0.0.1:7000";
  const late = new TierTimeout(250);
  assert.equal(health.failed(a, late, true), true);
  assert.equal(health.failed(a, late, true), true);
  assert.deepEqual(health.down(), [], "two late replies: still up");
  health.answered(a);
  health.failed(a, late, true);
  health.failed(a, late, true);
  assert.deepEqual(health.down(), [], "an answer in between resets the count");
  health.failed(a, late, true);
  assert.deepEqual(health.down(), [a], "three in a row");
  assert.equal(
    health.failed(a, new Error("WRONGPASS invalid username-password pair"), false),
    false,
    "not the shard's to judge",
  );
});

Deno.test("ShardHealth: a master that no longer serves keys (failed over) is forgotten", () => {
  const { health } = clocked();
  const old = "master 10.0.0.1:7000", promoted = "master 10.0.0.4:7000";
  health.failed(old, gone(old), false);
  assert.deepEqual(health.down([old, promoted]), [old]);
  assert.deepEqual(health.down([promoted]), [], "the slot map no longer names it");
  assert.equal(health.usable(old), true);
});

Deno.test("ShardHealth: a passing refusal (TRYAGAIN while a slot migrates) counts like a late reply", () => {
  const { health } = clocked();
  const a = "master 10.0.0.1:7000";
  const tryAgain = new ShardUnavailable(a, {
    cause: new Error("TRYAGAIN Multiple keys request"),
    transient: true,
  });
  assert.equal(health.failed(a, tryAgain, false), true, "the shard's to judge");
  assert.equal(health.failed(a, tryAgain, false), true);
  assert.deepEqual(health.down(), [], "two: the master is not down");
  health.failed(a, tryAgain, false);
  assert.deepEqual(health.down(), [a], "three in a row");
});
