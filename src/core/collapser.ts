/**
 * The collapsing core: one in-flight producer per key, any number of subscribers, and a short TTL cache of
 * finished recordings. It knows nothing of gRPC, HTTP/2 or the network (compare Go's `singleflight`).
 *
 * A producer's output is a sequence of events. The first subscriber of a key starts the producer (the
 * leader); later ones (followers) get the events recorded so far replayed, then live ones. The producer
 * belongs to no subscriber: a subscriber that leaves only stops receiving. When the producer finishes, the
 * recording may be cached for the TTL and replayed to later subscribers (cache hits).
 *
 * @module
 */

import { type Retention, TtlCache } from "./ttl_cache.ts";

/** How a subscriber was served. */
export type Role = "leader" | "follower" | "cache";

/** Receives a shared sequence of events. Callbacks must not throw; if one does, that subscriber is dropped. */
export interface Subscriber<E> {
  /** One event, in order. Late joiners first get every event recorded so far. */
  event(event: E): void;
  /** The producer finished (or the subscriber was dropped); no more events follow. */
  end(): void;
}

/** A subscriber's place in a flight or cache hit. */
export interface Membership {
  /** How this subscriber is served. */
  readonly role: Role;
  /** Stops delivery to this subscriber. The producer goes on for the others. Idempotent. */
  leave(): void;
}

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

/** Per-join options of {@linkcode Collapser.join}. */
export interface JoinOptions {
  /**
   * Whether a cache hit may refresh the recording ahead of its expiry. A hit in the last stretch of a
   * recording's life starts one new producer in the background, and is still answered from the cache; the
   * new recording lands about when the old one expires, so a hot key has no gap in which callers wait, and
   * its producer still runs about once per TTL. The stretch is as long as the producer took, but at most
   * half the TTL: hits in the first half of a recording's life never refresh it, so a one-off burst that
   * is answered within that half (the tail of a herd) costs no second producer, however slow the first.
   * @default {the collapser's refreshAhead}
   */
  readonly refreshAhead?: boolean;
}

/** How a finished flight's recording is kept. */
export interface FinishOptions {
  /** Cache the recording (for `ttlMs`, or the collapser's TTL). */
  readonly cache: boolean;
  /** TTL of this recording, in ms; 0 = not fresh at all (but see graceMs). @default {the collapser's} */
  readonly ttlMs?: number;
  /** How long past its TTL the recording is kept for {@linkcode Collapser.stale}, in ms. @default {0} */
  readonly graceMs?: number;
  /**
   * How long producing the recording took, when it was not this flight's own work (an answer handed over
   * by another producer): refresh-ahead starts that long before expiry. @default {the flight's duration}
   */
  readonly tookMs?: number;
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

/** Default TTL of a cached recording: 100 ms. */
export const DEFAULT_CACHE_TTL_MS = 100;

interface Recording<E> {
  events: E[];
  /** When the producer finished (clock of the collapser). */
  finishedAt: number;
  /** How long the producer took. */
  tookMs: number;
  /** How long it is fresh. */
  ttlMs: number;
  /** Whether a refresh of this recording has been started (at most one per recording). */
  refreshing: boolean;
}

/**
 * One running producer and its subscribers. The producer is handed the flight and reports through
 * {@linkcode Flight.emit} and {@linkcode Flight.finish}.
 */
export class Flight<E> {
  readonly key: string;
  #events: E[] | undefined = [];
  #bytes = 0;
  #subscribers = new Set<Subscriber<E>>();
  #done = false;
  readonly #owner: Collapser<E>;
  /** Called when the last subscriber leaves before the producer finished. */
  onIdle: (() => void) | undefined;
  /**
   * Called once when the producer finishes, after the subscribers got `end()`, with the recording (undefined
   * if the flight stopped being shared) and how it is kept: for a producer that passes answers on (the
   * shared tier). Must not throw.
   */
  onFinish: ((events: readonly E[] | undefined, options: FinishOptions) => void) | undefined;
  /** Called once if the flight stops being shared (see {@linkcode unshare}). Must not throw. */
  onUnshare: (() => void) | undefined;
  /** Whether refresh-ahead started this flight (a cached recording still answers meanwhile). */
  readonly refresh: boolean;

  /** @internal Created by {@linkcode Collapser.join}. */
  constructor(owner: Collapser<E>, key: string, refresh = false) {
    this.#owner = owner;
    this.key = key;
    this.refresh = refresh;
    this.#startedAt = owner._now();
  }

  readonly #startedAt: number;

  /** When the producer started (clock of the collapser). */
  get startedAt(): number {
    return this.#startedAt;
  }

  /** A label the producer may set for reports (the proxy puts the method here); the core ignores it. */
  tag: string | undefined;

  /** Whether new subscribers may still join (and the recording may still be cached). */
  get shared(): boolean {
    return this.#events !== undefined && !this.#done;
  }

  /** Whether the producer has finished. */
  get done(): boolean {
    return this.#done;
  }

  /** Subscribers receiving events now. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Records `event` (while shared) and delivers it to every subscriber. */
  emit(event: E): void {
    if (this.#done) return;
    if (this.#events !== undefined) {
      this.#events.push(event);
      this.#bytes += this.#owner.sizeOf(event);
    }
    for (const subscriber of this.#subscribers) this.#deliver(subscriber, event);
  }

  /**
   * Stops sharing: no one else may join, nothing is recorded or cached; current subscribers still get
   * every event. Use it when the output turns out to be unbounded (a stream).
   */
  unshare(): void {
    if (this.#events === undefined || this.#done) return;
    this.#events = undefined;
    this.#owner._release(this);
    this.onUnshare?.();
  }

  /** Ends the flight: subscribers get `end()`, and the recording is cached when `options.cache` is true. */
  finish(options: FinishOptions): void {
    if (this.#done) return;
    this.#done = true;
    const events = this.#events;
    this.#events = undefined;
    const now = this.#owner._now();
    if (options.cache && events !== undefined) {
      // The proxy passes its method's frozen options, which carry a TTL: no allocation per finish.
      const retention: Retention = options.ttlMs !== undefined
        ? options as Retention
        : options.graceMs === undefined
        ? this.#owner._defaultRetention
        : { ttlMs: this.#owner._defaultRetention.ttlMs, graceMs: options.graceMs };
      const recording = {
        events,
        finishedAt: now,
        tookMs: options.tookMs ?? now - this.#startedAt,
        ttlMs: retention.ttlMs,
        refreshing: false,
      };
      this.#owner._release(this, recording, this.#bytes, retention);
    } else this.#owner._release(this);
    const subscribers = [...this.#subscribers];
    this.#subscribers.clear();
    this.#owner._waiting -= subscribers.length;
    for (const subscriber of subscribers) safeEnd(subscriber);
    this.onFinish?.(events, options);
  }

  /** @internal */
  _add(subscriber: Subscriber<E>): Membership {
    for (const event of this.#events ?? []) {
      if (!this.#deliver(subscriber, event)) return { role: "follower", leave: noop };
    }
    this.#subscribers.add(subscriber);
    this.#owner._waiting++;
    return {
      role: "follower",
      leave: () => this.#remove(subscriber),
    };
  }

  #remove(subscriber: Subscriber<E>): void {
    if (!this.#subscribers.delete(subscriber)) return;
    this.#owner._waiting--;
    if (this.#subscribers.size === 0 && !this.#done) this.onIdle?.();
  }

  #deliver(subscriber: Subscriber<E>, event: E): boolean {
    try {
      subscriber.event(event);
      return true;
    } catch {
      this.#remove(subscriber);
      safeEnd(subscriber);
      return false;
    }
  }
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
  /** @internal The retention of a recording whose finish names no TTL. */
  readonly _defaultRetention: Retention;
  readonly #refreshAhead: boolean;
  /** @internal The collapser's clock. */
  readonly _now: () => number;
  /** @internal Gauge maintained by flights. */
  _waiting = 0;

  constructor(options: CollapserOptions<E> = {}) {
    const { ttlMs = DEFAULT_CACHE_TTL_MS, maxEntries, maxBytes, now = () => performance.now() } = options;
    this._now = now;
    this._defaultRetention = Object.freeze({ ttlMs });
    this.#refreshAhead = options.refreshAhead ?? true;
    if (!Number.isFinite(ttlMs) || ttlMs < 0) {
      throw new RangeError(`Cannot create Collapser: ttlMs must be a finite number >= 0: received ${ttlMs}`);
    }
    this.#cache = new TtlCache({ maxEntries, maxBytes, now });
    this.sizeOf = options.sizeOf ?? (() => 0);
  }

  /**
   * Subscribes to `key`: replays a cached recording, joins the running flight, or becomes the leader and
   * calls `start` with a new flight. Events may be delivered before this returns.
   */
  join(
    key: string,
    subscriber: Subscriber<E>,
    start: (flight: Flight<E>) => void,
    options?: JoinOptions,
  ): Membership {
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#cacheHits++;
      try {
        for (const event of cached.events) subscriber.event(event);
      } finally {
        safeEnd(subscriber);
      }
      if (
        (options?.refreshAhead ?? this.#refreshAhead) && !cached.refreshing && !this.#inflight.has(key) &&
        this._now() - cached.finishedAt >= cached.ttlMs - Math.min(cached.tookMs, cached.ttlMs / 2)
      ) {
        cached.refreshing = true;
        this.#refresh(key, start);
      }
      return CACHE_HIT;
    }
    const running = this.#inflight.get(key);
    if (running !== undefined) {
      this.#followers++;
      return running._add(subscriber);
    }
    this.#leaders++;
    const flight = new Flight<E>(this, key);
    this.#inflight.set(key, flight);
    const membership = flight._add(subscriber);
    try {
      start(flight);
    } catch (err) {
      // A producer that cannot start must not stay in flight for followers to wait on forever.
      flight.finish({ cache: false });
      throw err;
    }
    return { role: "leader", leave: membership.leave };
  }

  /** Starts a producer nobody waits on yet; callers that come before it finishes join it. */
  #refresh(key: string, start: (flight: Flight<E>) => void): void {
    this.#refreshes++;
    const flight = new Flight<E>(this, key, true);
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
   * The events of the recording for `key` if it has passed its TTL but is within the grace it was finished
   * with, so that a caller may be given it when a new producer fails. Undefined otherwise.
   */
  stale(key: string): readonly E[] | undefined {
    return this.#cache.getStale(key)?.events;
  }

  /** Forgets the cached recording for `key`, if any. */
  forget(key: string): void {
    this.#cache.delete(key);
  }

  /** A snapshot of the counters and gauges. */
  stats(): CollapserStats {
    return {
      leaders: this.#leaders,
      followers: this.#followers,
      cacheHits: this.#cacheHits,
      refreshes: this.#refreshes,
      inflight: this.#inflight.size,
      waiting: this._waiting,
      cacheEntries: this.#cache.size,
      cacheBytes: this.#cache.bytes,
      cacheEvictions: this.#cache.evictions,
    };
  }

  /** @internal A flight stops being joinable; caches its recording if given. */
  _release(flight: Flight<E>, recording?: Recording<E>, bytes = 0, retention?: Retention): void {
    if (this.#inflight.get(flight.key) === flight) this.#inflight.delete(flight.key);
    if (recording !== undefined) this.#cache.set(flight.key, recording, bytes, retention!);
  }
}

const CACHE_HIT: Membership = Object.freeze({ role: "cache" as const, leave: noop });

function noop(): void {}

function safeEnd(subscriber: Subscriber<unknown>): void {
  try {
    subscriber.end();
  } catch {
    // A subscriber that fails on end has nothing left to receive.
  }
}
