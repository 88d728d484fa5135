/**
 * Hot keys: which collapse keys take the most calls right now, in bounded memory, for the status page.
 *
 * A space-saving summary (Metwally, Agrawal, El Abbadi, "Efficient computation of frequent and top-k
 * elements in data streams", 2005) keeps at most `capacity` counters. A key already counted is incremented;
 * a new key takes a free counter, or, when all are taken, the counter of the least-counted key (it inherits
 * that count, so a count may overestimate by at most the smallest count, never underestimate). Any key
 * taking more than 1/capacity of the calls is guaranteed a counter. Counters sit in buckets by count, and a
 * count only ever grows by one, so an update is O(1): a few Map and Set operations, no sorting, no clock.
 *
 * "Right now" is two alternating windows: calls go to the current one; {@linkcode HotKeys.tick} (the status
 * sampler, once a second) retires it to `previous` once it is `windowMs` old, and {@linkcode HotKeys.top}
 * merges both, so a rate always covers between one and two windows of recent traffic.
 *
 * Only the method and a 12-hex-digit prefix of the key's SHA-256 leave this module: never a payload, never
 * metadata.
 *
 * @module
 */

import type { Role } from "../core/collapser.ts";

/** Default number of counters per window. */
export const DEFAULT_HOT_KEY_CAPACITY = 1_000;
/** Default length of a window, in ms. */
export const DEFAULT_HOT_KEY_WINDOW_MS = 5_000;
/** Hex digits of the key shown. */
export const KEY_PREFIX_LENGTH = 12;

/** One hot key, as the status page shows it. */
export interface HotKey {
  /** The method (`:path`). */
  readonly method: string;
  /** The first 12 hex digits of the collapse key. */
  readonly key: string;
  /** Calls per second over the covered windows (an upper bound: see the module comment). */
  readonly callsPerSecond: number;
  /** Shares of the calls counted exactly for this key: leaders, followers and cache hits (each 0–1). */
  readonly leader: number;
  readonly follower: number;
  readonly cache: number;
  /** Duration of the last backend call made for this key, in ms, if one was seen in the windows. */
  readonly lastBackendMs: number | undefined;
}

interface Counter {
  key: string;
  method: string;
  count: number;
  leader: number;
  follower: number;
  cache: number;
  lastBackendMs: number | undefined;
  /** Index in its bucket. */
  slot: number;
}

/** One window's space-saving summary. */
class Summary {
  readonly #capacity: number;
  readonly counters = new Map<string, Counter>();
  /** Counters by count; only counts in use have a bucket. */
  readonly #buckets = new Map<number, Counter[]>();
  #min = 0;

  /** The smallest count when every counter is taken (an unmonitored key may have had that many), else 0. */
  get floor(): number {
    return this.counters.size < this.#capacity ? 0 : this.#min;
  }

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  add(key: string, method: string, role: Role): Counter {
    let counter = this.counters.get(key);
    let wasMin = false;
    if (counter !== undefined) {
      wasMin = this.#unbucket(counter) && counter.count === this.#min;
    } else if (this.counters.size < this.#capacity) {
      counter = {
        key,
        method,
        count: 0,
        leader: 0,
        follower: 0,
        cache: 0,
        lastBackendMs: undefined,
        slot: 0,
      };
      this.counters.set(key, counter);
    } else {
      // Take over a least-counted key's counter, keeping its count.
      const least = this.#buckets.get(this.#min)!;
      counter = least[least.length - 1];
      this.counters.delete(counter.key);
      wasMin = this.#unbucket(counter);
      counter.key = key;
      counter.method = method;
      counter.leader = counter.follower = counter.cache = 0;
      counter.lastBackendMs = undefined;
      this.counters.set(key, counter);
    }
    const fresh = counter.count === 0;
    counter.count++;
    counter[role]++;
    let bucket = this.#buckets.get(counter.count);
    if (bucket === undefined) this.#buckets.set(counter.count, bucket = []);
    counter.slot = bucket.length;
    bucket.push(counter);
    // Counts grow by one, so the smallest count is 1 (a new counter), or moves up by one when the last
    // counter at the smallest count has moved on.
    if (fresh) this.#min = 1;
    else if (wasMin) this.#min = counter.count;
    return counter;
  }

  /** Takes `counter` out of its bucket; true when that emptied the bucket. */
  #unbucket(counter: Counter): boolean {
    const bucket = this.#buckets.get(counter.count)!;
    const last = bucket.pop()!;
    if (last !== counter) {
      bucket[counter.slot] = last;
      last.slot = counter.slot;
    }
    if (bucket.length > 0) return false;
    this.#buckets.delete(counter.count);
    return true;
  }
}

/** Tracks the hottest keys of the last one to two windows. */
export class HotKeys {
  readonly capacity: number;
  readonly #windowMs: number;
  #current: Summary;
  #previous: Summary | undefined;
  #currentStart: number;
  #previousStart: number | undefined;
  /** Backend call durations of keys not counted yet: a leader's backend call ends before its call does. */
  readonly #pendingLatency = new Map<string, number>();

  /**
   * @param options.capacity counters per window @default {1000}
   * @param options.windowMs length of a window, in ms @default {5000}
   * @param options.now the time now, in ms, for the start of the first window @default {performance.now()}
   */
  constructor(options: { capacity?: number; windowMs?: number; now?: number } = {}) {
    const { capacity = DEFAULT_HOT_KEY_CAPACITY, windowMs = DEFAULT_HOT_KEY_WINDOW_MS } = options;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Cannot create HotKeys: capacity must be an integer >= 1: received ${capacity}`);
    }
    if (!(windowMs > 0 && Number.isFinite(windowMs))) {
      throw new RangeError(
        `Cannot create HotKeys: windowMs must be a finite number > 0: received ${windowMs}`,
      );
    }
    this.capacity = capacity;
    this.#windowMs = windowMs;
    this.#current = new Summary(capacity);
    this.#currentStart = options.now ?? performance.now();
  }

  /** Counts one call of `key` (a full collapse key) served as `role`. */
  record(method: string, key: string, role: Role): void {
    const counter = this.#current.add(key, method, role);
    if (this.#pendingLatency.size > 0) {
      const pending = this.#pendingLatency.get(key);
      if (pending !== undefined) {
        counter.lastBackendMs = pending;
        this.#pendingLatency.delete(key);
      }
    }
  }

  /** Notes how long a backend call for `key` took. */
  backendCall(key: string, durationMs: number): void {
    const counter = this.#current.counters.get(key);
    if (counter !== undefined) counter.lastBackendMs = durationMs;
    else {
      const previous = this.#previous?.counters.get(key);
      if (previous !== undefined) previous.lastBackendMs = durationMs;
      // Kept for the call report that follows; bounded, since a key whose callers all left never reports.
      if (this.#pendingLatency.size >= this.capacity) this.#pendingLatency.clear();
      this.#pendingLatency.set(key, durationMs);
    }
  }

  /** Retires the current window once it is `windowMs` old (call about once a second). */
  tick(now: number): void {
    if (now - this.#currentStart < this.#windowMs) return;
    this.#previous = this.#current;
    this.#previousStart = this.#currentStart;
    this.#current = new Summary(this.capacity);
    this.#currentStart = now;
    this.#pendingLatency.clear();
  }

  /** The `n` keys with the most calls over the covered windows, most first. */
  top(n: number, now: number): HotKey[] {
    const seconds = Math.max((now - (this.#previousStart ?? this.#currentStart)) / 1000, 1);
    const merged = new Map<string, Counter>();
    for (const summary of [this.#previous, this.#current]) {
      for (const counter of summary?.counters.values() ?? []) {
        const seen = merged.get(counter.key);
        if (seen === undefined) merged.set(counter.key, { ...counter });
        else {
          seen.count += counter.count;
          seen.leader += counter.leader;
          seen.follower += counter.follower;
          seen.cache += counter.cache;
          seen.lastBackendMs = counter.lastBackendMs ?? seen.lastBackendMs;
        }
      }
    }
    for (const counter of merged.values()) {
      for (const summary of [this.#previous, this.#current]) {
        if (summary !== undefined && !summary.counters.has(counter.key)) counter.count += summary.floor;
      }
    }
    return [...merged.values()]
      .sort((a, b) => b.count - a.count)
      .slice(0, n)
      .map((c) => {
        const exact = c.leader + c.follower + c.cache || 1;
        return {
          method: c.method,
          key: c.key.slice(0, KEY_PREFIX_LENGTH),
          callsPerSecond: c.count / seconds,
          leader: c.leader / exact,
          follower: c.follower / exact,
          cache: c.cache / exact,
          lastBackendMs: c.lastBackendMs,
        };
      });
  }
}
