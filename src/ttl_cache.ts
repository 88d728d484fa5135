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
  value: V;
  bytes: number;
  expiresAt: number;
}

/** Default most entries held by a {@linkcode TtlCache}. */
export const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
/** Default most bytes held by a {@linkcode TtlCache}: 64 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Every entry has the same TTL, so insertion order is expiry order: the Map's first entry is always the
 * one to expire (and to evict) next. That makes expiry and eviction O(1) from the front and needs no
 * timers. An LRU would buy nothing here: a hit does not extend an entry's life.
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
    if (entry.expiresAt <= this.#now()) {
      this.#sweep();
      return undefined;
    }
    return entry.value;
  }

  /**
   * Stores `value` for the TTL. A value larger than maxBytes is not stored; returns whether it was.
   */
  set(key: string, value: V, bytes: number): boolean {
    this.delete(key);
    this.#sweep();
    if (bytes > this.#maxBytes) return false;
    while (this.#entries.size >= this.#maxEntries || this.#bytes + bytes > this.#maxBytes) {
      this.#dropOldest();
      this.#evictions++;
    }
    this.#entries.set(key, { value, bytes, expiresAt: this.#now() + this.#ttlMs });
    this.#bytes += bytes;
    return true;
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    return true;
  }

  /** Drops every entry. */
  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }

  /** Drops expired entries from the front (they are in expiry order). */
  #sweep(): void {
    const now = this.#now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt > now) return;
      this.#entries.delete(key);
      this.#bytes -= entry.bytes;
    }
  }

  #dropOldest(): void {
    const first = this.#entries.keys().next();
    if (!first.done) this.delete(first.value);
  }
}
