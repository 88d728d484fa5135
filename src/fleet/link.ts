/**
 * What the shared tier needs from a Redis client ({@linkcode RedisLink}), and the shapes it trades in: the
 * Redis keys of one collapse key and what one round trip found. redis_link.ts implements it with
 * node-redis; tests can drive the tier through it.
 *
 * @module
 */

/** What one round trip for a key found. */
export type Lookup =
  /** An answer stored by some proxy, and how much longer it is fresh. */
  | { readonly kind: "hit"; readonly value: Uint8Array; readonly ttlMs: number }
  /** The lock is ours: call the backend. */
  | { readonly kind: "lock" }
  /** Another proxy holds the lock (its answer will be published). */
  | { readonly kind: "wait" }
  /** (Poll only) No answer and no lock. */
  | { readonly kind: "free" };

/** What the tier needs from a Redis client: see redis_link.ts. Every method may reject. */
export interface RedisLink {
  /**
   * The stored answer if it has more than `freshForMs` of life left, or else the lock (unless another proxy
   * holds it, then a note that we wait).
   */
  acquire(keys: TierKeys, token: string, lockMs: number, freshForMs: number): Promise<Lookup>;
  /** The stored answer if it has more than `freshForMs` of life left, or whether the lock is still held. */
  look(keys: TierKeys, freshForMs: number): Promise<Lookup>;
  /** Extends the lock for `lockMs` if it still holds `token`; resolves whether it did. */
  extend(keys: TierKeys, token: string, lockMs: number): Promise<boolean>;
  /**
   * If the lock still holds `token`: stores `answer` for `ttlMs` (0 = not stored), releases the lock, and
   * publishes `notice` followed by `answer` on `channel` when a waiter registered. Resolves with what it
   * did: `lost` if the lock was no longer ours.
   */
  settle(
    keys: TierKeys,
    token: string,
    answer: Uint8Array,
    ttlMs: number,
    channel: string,
    notice: Uint8Array,
  ): Promise<"released" | "published" | "lost">;
  /**
   * Records a purge in the fleet's log: takes the next purge number, appends `record` (a JSON object, to
   * which `"seq"` is added) to the log (keeping the last `keep`) and publishes it on `channel`. Resolves
   * with the purge number and how many subscribers (proxies) the message reached.
   */
  purge(
    keys: PurgeKeys,
    record: string,
    channel: string,
    keep: number,
  ): Promise<{ seq: number; receivers: number }>;
  /** The fleet's latest purge number, and (only if it is past `after`) every purge record the log keeps. */
  purges(keys: PurgeKeys, after: number): Promise<{ seq: number; records: string[] }>;
  /** Calls `listener` with every message published on `channel` (re-subscribing after reconnects). */
  subscribe(channel: string, listener: (message: Uint8Array) => void): Promise<void>;
  /** Sets what to call when the connection is lost (`down`) or comes back (`up`). */
  onConnection(listener: (state: "up" | "down", reason: string) => void): void;
  /** Closes both connections. */
  close(): Promise<void>;
}

/** The Redis keys of one collapse key. */
export interface TierKeys {
  readonly answer: string;
  readonly lock: string;
  readonly waiters: string;
}

/** The Redis keys of the fleet's purge log (one hash slot: `{purges}`). */
export interface PurgeKeys {
  /** The latest purge number (INCR). */
  readonly seq: string;
  /** The last purges, as JSON records, oldest first. */
  readonly log: string;
}
