/**
 * One running producer and its subscribers ({@linkcode Flight}), and the shapes the core trades in: what a
 * subscriber receives, how a finished flight's recording is kept, how a subscriber is served. The
 * {@linkcode Collapser} (collapser.ts) creates flights and caches what they record.
 *
 * @module
 */

/** How a subscriber was served. */
export type Role = "leader" | "follower" | "cache";

/** Receives a shared sequence of events. Callbacks must not throw; if one does, that subscriber is dropped. */
export interface Subscriber<E> {
  /** One event, in order. Late joiners first get every event recorded so far. */
  event(event: E): void;
  /** The producer finished (or the subscriber was dropped); no more events follow. */
  end(): void;
  /**
   * Optional: told on a cache hit, before the recording is replayed, how old the recording is (`ageMs`: what
   * it was finished with plus the time since) and how much freshness it has left (`freshMs`; negative within
   * its stale-while-revalidate window).
   */
  cached?(ageMs: number, freshMs: number): void;
  /**
   * Optional: told when the producer finishes, before the last event it finishes with (see
   * {@linkcode Flight.finish}), whether the recording was stored, and how it was to be kept.
   */
  finishing?(stored: boolean, options: FinishOptions): void;
}

/** A subscriber's place in a flight or cache hit. */
export interface Membership {
  /** How this subscriber is served. */
  readonly role: Role;
  /** Stops delivery to this subscriber. The producer goes on for the others. Idempotent. */
  leave(): void;
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
   * (A hit within a recording's stale-while-revalidate window always refreshes it.)
   * @default {the collapser's refreshAhead}
   */
  readonly refreshAhead?: boolean;
  /**
   * Skip the cache and any running flight: start a new producer whose recording replaces the cached one.
   * A running flight it displaces still answers its subscribers, but takes no one new and is not cached.
   * @default {false}
   */
  readonly bypass?: boolean;
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
   * How long past its TTL the recording is still replayed to hits, each of which then refreshes it
   * (stale-while-revalidate), in ms. @default {0}
   */
  readonly swrMs?: number;
  /** How old the recording already is when finished, in ms (it counts towards the age hits are told). @default {0} */
  readonly ageMs?: number;
  /** Labels the recording carries, for {@linkcode Collapser.purge}; the core does not read them. */
  readonly tags?: readonly string[];
  /** Why the recording is not cached, for reports; the core does not read it. */
  readonly reason?: string;
  /**
   * How long producing the recording took, when it was not this flight's own work (an answer handed over
   * by another producer): refresh-ahead starts that long before expiry. @default {the flight's duration}
   */
  readonly tookMs?: number;
}

/** What a {@linkcode Flight} needs from the collapser that created it. */
export interface FlightOwner<E> {
  /** Size of one event in bytes. */
  readonly sizeOf: (event: E) => number;
  /** The owner's clock. */
  now(): number;
  /** Subscribers waiting on running flights (a gauge the flights maintain). */
  waiting: number;
  /** The flight stops being joinable; its recording, if given, is cached. Returns whether it was. */
  release(flight: Flight<E>, events?: E[], bytes?: number, options?: FinishOptions): boolean;
}

/** How a retired flight's recording is kept: not at all. */
const RETIRED: FinishOptions = Object.freeze({ cache: false, reason: "retired" });

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
  #retired = false;
  readonly #owner: FlightOwner<E>;
  readonly #startedAt: number;
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
  /** For a refresh: the TTL of the recording it refreshes, in ms. */
  readonly refreshTtlMs: number | undefined;
  /** A label the producer may set for reports and purges (the proxy puts the method here). */
  tag: string | undefined;

  /** @internal Created by {@linkcode Collapser.join}. */
  constructor(owner: FlightOwner<E>, key: string, refreshTtlMs?: number) {
    this.#owner = owner;
    this.key = key;
    this.refresh = refreshTtlMs !== undefined;
    this.refreshTtlMs = refreshTtlMs;
    this.#startedAt = owner.now();
  }

  /** When the producer started (clock of the collapser). */
  get startedAt(): number {
    return this.#startedAt;
  }

  /** Whether new subscribers may still join (and the recording may still be cached). */
  get shared(): boolean {
    return this.#events !== undefined && !this.#done && !this.#retired;
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
    this.#owner.release(this);
    this.onUnshare?.();
  }

  /**
   * Ends the flight: the recording is cached when `options.cache` is true (and the flight was not retired),
   * then each subscriber is told how it was kept (`finishing`), gets `last` if given (the final event: it is
   * recorded too) and `end()`.
   */
  finish(options: FinishOptions, last?: E): void {
    if (this.#done) return;
    this.#done = true;
    const events = this.#events;
    this.#events = undefined;
    if (last !== undefined && events !== undefined) {
      events.push(last);
      this.#bytes += this.#owner.sizeOf(last);
    }
    const kept = this.#retired && options.cache ? RETIRED : options;
    const stored = this.#owner.release(this, events, this.#bytes, kept);
    const subscribers = [...this.#subscribers];
    this.#subscribers.clear();
    this.#owner.waiting -= subscribers.length;
    for (const subscriber of subscribers) {
      try {
        subscriber.finishing?.(stored, kept);
        if (last !== undefined) subscriber.event(last);
      } catch {
        // A subscriber that fails here has nothing left to receive but end().
      }
      safeEnd(subscriber);
    }
    this.onFinish?.(events, kept);
  }

  /**
   * @internal The flight stops being joinable and will not be cached (a purge, or a bypass that replaces
   * it); its subscribers still get every event.
   */
  _retire(): void {
    if (this.#done || this.#retired) return;
    this.#retired = true;
    this.#owner.release(this);
  }

  /** @internal `role`: how the subscriber is served (a leader is its flight's first subscriber). */
  _add(subscriber: Subscriber<E>, role: Role = "follower"): Membership {
    for (const event of this.#events ?? []) {
      if (!this.#deliver(subscriber, event)) return role === "follower" ? GONE_FOLLOWER : GONE_LEADER;
    }
    this.#subscribers.add(subscriber);
    this.#owner.waiting++;
    return new Place(role, this, subscriber);
  }

  /** @internal Stops delivery to `subscriber` (its membership's `leave`). */
  _remove(subscriber: Subscriber<E>): void {
    this.#remove(subscriber);
  }

  #remove(subscriber: Subscriber<E>): void {
    if (!this.#subscribers.delete(subscriber)) return;
    this.#owner.waiting--;
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
 * A subscriber's place in a running flight. One object, not an object and a closure: it is held for as long
 * as its call waits, which under unique keys is past two scavenges (docs/performance.md).
 */
class Place<E> implements Membership {
  readonly #flight: Flight<E>;
  readonly #subscriber: Subscriber<E>;

  constructor(readonly role: Role, flight: Flight<E>, subscriber: Subscriber<E>) {
    this.#flight = flight;
    this.#subscriber = subscriber;
  }

  leave(): void {
    this.#flight._remove(this.#subscriber);
  }
}

const GONE_FOLLOWER: Membership = Object.freeze({ role: "follower" as const, leave: noop });
const GONE_LEADER: Membership = Object.freeze({ role: "leader" as const, leave: noop });

/** Does nothing. */
export function noop(): void {}

/** Tells `subscriber` it gets nothing more, whatever it does about it. */
export function safeEnd(subscriber: Subscriber<unknown>): void {
  try {
    subscriber.end();
  } catch {
    // A subscriber that fails on end has nothing left to receive.
  }
}
