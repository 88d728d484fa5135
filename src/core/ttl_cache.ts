/**
 * A bounded cache whose entries each live for a TTL, and may be kept a grace period beyond it to be served
 * stale on request.
 *
 * @module
 */

/** How long one entry lives. */
export interface Retention {
  /** How long the entry is fresh (returned by `get`), in ms. */
  readonly ttlMs: number;
  /** How long after that it is kept for `getStale`, in ms. @default {0} */
  readonly graceMs?: number;
}

/** Options for {@linkcode TtlCache}. */
export interface TtlCacheOptions {
  /** Most entries held at once (stale ones included); the first to expire goes first. @default {10_000} */
  maxEntries?: number;
  /** Most bytes held at once (as reported by the caller of `set`). @default {64 MiB} */
  maxBytes?: number;
  /** Clock in milliseconds. @default {performance.now} */
  now?: () => number;
}

interface Entry<V> {
  readonly key: string;
  readonly value: V;
  readonly bytes: number;
  /** `get` returns the entry until then. */
  readonly freshUntil: number;
  /** The entry is dropped then; `getStale` returns it between `freshUntil` and this. */
  readonly keepUntil: number;
}

/** Default most entries held by a {@linkcode TtlCache}. */
export const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
/** Default most bytes held by a {@linkcode TtlCache}: 64 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Entries that share a retention (the same TTL and grace) expire in insertion order, so each retention has
 * its own FIFO and expiry and eviction pop from the fronts, with no timers and no sorting. There are only
 * as many FIFOs as distinct retentions in use (one per policy rule at most), so finding the entry that
 * expires first is a walk over a handful of fronts. An LRU would buy nothing here: a hit does not extend an
 * entry's life.
 *
 * Each FIFO is an array with a moving head, not a Map's own order: walking a Map from its front skips every
 * slot deleted since V8 last rehashed it, which made each `set` on a full 10,000-entry cache cost ~14 µs
 * (bench/core_bench.ts). Entries deleted or replaced stay in their FIFO as stale slots until they reach the
 * front; every entry reaches the front within its retention, so the arrays stay bounded.
 *
 * @example
 * ```ts
 * const cache = new TtlCache<string>();
 * cache.set("k", "v", 1, { ttlMs: 100, graceMs: 1000 });
 * cache.get("k"); // "v" for the next 100 ms, then undefined
 * cache.getStale("k"); // "v" from 100 ms to 1100 ms
 * ```
 */
export class TtlCache<V> {
  readonly #entries = new Map<string, Entry<V>>();
  /** One FIFO per retention in use (a handful: an array beats a Map here). */
  #fifos: Fifo<V>[] = [];
  /** The FIFO the last `set` used: nearly every set uses the same retention as the one before. */
  #lastFifo: Fifo<V> | undefined;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #bytes = 0;
  #evictions = 0;

  constructor(options: TtlCacheOptions = {}) {
    const { maxEntries = DEFAULT_CACHE_MAX_ENTRIES, maxBytes = DEFAULT_CACHE_MAX_BYTES } = options;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(
        `Cannot create TtlCache: maxEntries must be an integer >= 1: received ${maxEntries}`,
      );
    }
    if (!Number.isFinite(maxBytes) || maxBytes < 0) {
      throw new RangeError(
        `Cannot create TtlCache: maxBytes must be a finite number >= 0: received ${maxBytes}`,
      );
    }
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Entries held now (stale ones, and expired ones not yet swept, included). */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries dropped for room (not for age) since creation. */
  get evictions(): number {
    return this.#evictions;
  }

  /** The fresh value for `key`, or undefined. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (entry.freshUntil > now) return entry.value;
    if (entry.keepUntil <= now) this.#sweep(now);
    return undefined;
  }

  /** The value for `key` if it is past its TTL but within its grace, or undefined. */
  getStale(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    return entry.freshUntil <= now && now < entry.keepUntil ? entry.value : undefined;
  }

  /**
   * Stores `value` for `retention`, replacing any entry for `key`. A value larger than maxBytes, or one with
   * nothing to keep (TTL and grace both 0), is not stored; returns whether it was.
   */
  set(key: string, value: V, bytes: number, retention: Retention): boolean {
    const { ttlMs, graceMs = 0 } = retention;
    if (!(ttlMs >= 0 && graceMs >= 0 && Number.isFinite(ttlMs + graceMs))) {
      throw new RangeError(
        `TtlCache.set: ttlMs and graceMs must be finite numbers >= 0: ${ttlMs}, ${graceMs}`,
      );
    }
    const now = this.#now();
    this.delete(key);
    this.#sweep(now);
    if (bytes > this.#maxBytes || ttlMs + graceMs === 0) return false;
    while (this.#entries.size >= this.#maxEntries || this.#bytes + bytes > this.#maxBytes) {
      this.#remove(this.#firstToExpire()!.shift()!);
      this.#evictions++;
    }
    const entry = { key, value, bytes, freshUntil: now + ttlMs, keepUntil: now + ttlMs + graceMs };
    this.#fifo(ttlMs, graceMs).push(entry);
    this.#entries.set(key, entry);
    this.#bytes += bytes;
    return true;
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#remove(entry);
    return true;
  }

  /** Drops every entry. */
  clear(): void {
    this.#entries.clear();
    this.#fifos = [];
    this.#lastFifo = undefined;
    this.#bytes = 0;
  }

  /** The FIFO of entries with this retention, created on first use. */
  #fifo(ttlMs: number, graceMs: number): Fifo<V> {
    const last = this.#lastFifo;
    if (last !== undefined && last.ttlMs === ttlMs && last.graceMs === graceMs) return last;
    let fifo = this.#fifos.find((f) => f.ttlMs === ttlMs && f.graceMs === graceMs);
    if (fifo === undefined) this.#fifos.push(fifo = new Fifo(this.#entries, ttlMs, graceMs));
    return this.#lastFifo = fifo;
  }

  #remove(entry: Entry<V>): void {
    this.#entries.delete(entry.key);
    this.#bytes -= entry.bytes;
  }

  /** The FIFO whose front stops being fresh first (a stale entry goes before a fresh one). */
  #firstToExpire(): Fifo<V> | undefined {
    let first: Fifo<V> | undefined;
    let at = Infinity;
    for (const fifo of this.#fifos) {
      const front = fifo.front();
      if (front !== undefined && front.freshUntil < at) {
        first = fifo;
        at = front.freshUntil;
      }
    }
    return first;
  }

  /** Drops every entry past its retention, from the front of each FIFO. */
  #sweep(now: number): void {
    const fifos = this.#fifos;
    for (let i = 0; i < fifos.length; i++) {
      const fifo = fifos[i];
      for (let entry = fifo.front(); entry !== undefined && entry.keepUntil <= now; entry = fifo.front()) {
        this.#remove(fifo.shift()!);
      }
    }
    if (fifos.length > MAX_IDLE_FIFOS) {
      // Retentions no longer in use (a policy reload changed the TTLs) leave empty FIFOs behind.
      this.#fifos = fifos.filter((fifo) => fifo.front() !== undefined || fifo === this.#lastFifo);
    }
  }
}

/** Past this many FIFOs, a sweep drops the empty ones. */
const MAX_IDLE_FIFOS = 16;

/** Entries of one retention in insertion (so expiry) order; slots of entries no longer live are skipped. */
class Fifo<V> {
  #order: (Entry<V> | undefined)[] = [];
  #head = 0;
  readonly #live: Map<string, Entry<V>>;
  readonly ttlMs: number;
  readonly graceMs: number;

  constructor(live: Map<string, Entry<V>>, ttlMs: number, graceMs: number) {
    this.#live = live;
    this.ttlMs = ttlMs;
    this.graceMs = graceMs;
  }

  push(entry: Entry<V>): void {
    this.#order.push(entry);
  }

  /** The oldest live entry, dropping stale slots in front of it. */
  front(): Entry<V> | undefined {
    const order = this.#order;
    while (this.#head < order.length) {
      const entry = order[this.#head];
      if (entry !== undefined && this.#live.get(entry.key) === entry) return entry;
      order[this.#head++] = undefined;
    }
    return undefined;
  }

  /** Takes the oldest live entry off the FIFO (the caller removes it from the live map), then compacts. */
  shift(): Entry<V> | undefined {
    const entry = this.front();
    if (entry === undefined) return undefined;
    this.#order[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
    return entry;
  }
}
