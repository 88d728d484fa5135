/**
 * Benchmarks of the collapsing core in its three scenarios: high contention (many followers on one flight),
 * no contention (every call a new key) and cache hits.
 *
 * Note on Deno's harness: a bench whose `fn` takes under 10 µs is timed in batches of 10,000 calls and
 * `b.start()`/`b.end()` are ignored, so anything a fast bench does outside the measured operation counts.
 * The fast benches below therefore do only the operation (plus, where state must be reset, an amortized
 * share that the name says), and only the slow whole-flight benches use `b.start()`/`b.end()`.
 *
 * Targets: follower join ≤ 200 ns; cache hit (key hashing of 100 B + replay) ≤ 1.5 µs.
 *
 * @module
 */

import { Collapser, type Flight, type Membership, type Subscriber } from "../src/core/collapser.ts";
import { encodeFrame, Status } from "../src/wire/grpc_wire.ts";
import { collapseKey } from "../src/policy/key.ts";
import { Policy } from "../src/policy/policy.ts";
import { parsePolicy } from "../src/policy/policy_file.ts";
import { METHOD, REQUEST_HEADERS } from "./_fixtures.ts";
import { type ResponseEvent, statusEvent } from "../src/wire/response.ts";

// ---------------------------------------------------------------------------------------------------------
// Fixtures: a realistic unary call, as the proxy sees it.

const MESSAGE_BYTES = 100;
/** A 100 B request message. */
const REQUEST = crypto.getRandomValues(new Uint8Array(MESSAGE_BYTES));

/** Response headers as {@linkcode wireHeaders} leaves them: backend metadata minus per-hop headers. */
const HEADERS: ResponseEvent = {
  type: "headers",
  headers: {
    "x-request-id": "8f14e45f-ceea-467f-a0e6-7c3b1e9a2d11",
    "x-backend-instance": "inventory-7d9c5b-x2k4p",
    "cache-control": "max-age=0",
  },
};
/** One ~100 B response message, framed. */
const MESSAGE: ResponseEvent = {
  type: "message",
  frame: encodeFrame(crypto.getRandomValues(new Uint8Array(MESSAGE_BYTES))),
};
const STATUS: ResponseEvent = statusEvent(Status.OK, "");

/** Same as the proxy's own `sizeOf` (src/server/proxy.ts `eventBytes`, not exported). */
const eventBytes = (event: ResponseEvent): number => event.type === "message" ? event.frame.byteLength : 128;

function noop(): void {}
/** A subscriber that does nothing with what it gets (distinct objects: flights keep a Set of them). */
const idleSubscriber = (): Subscriber<ResponseEvent> => ({ event: noop, end: noop });

/** The proxy's configuration of the core (default TTL and bounds). */
const proxyCollapser = (ttlMs?: number) => new Collapser<ResponseEvent>({ ttlMs, sizeOf: eventBytes });

// ---------------------------------------------------------------------------------------------------------
// High contention: thousands of followers join one in-flight key. The backend has not answered yet, so a
// join replays nothing; it is the per-follower bookkeeping only.

const HERD = 10_000;
const subscribers: Subscriber<ResponseEvent>[] = Array.from({ length: HERD }, idleSubscriber);
const HERD_KEY = collapseKey(METHOD, REQUEST_HEADERS, REQUEST);

let heldFlight: Flight<ResponseEvent> | undefined;
const holdFlight = (flight: Flight<ResponseEvent>) => {
  heldFlight = flight;
};

/**
 * Calls one follower join per `join()`; every `size` joins the flight is finished (followers get `end()`)
 * and a new leader starts one, so ns/op is one join plus 1/size of a flight's start and finish.
 */
class Herd {
  readonly #collapser = proxyCollapser(0);
  readonly #size: number;
  #flight: Flight<ResponseEvent> | undefined;
  #joined = 0;

  constructor(size: number) {
    this.#size = size;
    this.#lead();
  }

  join(): Membership {
    const membership = this.#collapser.join(HERD_KEY, subscribers[this.#joined], holdFlight);
    if (++this.#joined === this.#size) {
      this.#flight!.finish({ cache: false });
      this.#lead();
    }
    return membership;
  }

  #lead(): void {
    this.#collapser.join(HERD_KEY, { event: noop, end: noop }, holdFlight);
    this.#flight = heldFlight;
    this.#joined = 0;
  }
}

const herd1k = new Herd(1_000);
const herd10k = new Herd(10_000);

Deno.bench({
  name: "follower join, amortized over flights of 1,000 followers",
  group: "high contention: ns/op = 1 follower join",
  baseline: true,
  fn() {
    herd1k.join();
  },
});

Deno.bench({
  name: "follower join, amortized over flights of 10,000 followers",
  group: "high contention: ns/op = 1 follower join",
  fn() {
    herd10k.join();
  },
});

/**
 * A flight that always holds 10,000 followers; one more joins and leaves per op. Each op uses another
 * subscriber object, as real calls do: re-adding one object to a Set right after deleting it is O(size) in
 * V8 (the deleted slots stay in that hash bucket's chain until the next rehash), ~10 µs at this size.
 */
const crowded = proxyCollapser(0);
crowded.join(HERD_KEY, idleSubscriber(), noop);
for (const subscriber of subscribers) crowded.join(HERD_KEY, subscriber, noop);
const extras: Subscriber<ResponseEvent>[] = Array.from({ length: HERD }, idleSubscriber);
let nextExtra = 0;

Deno.bench({
  name: "follower join + leave, flight holding 10,000 followers",
  group: "high contention: ns/op = 1 follower join",
  fn() {
    crowded.join(HERD_KEY, extras[nextExtra], noop).leave();
    nextExtra = (nextExtra + 1) % HERD;
  },
});

/** Runs a whole flight of `size` followers; only the joins are timed. */
function wholeFlight(b: Deno.BenchContext, size: number): void {
  const collapser = proxyCollapser(0);
  collapser.join(HERD_KEY, { event: noop, end: noop }, holdFlight);
  const flight = heldFlight!;
  b.start();
  for (let i = 0; i < size; i++) collapser.join(HERD_KEY, subscribers[i], holdFlight);
  b.end();
  flight.finish({ cache: false });
}

Deno.bench({
  name: "1,000 followers join one flight (÷ 1,000 = per join)",
  group: "high contention: ns/op = 1 whole flight",
  baseline: true,
  fn(b) {
    wholeFlight(b, 1_000);
  },
});

Deno.bench({
  name: "10,000 followers join one flight (÷ 10,000 = per join)",
  group: "high contention: ns/op = 1 whole flight",
  fn(b) {
    wholeFlight(b, 10_000);
  },
});

// ---------------------------------------------------------------------------------------------------------
// No contention: every call has a new key, so every call leads its own flight. With the proxy's defaults
// (100 ms TTL, 10,000 entries) the cached variants fill the cache within the first 100 ms; from then on every
// finish also expires or evicts the oldest recording, the steady state of a busy proxy.

const uniqueRequest = REQUEST.slice();
const uniqueView = new DataView(uniqueRequest.buffer);
let unique = 0;

/** Leads a flight on `key` and plays a whole unary response through it. */
function leadOnce(collapser: Collapser<ResponseEvent>, key: string, cache: boolean): void {
  collapser.join(key, { event: noop, end: noop }, holdFlight);
  const flight = heldFlight!;
  flight.emit(HEADERS);
  flight.emit(MESSAGE);
  flight.emit(STATUS);
  flight.finish({ cache });
}

const leadCached = proxyCollapser();
const leadUncached = proxyCollapser(0);
const leadNoHash = proxyCollapser();
const leadNoHashUncached = proxyCollapser(0);

Deno.bench({
  name: "collapseKey(100 B) + lead + headers/message/status + finish, cached",
  group: "no contention: ns/op = 1 call",
  baseline: true,
  fn() {
    uniqueView.setUint32(0, unique++);
    leadOnce(leadCached, collapseKey(METHOD, REQUEST_HEADERS, uniqueRequest), true);
  },
});

Deno.bench({
  name: "collapseKey(100 B) + lead + headers/message/status + finish, ttlMs 0",
  group: "no contention: ns/op = 1 call",
  fn() {
    uniqueView.setUint32(0, unique++);
    leadOnce(leadUncached, collapseKey(METHOD, REQUEST_HEADERS, uniqueRequest), false);
  },
});

Deno.bench({
  name: "lead + headers/message/status + finish, cached (no hashing)",
  group: "no contention: ns/op = 1 call",
  fn() {
    leadOnce(leadNoHash, `k${unique++}`, true);
  },
});

Deno.bench({
  name: "lead + headers/message/status + finish, ttlMs 0 (no hashing)",
  group: "no contention: ns/op = 1 call",
  fn() {
    leadOnce(leadNoHashUncached, `k${unique++}`, false);
  },
});

// ---------------------------------------------------------------------------------------------------------
// Cache hits: the key is hashed per call, then the cached recording is replayed to a subscriber that does
// nothing. The TTL outlasts the run so every op is a hit (checked).

const hits = proxyCollapser(3_600_000);
const HIT_KEY = collapseKey(METHOD, REQUEST_HEADERS, REQUEST);
leadOnce(hits, HIT_KEY, true);
const hitSubscriber = idleSubscriber();

function hit(key: string): void {
  if (hits.join(key, hitSubscriber, holdFlight).role !== "cache") throw new Error("not a cache hit");
}

Deno.bench({
  name: "collapseKey(100 B) + join replaying headers/message/status",
  group: "cache hits: ns/op = 1 hit",
  baseline: true,
  fn() {
    hit(collapseKey(METHOD, REQUEST_HEADERS, REQUEST));
  },
});

Deno.bench({
  name: "join replaying headers/message/status (key precomputed)",
  group: "cache hits: ns/op = 1 hit",
  fn() {
    hit(HIT_KEY);
  },
});

// ---------------------------------------------------------------------------------------------------------
// Per-method policy on the hot path: one memoized lookup per call, and the key filter's per-header verdicts
// (the same call as above, keyed through a rule-bearing policy's filter).

const POLICY = new Policy({ ttlMs: 100, ignoreHeaders: ["x-request-id"] }, {
  rules: parsePolicy(
    `rules: [{method: "/shop.Cart/*", collapse: false}, {method: "/inventory.*/Get*", ttl: 1s}]`,
    "bench",
  ),
});
POLICY.resolve(METHOD);

Deno.bench({
  name: "Policy.resolve(method), memoized",
  group: "policy: ns/op = 1 call",
  baseline: true,
  fn() {
    POLICY.resolve(METHOD);
  },
});

Deno.bench({
  name: "Policy.resolve + collapseKey(100 B) through the method's key filter",
  group: "policy: ns/op = 1 call",
  fn() {
    collapseKey(METHOD, REQUEST_HEADERS, REQUEST, POLICY.resolve(METHOD).key);
  },
});
