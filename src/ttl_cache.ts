/**
 * A bounded cache whose entries all live for the same time-to-live.
 *
 * @module
 */

/** Options for {@linkcode TtlCache}. */
export interface TtlCacheOptions {
  /** How long an entry lives, in milliseconds. Must be > 0. */
  ttlMs: number;
  /** Most entries held at once; the oldest goes first. @default {10_000} */
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
  readonly expiresAt: number;
}

/** Default most entries held by a {@linkcode TtlCache}. */
export const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
/** Default most bytes held by a {@linkcode TtlCache}: 64 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Every entry has the same TTL, so insertion order is expiry order: the oldest entry is always the one to
 * expire (and to evict) next. Expiry and eviction pop from the front of a FIFO, with no timers. An LRU would
 * buy nothing here: a hit does not extend an entry's life.
 *
 * The FIFO is an array with a moving head, not the Map's own order: walking a Map from its front skips every
 * slot deleted since V8 last rehashed it, which made each `set` on a full 10,000-entry cache cost ~14 µs
 * (bench/core_bench.ts). Entries deleted or replaced stay in the array as stale slots until they reach the
 * front; every entry reaches the front within one TTL, so the array stays bounded.
 *
 * @example
 * ```ts
 * const cache = new TtlCache<string>({ ttlMs: 100 });
 * cache.set("k", "v", 1);
 * cache.get("k"); // "v" for the next 100 ms, then undefined
 * ```
 */
export class TtlCache<V> {
  readonly #entries = new Map<string, Entry<V>>();
  #order: (Entry<V> | undefined)[] = [];
  #head = 0;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #bytes = 0;
  #evictions = 0;

  constructor(options: TtlCacheOptions) {
    const { ttlMs, maxEntries = DEFAULT_CACHE_MAX_ENTRIES, maxBytes = DEFAULT_CACHE_MAX_BYTES } = options;
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new RangeError(`Cannot create TtlCache: ttlMs must be a finite number > 0: received ${ttlMs}`);
    }
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
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Entries held now (expired ones not yet swept included). */
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

  /** The live value for `key`, or undefined. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (entry.expiresAt <= now) {
      this.#sweep(now);
      return undefined;
    }
    return entry.value;
  }

  /**
   * Stores `value` for the TTL. A value larger than maxBytes is not stored; returns whether it was.
   */
  set(key: string, value: V, bytes: number): boolean {
    const now = this.#now();
    this.delete(key);
    this.#sweep(now);
    if (bytes > this.#maxBytes) return false;
    while (this.#entries.size >= this.#maxEntries || this.#bytes + bytes > this.#maxBytes) {
      this.#remove(this.#oldest()!);
      this.#evictions++;
    }
    const entry = { key, value, bytes, expiresAt: now + this.#ttlMs };
    this.#entries.set(key, entry);
    this.#order.push(entry);
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
    this.#order = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  #remove(entry: Entry<V>): void {
    this.#entries.delete(entry.key);
    this.#bytes -= entry.bytes;
  }

  /** The oldest live entry, dropping stale slots in front of it. */
  #oldest(): Entry<V> | undefined {
    const order = this.#order;
    while (this.#head < order.length) {
      const entry = order[this.#head];
      if (entry !== undefined && this.#entries.get(entry.key) === entry) return entry;
      order[this.#head++] = undefined;
    }
    return undefined;
  }

  /** Drops expired entries from the front (they are in expiry order), then compacts the FIFO. */
  #sweep(now: number): void {
    for (let entry = this.#oldest(); entry !== undefined && entry.expiresAt <= now; entry = this.#oldest()) {
      this.#remove(entry);
      this.#order[this.#head++] = undefined;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
  }
}
