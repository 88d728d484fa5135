/**
 * The collapsing core: one in-flight producer per key, any number of subscribers, and a short TTL cache of
 * finished recordings. It knows nothing of gRPC, HTTP/2 or the network (compare Go's `singleflight`).
 *
 * A producer's output is a sequence of events. The first subscriber of a key starts the producer (the
 * leader); later ones (followers) get the events recorded so far replayed, then live ones. The producer
 * belongs to no subscriber: a subscriber that leaves only stops receiving. When the producer finishes, the
 * recording may be cached for the TTL and replayed to later subscribers (cache hits). A flight (flight.ts)
 * is one running producer.
 *
 * @module
 */

import { type Retention, TtlCache } from "./ttl_cache.ts";
import {
  type FinishOptions,
  Flight,
  type FlightOwner,
  type JoinOptions,
  type Membership,
  noop,
  safeEnd,
  type Subscriber,
} from "./flight.ts";

export {
  type FinishOptions,
  Flight,
  type JoinOptions,
  type Membership,
  type Role,
  type Subscriber,
} from "./flight.ts";

/** Options for {@linkcode Collapser}. */
export interface CollapserOptions<E> {
  /**
   * How long a recording finished with `{ cache: true }` is replayed, unless the finish names its own
   * TTL; 0 = collapse only, no cache. @default {100}
   */
  ttlMs?: number;
  /** Most recordings cached at once. @default {10_000} */
  maxEntries?: number;
  /** Most bytes of recordings cached at once. @default {64 MiB} */
  maxBytes?: number;
  /** Size of one event in bytes, for the cache's byte bound. @default {() => 0} */
  sizeOf?: (event: E) => number;
  /** Clock in milliseconds (tests pass a fake one). @default {performance.now} */
  now?: () => number;
  /**
   * Refresh a cached recording shortly before it expires, unless a join says otherwise: see
   * {@linkcode JoinOptions.refreshAhead}. @default {true}
   */
  refreshAhead?: boolean;
}

/** Counters for metrics; monotonic unless noted. */
export interface CollapserStats {
  leaders: number;
  followers: number;
  cacheHits: number;
  /** Producers started in the background by refresh-ahead. */
  refreshes: number;
  /** Gauge: producers running now. */
  inflight: number;
  /** Gauge: subscribers waiting on a running producer now. */
  waiting: number;
  /** Gauge: cached recordings. */
  cacheEntries: number;
  /** Gauge: bytes of cached recordings. */
  cacheBytes: number;
  cacheEvictions: number;
}

/** A recording past its TTL, within the grace it was finished with (see {@linkcode Collapser.stale}). */
export interface StaleRecording<E> {
  readonly events: readonly E[];
  /** Its age: what it was finished with plus the time since, in ms. */
  readonly ageMs: number;
  /** Its freshness left, in ms: negative (it is stale). */
  readonly freshMs: number;
}

/** What {@linkcode Collapser.purge} dropped. */
export interface PurgeCount {
  /** Cached recordings dropped. */
  readonly entries: number;
  /** Running flights retired: they answer their callers, take no one new, and are not cached. */
  readonly flights: number;
}

/** Default TTL of a cached recording: 100 ms. */
export const DEFAULT_CACHE_TTL_MS = 100;

interface Recording<E> {
  readonly events: E[];
  /** When the producer finished (clock of the collapser). */
  readonly finishedAt: number;
  /** How long the producer took. */
  readonly tookMs: number;
  /** How long it is fresh. */
  readonly ttlMs: number;
  /** How old it was when finished. */
  readonly ageMs: number;
  /** The flight's tag (the proxy's method), for purges. */
  readonly label: string | undefined;
  readonly tags: readonly string[] | undefined;
  /** Whether a refresh of this recording has been started (at most one per recording). */
  refreshing: boolean;
}

/**
 * Shares one producer per key among concurrent subscribers and replays finished recordings for a TTL.
 *
 * @example
 * ```ts
 * const collapser = new Collapser<string>({ ttlMs: 100 });
 * const membership = collapser.join("key", { event: console.log, end() {} }, (flight) => {
 *   fetchSomething().then((v) => { flight.emit(v); flight.finish({ cache: true }); });
 * });
 * membership.role; // "leader", "follower" or "cache"
 * ```
 */
export class Collapser<E> {
  readonly #inflight = new Map<string, Flight<E>>();
  readonly #cache: TtlCache<Recording<E>>;
  /** Size of one event in bytes. */
  readonly sizeOf: (event: E) => number;
  #leaders = 0;
  #followers = 0;
  #cacheHits = 0;
  #refreshes = 0;
  readonly #defaultTtlMs: number;
  readonly #refreshAhead: boolean;
  readonly #now: () => number;
  /** What flights see of this collapser (the waiting gauge lives there). */
  readonly #owner: FlightOwner<E>;

  constructor(options: CollapserOptions<E> = {}) {
    const { ttlMs = DEFAULT_CACHE_TTL_MS, maxEntries, maxBytes, now = () => performance.now() } = options;
    this.#now = now;
    this.#defaultTtlMs = ttlMs;
    this.#refreshAhead = options.refreshAhead ?? true;
    if (!Number.isFinite(ttlMs) || ttlMs < 0) {
      throw new RangeError(`Cannot create Collapser: ttlMs must be a finite number >= 0: received ${ttlMs}`);
    }
    this.#cache = new TtlCache({ maxEntries, maxBytes, now });
    this.sizeOf = options.sizeOf ?? (() => 0);
    this.#owner = {
      sizeOf: this.sizeOf,
      now,
      waiting: 0,
      release: (flight, events, bytes, kept) => this.#release(flight, events, bytes, kept),
    };
  }

  /**
   * Subscribes to `key`: replays a cached recording, joins the running flight, or becomes the leader and
   * calls `start` with a new flight (always, with `options.bypass`). Events may be delivered before this
   * returns.
   */
  join(
    key: string,
    subscriber: Subscriber<E>,
    start: (flight: Flight<E>) => void,
    options?: JoinOptions,
  ): Membership {
    if (options?.bypass) {
      this.#inflight.get(key)?._retire();
      return this.#lead(key, subscriber, start);
    }
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#cacheHits++;
      const sinceFinish = this.#cache.readAt - cached.finishedAt;
      try {
        subscriber.cached?.(cached.ageMs + sinceFinish, cached.ttlMs - sinceFinish);
        for (const event of cached.events) subscriber.event(event);
      } finally {
        safeEnd(subscriber);
      }
      if (
        !cached.refreshing && !this.#inflight.has(key) &&
        (sinceFinish >= cached.ttlMs || // within its stale-while-revalidate window: always
          ((options?.refreshAhead ?? this.#refreshAhead) &&
            sinceFinish >= cached.ttlMs - Math.min(cached.tookMs, cached.ttlMs / 2)))
      ) {
        cached.refreshing = true;
        this.#refresh(key, start, cached.ttlMs);
      }
      return CACHE_HIT;
    }
    const running = this.#inflight.get(key);
    if (running !== undefined) {
      this.#followers++;
      return running._add(subscriber);
    }
    return this.#lead(key, subscriber, start);
  }

  #lead(key: string, subscriber: Subscriber<E>, start: (flight: Flight<E>) => void): Membership {
    this.#leaders++;
    const flight = new Flight<E>(this.#owner, key);
    this.#inflight.set(key, flight);
    const membership = flight._add(subscriber, "leader");
    try {
      start(flight);
    } catch (err) {
      // A producer that cannot start must not stay in flight for followers to wait on forever.
      flight.finish({ cache: false });
      throw err;
    }
    return membership;
  }

  /** Starts a producer nobody waits on yet; callers that come before it finishes join it. */
  #refresh(key: string, start: (flight: Flight<E>) => void, ttlMs: number): void {
    this.#refreshes++;
    const flight = new Flight<E>(this.#owner, key, ttlMs);
    this.#inflight.set(key, flight);
    try {
      start(flight);
    } catch {
      // The cached recording still answers until it expires; the next miss will lead a new call.
      flight.finish({ cache: false });
    }
  }

  /** The running, shared flight for `key`, if any. */
  inflight(key: string): Flight<E> | undefined {
    return this.#inflight.get(key);
  }

  /** Every running, shared flight (for status reports; do not join or finish them from here). */
  flights(): IterableIterator<Flight<E>> {
    return this.#inflight.values();
  }

  /**
   * The recording for `key` if it has passed its TTL but is within the grace it was finished with, so that a
   * caller may be given it when a new producer fails. Undefined otherwise.
   */
  stale(key: string): StaleRecording<E> | undefined {
    const recording = this.#cache.getStale(key);
    if (recording === undefined) return undefined;
    const sinceFinish = this.#now() - recording.finishedAt;
    return {
      events: recording.events,
      ageMs: recording.ageMs + sinceFinish,
      freshMs: recording.ttlMs - sinceFinish,
    };
  }

  /** Whether {@linkcode stale} would give a recording for `key` now (no allocation). */
  hasStale(key: string): boolean {
    return this.#cache.getStale(key) !== undefined;
  }

  /** Forgets the cached recording for `key`, if any. */
  forget(key: string): void {
    this.#cache.delete(key);
  }

  /**
   * Drops every cached recording (fresh or stale) for which `match(key, label, tags)` holds, and retires
   * every running flight for which `match(key, tag, undefined)` holds: it still answers its subscribers, but
   * takes no one new and is not cached. O(cached recordings + running flights).
   */
  purge(
    match: (key: string, label: string | undefined, tags: readonly string[] | undefined) => boolean,
  ): PurgeCount {
    const entries = this.#cache.deleteWhere((key, recording) => match(key, recording.label, recording.tags));
    const retired: Flight<E>[] = [];
    for (const flight of this.#inflight.values()) {
      if (match(flight.key, flight.tag, undefined)) retired.push(flight);
    }
    for (const flight of retired) flight._retire();
    return { entries, flights: retired.length };
  }

  /** A snapshot of the counters and gauges. */
  stats(): CollapserStats {
    return {
      leaders: this.#leaders,
      followers: this.#followers,
      cacheHits: this.#cacheHits,
      refreshes: this.#refreshes,
      inflight: this.#inflight.size,
      waiting: this.#owner.waiting,
      cacheEntries: this.#cache.size,
      cacheBytes: this.#cache.bytes,
      cacheEvictions: this.#cache.evictions,
    };
  }

  /** A flight stops being joinable; caches its recording if given and kept. */
  #release(flight: Flight<E>, events?: E[], bytes = 0, options?: FinishOptions): boolean {
    if (this.#inflight.get(flight.key) === flight) this.#inflight.delete(flight.key);
    if (events === undefined || options === undefined || !options.cache) return false;
    const now = this.#now();
    const ttlMs = options.ttlMs ?? this.#defaultTtlMs;
    const graceMs = options.graceMs ?? 0;
    const swrMs = options.swrMs ?? 0;
    // The proxy passes its method's frozen options, which carry a TTL: no allocation for them.
    const retention: Retention = swrMs === 0
      ? (options.ttlMs !== undefined ? options as Retention : { ttlMs, graceMs })
      // Replayed for the stale-while-revalidate window too; the stale-if-error grace counts from the TTL.
      : { ttlMs: ttlMs + swrMs, graceMs: Math.max(0, graceMs - swrMs) };
    const recording: Recording<E> = {
      events,
      finishedAt: now,
      tookMs: options.tookMs ?? now - flight.startedAt,
      ttlMs,
      ageMs: options.ageMs ?? 0,
      label: flight.tag,
      tags: options.tags,
      refreshing: false,
    };
    return this.#cache.set(flight.key, recording, bytes, retention);
  }
}

const CACHE_HIT: Membership = Object.freeze({ role: "cache" as const, leave: noop });
