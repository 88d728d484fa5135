/**
 * Health of each part of a Redis Cluster the tier uses (a shard: the master serving a key's slot now). A
 * master that is gone — killed, partitioned, or failing over to its replica — must not put the whole tier
 * down: only its keys go to the backend for a while, the other masters' keys are still shared. So a shard
 * is a circuit breaker of its own: {@linkcode ShardUnavailable} (or three round trips in a row past the
 * timeout, or refused for a passing reason such as a slot migrating) opens it — one warning per outage — and `retryMs` later one call goes through to try it; an
 * answer closes it (one info line), another failure keeps it open for another `retryMs`. A failover needs no
 * trial: the slot's new master is another shard, healthy from the start.
 *
 * Why a breaker rather than trying every call: a master that does not answer (partitioned rather than
 * refusing) would make every call to it wait the whole `--redis-timeout` before falling back.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { ShardUnavailable } from "./link.ts";

/** Round trips to one shard that must time out in a row before it counts as down. */
const TIMEOUTS_FOR_OUTAGE = 3;
/** Shards remembered at most (failed ones only; one per master address, so a handful in practice). */
const MAX_SHARDS = 1_024;

interface Shard {
  /** Round trips timed out in a row. */
  timeouts: number;
  /** While down: when the next call may try it (ms on the clock); undefined while up. */
  retryAt: number | undefined;
}

/** Options for {@linkcode ShardHealth}. */
export interface ShardHealthOptions {
  /** How long a shard that failed is left alone before one call tries it again, in ms. */
  retryMs: number;
  /** The clock, in ms. @default {performance.now} */
  now?: () => number;
}

/** The shards that failed lately, each a circuit breaker: see the module doc. */
export class ShardHealth {
  readonly #shards = new Map<string, Shard>();
  readonly #retryMs: number;
  readonly #now: () => number;
  /** Times a shard went down. */
  outages = 0;

  constructor(options: ShardHealthOptions) {
    this.#retryMs = options.retryMs;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * The shards down now, among `current` (the shards serving keys now, when known): one that no longer
   * serves any (a master replaced by its replica) is forgotten.
   */
  down(current?: readonly string[]): string[] {
    if (current !== undefined) {
      for (const name of this.#shards.keys()) if (!current.includes(name)) this.#shards.delete(name);
    }
    return [...this.#shards].filter(([, s]) => s.retryAt !== undefined).map(([name]) => name);
  }

  /**
   * Whether a call to `shard` should go to Redis: yes unless it is down; once its retry time has come, yes
   * for one call (the trial), and no again for the next `retryMs`.
   */
  usable(shard: string): boolean {
    const state = this.#shards.get(shard);
    if (state?.retryAt === undefined) return true;
    const now = this.#now();
    if (now < state.retryAt) return false;
    state.retryAt = now + this.#retryMs;
    return true;
  }

  /** A round trip to `shard` came back in time. */
  answered(shard: string): void {
    const state = this.#shards.get(shard);
    if (state === undefined) return;
    this.#shards.delete(shard);
    if (state.retryAt !== undefined) {
      log.info("redis: {shard} answers again: its keys are shared again", { shard });
    }
  }

  /**
   * A round trip to `shard` failed. Returns whether the failure was the shard's own ({@linkcode
   * ShardUnavailable} or a timeout); anything else (refused credentials, a reply the tier cannot read) is
   * the whole tier's to judge.
   */
  failed(shard: string, err: unknown, timedOut: boolean): boolean {
    if (!timedOut && !(err instanceof ShardUnavailable)) return false;
    let state = this.#shards.get(shard);
    if (state === undefined) {
      if (this.#shards.size >= MAX_SHARDS) this.#forgetOne();
      state = { timeouts: 0, retryAt: undefined };
      this.#shards.set(shard, state);
    }
    const passing = timedOut || (err instanceof ShardUnavailable && err.transient);
    if (passing && ++state.timeouts < TIMEOUTS_FOR_OUTAGE) return true;
    if (state.retryAt === undefined) {
      this.outages++;
      log.warn(
        "redis: {shard} unavailable ({reason}): its keys collapse on this proxy only until it answers",
        {
          shard,
          reason: err instanceof ShardUnavailable && err.cause instanceof Error
            ? err.cause.message
            : String(err),
        },
      );
    }
    state.retryAt = this.#now() + this.#retryMs;
    return true;
  }

  /** Makes room: forgets a shard that is only counting timeouts, else the oldest one. */
  #forgetOne(): void {
    for (const [name, s] of this.#shards) {
      if (s.retryAt === undefined) return void this.#shards.delete(name);
    }
    this.#shards.delete(this.#shards.keys().next().value!);
  }
}
