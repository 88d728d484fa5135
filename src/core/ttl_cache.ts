/**
 * A bounded cache whose entries each live for a TTL, and may be kept a grace period beyond it to be served
 * stale on request.
 *
 * @module
 */

import { MinHeap } from "./heap.ts";

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
  /** Dropped (set to undefined) when the entry leaves, so a slot left in a heap holds no answer. */
  value: V | undefined;
  readonly bytes: number;
  /** `get` returns the entry until then. */
  readonly freshUntil: number;
  /** The entry is dropped then; `getStale` returns it between `freshUntil` and this. */
  readonly keepUntil: number;
  /** Insertion order: breaks ties between entries that expire at the same moment. */
  readonly seq: number;
  /** Whether the entry is still in the cache (heaps drop the others lazily). */
  live: boolean;
}

/** Default most entries held by a {@linkcode TtlCache}. */
export const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
/** Default most bytes held by a {@linkcode TtlCache}: 64 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Every entry has its own retention (a method's TTL, or what the backend's `cache-control` said), so the
 * cache keeps two min-heaps: entries still fresh, by when they stop being fresh, and entries past that but
 * within their grace, by when they are dropped. Expiry pops the fronts; eviction for room takes a stale entry
 * first, then the fresh entry that stops being fresh first. No timers, no sorting; a `set` is O(log n).
 *
 * (Before per-answer TTLs, each distinct retention had its own FIFO, insertion order being expiry order
 * within one. With TTLs from the backend — any whole number of seconds up to `--max-ttl` — the number of
 * FIFOs is no longer a handful, and a heap is what stays O(log n).)
 *
 * An entry deleted or replaced stays in its heap as a dead slot until it reaches the top (within its
 * retention) or the heaps are compacted (when dead slots outnumber live entries); its value is dropped at
 * once, so a dead slot holds no answer. An LRU would buy nothing here: a hit does not extend an entry's life.
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
  /** Entries not yet known to be past their TTL, first to stop being fresh on top. */
  readonly #fresh = new MinHeap<Entry<V>>((a, b) =>
    a.freshUntil < b.freshUntil || (a.freshUntil === b.freshUntil && a.seq < b.seq)
  );
  /** Entries past their TTL, within their grace, first to be dropped on top. */
  readonly #stale = new MinHeap<Entry<V>>((a, b) =>
    a.keepUntil < b.keepUntil || (a.keepUntil === b.keepUntil && a.seq < b.seq)
  );
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #bytes = 0;
  #evictions = 0;
  #seq = 0;
  /** Dead slots in the heaps. */
  #dead = 0;

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

  /** @internal Slots in the heaps, dead ones included (bounded: about twice the entries at most). */
  get slots(): number {
    return this.#fresh.size + this.#stale.size;
  }

  /** Entries dropped for room (not for age) since creation. */
  get evictions(): number {
    return this.#evictions;
  }

  /**
   * @internal The clock as the last `get` that found an entry read it: a caller that needs the time of a hit
   * takes it from here rather than reading the clock again (a miss reads no clock at all).
   */
  readAt = 0;

  /** The fresh value for `key`, or undefined. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.readAt = this.#now();
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
      this.#remove(this.#firstToGo()!);
      this.#evictions++;
    }
    const entry: Entry<V> = {
      key,
      value,
      bytes,
      freshUntil: now + ttlMs,
      keepUntil: now + ttlMs + graceMs,
      seq: this.#seq++,
      live: true,
    };
    this.#fresh.push(entry);
    this.#entries.set(key, entry);
    this.#bytes += bytes;
    return true;
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#remove(entry);
    this.#dead++;
    this.#compactIfSparse();
    return true;
  }

  /** Removes every entry for which `match` holds (fresh and stale alike); returns how many. O(size). */
  deleteWhere(match: (key: string, value: V) => boolean): number {
    let removed = 0;
    for (const entry of this.#entries.values()) {
      if (match(entry.key, entry.value!)) {
        this.#remove(entry);
        this.#dead++;
        removed++;
      }
    }
    this.#compactIfSparse();
    return removed;
  }

  /** Drops every entry. */
  clear(): void {
    for (const entry of this.#entries.values()) entry.value = undefined;
    this.#entries.clear();
    this.#fresh.clear();
    this.#stale.clear();
    this.#bytes = 0;
    this.#dead = 0;
  }

  /** Takes `entry` out of the map; a caller that leaves its heap slot behind counts it dead. */
  #remove(entry: Entry<V>): void {
    this.#entries.delete(entry.key);
    this.#bytes -= entry.bytes;
    entry.value = undefined;
    entry.live = false;
  }

  /** The live entry to evict for room: a stale one first, else the first to stop being fresh. */
  #firstToGo(): Entry<V> | undefined {
    return this.#popLive(this.#stale) ?? this.#popLive(this.#fresh);
  }

  /** Takes the first live entry off `heap`, dropping dead slots on the way. */
  #popLive(heap: MinHeap<Entry<V>>): Entry<V> | undefined {
    for (let entry = heap.pop(); entry !== undefined; entry = heap.pop()) {
      if (entry.live) return entry;
      this.#dead--;
    }
    return undefined;
  }

  /** Moves entries past their TTL to the stale heap (or out, past their grace); drops dead slots. */
  #sweep(now: number): void {
    const fresh = this.#fresh;
    for (let entry = fresh.peek(); entry !== undefined; entry = fresh.peek()) {
      if (entry.live && entry.freshUntil > now) break;
      fresh.pop();
      if (!entry.live) this.#dead--;
      else if (entry.keepUntil > now) this.#stale.push(entry);
      else this.#remove(entry);
    }
    const stale = this.#stale;
    for (let entry = stale.peek(); entry !== undefined; entry = stale.peek()) {
      if (entry.live && entry.keepUntil > now) break;
      stale.pop();
      if (entry.live) this.#remove(entry);
      else this.#dead--;
    }
  }

  /** Rebuilds the heaps without their dead slots once those outnumber the live entries. */
  #compactIfSparse(): void {
    if (this.#dead <= 64 || this.#dead <= this.#entries.size) return;
    const live = (entry: Entry<V>) => entry.live;
    this.#fresh.filter(live);
    this.#stale.filter(live);
    this.#dead = 0;
  }
}
