/**
 * Benchmarks of the hot-key summary on the proxy's per-call path ({@linkcode HotKeys.record}, and the whole
 * {@linkcode StatusBoard.call} the proxy's observer makes per finished call), and of `top(20)`, which the
 * status page asks for at most once a second.
 *
 * Streams: one hot key; a Zipf mix (P(rank r) ∝ 1/r) over 10,000 keys with 1,000 counters, so most calls
 * hit a counter and the tail keeps evicting; and unique keys with a full summary, so every call evicts (also
 * with 10,000 and 100,000 counters: an O(1) eviction costs the same at any capacity). Keys are 64-hex
 * strings like real collapse keys, drawn from a seeded PRNG at module level so that no op builds a string or
 * draws a random number.
 *
 * Note on Deno's harness: a bench whose `fn` takes under 10 µs is timed in batches of 10,000 calls and
 * `b.start()`/`b.end()` are ignored, so anything a fast bench does outside the measured operation counts.
 * The per-call benches below do only the call plus an array read and an index increment.
 *
 * Target: ≤ 1 µs per call.
 *
 * @module
 */

import type { Role } from "../src/core/collapser.ts";
import { Status } from "../src/wire/grpc_wire.ts";
import { HotKeys } from "../src/admin/hot_keys.ts";
import type { CallReport } from "../src/server/observer.ts";
import { StatusBoard } from "../src/admin/status.ts";
import { METHOD } from "./_fixtures.ts";

// ---------------------------------------------------------------------------------------------------------
// Fixtures

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = mulberry32(20261129);

/** A 64-hex-digit string, as a collapse key (SHA-256 hex) looks. */
function hexKey(): string {
  let key = "";
  for (let i = 0; i < 8; i++) key += Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, "0");
  return key;
}

/** Ops cycle through streams of this many calls (a power of two: the index wraps with a mask). */
const STREAM = 1 << 20;
const MASK = STREAM - 1;
const ZIPF_KEYS = 10_000;
const CAPACITY = 1_000;

/** A stream of `STREAM` draws over `keys`, P(rank r) ∝ 1/(r+1). */
function zipfStream(keys: readonly string[]): string[] {
  const cdf = new Float64Array(keys.length);
  let sum = 0;
  for (let r = 0; r < keys.length; r++) cdf[r] = sum += 1 / (r + 1);
  return Array.from({ length: STREAM }, () => {
    const u = random() * sum;
    let lo = 0;
    let hi = keys.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return keys[lo];
  });
}

const HOT_KEY = hexKey();
const zipfKeys = Array.from({ length: ZIPF_KEYS }, hexKey);
const zipf = zipfStream(zipfKeys);
/** More keys than the summary can hold: by the time one comes round again it has long been evicted. */
const uniqueKeys = Array.from({ length: STREAM }, hexKey);
new Set(uniqueKeys); // flattens the concatenated strings and caches their hashes, as a digest's hex has them
/** Roles in the proportions of a busy collapsed method. */
const ROLES: readonly Role[] = [
  "leader",
  "follower",
  "follower",
  "follower",
  "cache",
  "cache",
  "cache",
  "cache",
];
const roles = Array.from({ length: STREAM }, (_, i) => ROLES[i % ROLES.length]);

/** A summary fed `warm` calls of `stream` first, so it is full before any timed op. */
function warmed(stream: readonly string[], warm: number): HotKeys {
  const hotKeys = new HotKeys({ capacity: CAPACITY, now: 0 });
  for (let i = 0; i < warm; i++) hotKeys.record(METHOD, stream[i & MASK], roles[i & MASK]);
  return hotKeys;
}

// ---------------------------------------------------------------------------------------------------------
// HotKeys.record(): ns/op = 1 call

const hot = warmed([HOT_KEY], 0);
let nextHot = 0;

Deno.bench({
  name: "HotKeys.record(), one hot key",
  group: "HotKeys.record(): ns/op = 1 call",
  baseline: true,
  fn() {
    hot.record(METHOD, HOT_KEY, roles[nextHot++ & MASK]);
  },
});

const mixed = warmed(zipf, STREAM);
let nextZipf = 0;

Deno.bench({
  name: "HotKeys.record(), Zipf over 10,000 keys, 1,000 counters",
  group: "HotKeys.record(): ns/op = 1 call",
  fn() {
    const i = nextZipf++ & MASK;
    mixed.record(METHOD, zipf[i], roles[i]);
  },
});

/** Unique keys through a full summary of `capacity` counters: every call evicts. */
function flood(capacity: number): () => void {
  const hotKeys = new HotKeys({ capacity, now: 0 });
  for (let i = 0; i < capacity; i++) hotKeys.record(METHOD, uniqueKeys[i], roles[i]);
  let next = capacity;
  return () => {
    const i = next++ & MASK;
    hotKeys.record(METHOD, uniqueKeys[i], roles[i]);
  };
}

const flood1k = flood(CAPACITY);

Deno.bench({
  name: "HotKeys.record(), unique keys, full summary (every call evicts)",
  group: "HotKeys.record(): ns/op = 1 call",
  fn: flood1k,
});

// The same flood with the larger summaries --hot-keys allows (up to 1,000,000): an eviction should cost the
// same at any capacity (a Set bucket made it grow with capacity: 0.5 µs at 1,000 counters, 20-29 µs at 131,072).
const flood10k = flood(10_000);
const flood100k = flood(100_000);

Deno.bench({
  name: "HotKeys.record(), unique keys, full summary of 1,000 counters",
  group: "HotKeys.record() eviction vs capacity: ns/op = 1 call",
  baseline: true,
  fn: flood1k,
});

Deno.bench({
  name: "HotKeys.record(), unique keys, full summary of 10,000 counters",
  group: "HotKeys.record() eviction vs capacity: ns/op = 1 call",
  fn: flood10k,
});

Deno.bench({
  name: "HotKeys.record(), unique keys, full summary of 100,000 counters",
  group: "HotKeys.record() eviction vs capacity: ns/op = 1 call",
  fn: flood100k,
});

// ---------------------------------------------------------------------------------------------------------
// StatusBoard.call(): the whole per-call cost of the status page to the proxy (a counter, a role check and
// HotKeys.record). The board is never started: no sampler, no timer.

const report = (key: string, i: number): CallReport => ({
  method: METHOD,
  outcome: roles[i],
  code: Status.OK,
  durationMs: 1,
  key,
});
const hotReports = Array.from({ length: ROLES.length }, (_, i) => report(HOT_KEY, i));
const zipfReports = zipf.map(report);
const hotBoard = new StatusBoard({ hotKeys: CAPACITY });
const zipfBoard = new StatusBoard({ hotKeys: CAPACITY });
for (const r of zipfReports) zipfBoard.call(r);
const offBoard = new StatusBoard({ hotKeys: 0 });
let nextReport = 0;

Deno.bench({
  name: "StatusBoard.call(), one hot key",
  group: "StatusBoard.call(): ns/op = 1 call",
  baseline: true,
  fn() {
    hotBoard.call(hotReports[nextReport++ & 7]);
  },
});

Deno.bench({
  name: "StatusBoard.call(), Zipf over 10,000 keys, 1,000 counters",
  group: "StatusBoard.call(): ns/op = 1 call",
  fn() {
    zipfBoard.call(zipfReports[nextReport++ & MASK]);
  },
});

Deno.bench({
  name: "StatusBoard.call(), hot keys off (--hot-keys 0)",
  group: "StatusBoard.call(): ns/op = 1 call",
  fn() {
    offBoard.call(zipfReports[nextReport++ & MASK]);
  },
});

// ---------------------------------------------------------------------------------------------------------
// HotKeys.top(20): once a second at most (a status page or /status.json request), not per call. `now` is
// 1 s after the windows started; the summaries are only read.

const twoWindows = new HotKeys({ capacity: CAPACITY, windowMs: 1_000, now: 0 });
for (let i = 0; i < STREAM; i++) twoWindows.record(METHOD, zipf[i], roles[i]);
twoWindows.tick(1_000);
for (let i = 0; i < STREAM; i++) twoWindows.record(METHOD, zipf[(i + STREAM / 2) & MASK], roles[i]);
if (mixed.top(Infinity, 1_000).length !== CAPACITY) throw new Error("the Zipf summary is not full");
if (twoWindows.top(Infinity, 2_000).length <= CAPACITY) throw new Error("the two windows are not full");

Deno.bench({
  name: "HotKeys.top(20), one full window of 1,000 counters",
  group: "HotKeys.top(20): ns/op = 1 status snapshot",
  baseline: true,
  fn() {
    mixed.top(20, 1_000);
  },
});

Deno.bench({
  name: "HotKeys.top(20), two full windows of 1,000 counters each",
  group: "HotKeys.top(20): ns/op = 1 status snapshot",
  fn() {
    twoWindows.top(20, 2_000);
  },
});
