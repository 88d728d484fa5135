/**
 * Whether the shared tier is in use: Redis failing never fails a call. A round trip that errs, or three in a
 * row that take longer than the timeout, put the tier down — one warning per outage, and the tier's
 * `onDown` releases every waiter to call the backend itself — and a probe (the tier's real path, not PING)
 * brings it back once Redis answers in time again. A single late round trip falls back for its own call
 * only: under load it is as often this process's event loop as Redis.
 *
 * In a Redis Cluster a failure may be one master's only: a round trip for keys of a shard
 * ({@linkcode TierKeys.shard}) that fails with {@linkcode ShardUnavailable} or times out is that shard's to
 * judge (shard_health.ts), and the rest of the tier stays up.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { ShardUnavailable, type TierKeys } from "./link.ts";
import { ShardHealth } from "./shard_health.ts";

/** Round trips that must time out in a row before the tier goes down. */
const TIMEOUTS_FOR_OUTAGE = 3;

/** How long start() waits for the first probe at most. */
const START_WAIT_MS = 1_000;

/** A round trip that took longer than the tier's timeout. */
export class TierTimeout extends Error {
  constructor(ms: number) {
    super(`no answer from Redis within ${ms} ms`);
    this.name = "TierTimeout";
  }
}

/** Options for {@linkcode TierHealth}. */
export interface TierHealthOptions {
  /** Bound on one Redis round trip, in ms. */
  timeoutMs: number;
  /** How often a down tier probes Redis, in ms. */
  probeMs: number;
  /** One probe: the tier's real path (resolves when Redis answered it in time; rejects otherwise). */
  probe: () => Promise<void>;
  /** The tier went down: release whoever waits on Redis. */
  onDown: () => void;
}

/** The tier's up/down state, its round-trip bound and its probe. */
export class TierHealth {
  readonly #options: TierHealthOptions;
  #up = false;
  #closed = false;
  #probe: ReturnType<typeof setTimeout> | undefined;
  /** Round trips timed out in a row. */
  #timeouts = 0;
  /** Whether a warning has been logged for the current outage (one per outage, not one per call). */
  #warned = false;
  /** While start() waits: ends the wait. */
  #started: (() => void) | undefined;
  /** The shards (Cluster masters) that failed lately. */
  readonly #shards: ShardHealth;
  /** Times the tier went down. */
  outages = 0;

  constructor(options: TierHealthOptions) {
    this.#options = options;
    this.#shards = new ShardHealth({ retryMs: options.probeMs });
  }

  /** Whether the tier is in use now. */
  get up(): boolean {
    return this.#up;
  }

  /** Whether keys of `shard` go to Redis now: the tier is up and their shard is not down. */
  usable(shard: TierKeys["shard"]): boolean {
    return this.#up && (shard === undefined || this.#shards.usable(shard));
  }

  /** The shards down now (among `current`, the shards serving keys now), and how many times one went down. */
  shards(current?: readonly string[]): { down: string[]; outages: number } {
    return { down: this.#shards.down(current), outages: this.#shards.outages };
  }

  /**
   * Probes once and waits until the tier is up, the first failure is reported with its reason (refused,
   * WRONGPASS, ...), or a second has passed; never rejects. A tier not up by then is down (one warning).
   */
  async start(): Promise<void> {
    const settled = Promise.withResolvers<void>();
    this.#started = settled.resolve;
    const timer = setTimeout(settled.resolve, START_WAIT_MS);
    this.#probeOnce();
    await settled.promise;
    clearTimeout(timer);
    this.#started = undefined;
    if (!this.#up) this.down("no answer from Redis at start-up");
  }

  /** The connection came back: probe now rather than at the next tick of the probe timer. */
  reconnected(): void {
    if (!this.#up) this.#probeNow();
  }

  /** Stops probing; the tier stays as it is. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#probe);
  }

  /** A round trip (for keys of `shard`, if given) came back in time. */
  answered(shard?: TierKeys["shard"]): void {
    this.#timeouts = 0;
    if (shard !== undefined) this.#shards.answered(shard);
  }

  /**
   * A round trip (for keys of `shard`, if given) failed. An error (refused, offline, WRONGPASS) puts the
   * tier down at once; a timeout only when several in a row time out, since one late reply may be this
   * process's own event loop running behind under load rather than Redis being slow. A shard's own failure
   * or timeout is that shard's only.
   */
  failed(err: unknown, shard?: TierKeys["shard"]): void {
    const part = shard ?? (err instanceof ShardUnavailable ? err.shard : undefined);
    if (part !== undefined && this.#shards.failed(part, err, err instanceof TierTimeout)) return;
    if (err instanceof TierTimeout && ++this.#timeouts < TIMEOUTS_FOR_OUTAGE) return;
    this.down(String(err));
  }

  /**
   * A Redis round trip, bounded by the timeout. When the timer fires the rejection waits one more turn of
   * the event loop: a reply that arrived while this process was busy is read first.
   */
  timed<T>(promise: Promise<T>): Promise<T> {
    const { timeoutMs } = this.#options;
    let timer: ReturnType<typeof setTimeout>;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timer = setTimeout(() => reject(new TierTimeout(timeoutMs)), 0);
      }, timeoutMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /** The tier goes down: one warning per outage; waiters call the backend; a probe brings it back. */
  down(reason: string): void {
    if (this.#closed) return;
    if (this.#up || !this.#warned) {
      this.outages++;
      this.#warned = true;
      log.warn("redis unavailable ({reason}): collapsing on this proxy only until it answers again", {
        reason,
      });
    }
    this.#up = false;
    this.#started?.();
    this.#options.onDown();
    this.#scheduleProbe();
  }

  #scheduleProbe(): void {
    if (this.#closed || this.#probe !== undefined) return;
    this.#probe = setTimeout(() => {
      this.#probe = undefined;
      this.#probeNow();
    }, this.#options.probeMs);
  }

  #probeNow(): void {
    this.#probeOnce().then(() => {
      if (!this.#up) this.#scheduleProbe();
    });
  }

  async #probeOnce(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#options.probe();
    } catch (err) {
      // One master failing says the cluster answers (its topology, the credentials): its shard's breaker
      // keeps its keys local, the tier is up for the others.
      if (!(err instanceof ShardUnavailable)) return;
    }
    if (this.#up || this.#closed) return;
    this.#timeouts = 0;
    this.#up = true;
    this.#started?.();
    if (this.#warned) log.info("redis answers again: the shared tier is back in use");
    else log.info("redis: the shared tier is in use");
    this.#warned = false;
  }
}
