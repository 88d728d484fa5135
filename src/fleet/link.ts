/**
 * What the shared tier needs from a Redis client ({@linkcode RedisLink}), and the shapes it trades in: the
 * Redis keys of one collapse key and what one round trip found. redis_link.ts implements it for one Redis
 * (and, following a Sentinel's master, redis_sentinel_link.ts), redis_cluster_link.ts for a Redis Cluster;
 * open_link.ts picks one at start-up. The tier does not know which: a link says where a key lives
 * ({@linkcode RedisLink.keysOf}) and, in a Cluster, which part of Redis serves it ({@linkcode TierKeys.shard}),
 * so that a failure there ({@linkcode ShardUnavailable}) sends only that part's keys to the backend.
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
  /** Where the answer, lock, waiters flag and notices of collapse key `key` live, in `namespace`. */
  keysOf(namespace: string, key: string): TierKeys;
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
   * publishes `notice` followed by `answer` on the keys' channel when a waiter registered. Resolves with
   * what it did: `lost` if the lock was no longer ours.
   */
  settle(
    keys: TierKeys,
    token: string,
    answer: Uint8Array,
    ttlMs: number,
    notice: Uint8Array,
  ): Promise<"released" | "published" | "lost">;
  /**
   * Calls `listener` with every message published on the channels of `namespace` (every channel
   * {@linkcode keysOf} names there), re-subscribing after reconnects and topology changes.
   */
  subscribe(namespace: string, listener: (message: Uint8Array) => void): Promise<void>;
  /** The shards serving keys now (a Cluster's masters), for reporting which are down; none for one Redis. */
  shards?(): readonly string[];
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
  /**
   * Calls `listener` with every message published (PUBLISH, not sharded) on `channel` — the fleet's purge
   * channel — re-subscribing after reconnects.
   */
  subscribeChannel(channel: string, listener: (message: Uint8Array) => void): Promise<void>;
  /** Sets what to call when the connection is lost (`down`) or comes back (`up`). */
  onConnection(listener: (state: "up" | "down", reason: string) => void): void;
  /** Closes both connections. */
  close(): Promise<void>;
}

/** The Redis keys of one collapse key (one hash slot in a Cluster), and where its notices go. */
export interface TierKeys {
  readonly answer: string;
  readonly lock: string;
  readonly waiters: string;
  /** The pub/sub channel its lock holder's notice goes to (in a Cluster, a shard channel of its slot). */
  readonly channel: string;
  /**
   * Which part of Redis serves these keys now (a Cluster master's address), when failures there should
   * only send these keys to the backend rather than put the whole tier down; undefined for one Redis.
   */
  readonly shard?: string;
}

/**
 * A round trip failed in one part of Redis only (a Cluster master that is gone or has no master yet): the
 * call falls back to the backend, that part's keys stay local for a while, the rest of the tier goes on.
 */
export class ShardUnavailable extends Error {
  /** The part of Redis (a Cluster master's address). */
  readonly shard: string;
  /**
   * A passing condition of one slot rather than its master (`TRYAGAIN` while the slot migrates): it counts
   * like a late reply, several in a row before the shard is taken as down.
   */
  readonly transient: boolean;

  constructor(shard: string, options?: ErrorOptions & { transient?: boolean }) {
    const cause = options?.cause;
    super(`${shard}: ${cause instanceof Error ? cause.message || cause.name : String(cause)}`, options);
    this.name = "ShardUnavailable";
    this.shard = shard;
    this.transient = options?.transient ?? false;
  }
}

/** The Redis keys of the fleet's purge log (one hash slot: `{purges}`). */
export interface PurgeKeys {
  /** The latest purge number (INCR). */
  readonly seq: string;
  /** The last purges, as JSON records, oldest first. */
  readonly log: string;
}
