/**
 * Purges across the fleet, through the shared tier's Redis. A purge is one round trip, whatever it names:
 * a script takes the fleet's next purge number, appends the purge to a short log (the last
 * {@linkcode MAX_PURGE_RECORDS}) and publishes it on the fleet's purge channel. Every proxy that hears it
 * drops its matching local answers; the answers stored in Redis are not scanned: each carries the purge
 * number its flight started with, and a proxy reading one checks it against the purges it knows
 * (purges.ts). So a purge by method glob, key or tag is O(1) in Redis, and a tag — known only once an
 * answer is — needs no index.
 *
 * Pub/sub can lose a message (a reconnect); every proxy therefore also asks Redis for the latest purge
 * number every `syncMs` (one small script), and reads the log when it is behind. A proxy that starts reads
 * the log once; purges older than the log keeps count as having purged every answer stamped before them.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { MAX_PURGE_RECORDS, parsePurgeTarget, type PurgeTarget } from "../policy/purges.ts";
import type { PurgeKeys, RedisLink } from "./link.ts";
import type { TierHealth } from "./tier_health.ts";

/** How often a proxy asks Redis for the fleet's latest purge number, by default: 1 s. */
export const DEFAULT_PURGE_SYNC_MS = 1_000;

/** Options for {@linkcode FleetPurges}. */
export interface FleetPurgesOptions {
  readonly link: RedisLink;
  readonly health: TierHealth;
  /** Where the fleet's keys and channels live. */
  readonly namespace: string;
  /** This proxy's id: its own published purges are applied when the script returns, not when heard. */
  readonly id: string;
  /** Applies a fleet purge here (idempotent by `fleetSeq`). */
  readonly apply: (target: PurgeTarget, fleetSeq: number, at: number) => void;
  /** Tells the log that purges up to `fleetSeq` are no longer known. */
  readonly forgotten: (fleetSeq: number) => void;
  /** The highest fleet purge number applied here. */
  readonly known: () => number;
  /** @default {DEFAULT_PURGE_SYNC_MS} */
  readonly syncMs?: number;
}

/** What a fleet-wide purge did in Redis. */
export interface FleetPurge {
  /** The fleet's number for the purge. */
  readonly seq: number;
  /** Proxies subscribed to the purge channel when it was published (this one included). */
  readonly proxies: number;
}

/** The fleet's purges: publishing, hearing, and catching up. */
export class FleetPurges {
  readonly #options: FleetPurgesOptions;
  readonly #keys: PurgeKeys;
  readonly #channel: string;
  #timer: ReturnType<typeof setInterval> | undefined;
  #syncing = false;

  constructor(options: FleetPurgesOptions) {
    this.#options = options;
    this.#keys = { seq: `${options.namespace}{purges}:seq`, log: `${options.namespace}{purges}:log` };
    this.#channel = `${options.namespace}purges`;
  }

  /** Subscribes to the purge channel, catches up once, and then every `syncMs` (the timer is unref'd). */
  start(): void {
    const { link, syncMs = DEFAULT_PURGE_SYNC_MS } = this.#options;
    link.subscribeChannel(this.#channel, (message) => this.#heard(message)).catch((err) =>
      log.debug("redis: purge subscribe failed: {error}", { error: String(err) })
    );
    this.sync();
    this.#timer = setInterval(() => this.sync(), syncMs);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Stops catching up. */
  close(): void {
    clearInterval(this.#timer);
  }

  /** Records and publishes a purge; rejects when Redis cannot be reached in time. */
  async publish(target: PurgeTarget, at: number): Promise<FleetPurge> {
    const { link, health, id } = this.#options;
    const record = JSON.stringify({ kind: target.kind, value: target.value, at, by: id });
    const { seq, receivers } = await health.timed(
      link.purge(this.#keys, record, this.#channel, MAX_PURGE_RECORDS),
    );
    health.answered();
    return { seq, proxies: receivers };
  }

  /** Asks Redis for the latest purge number, and applies the purges this proxy missed. */
  async sync(): Promise<void> {
    const { link, health, known, forgotten } = this.#options;
    if (this.#syncing || !health.up) return;
    this.#syncing = true;
    try {
      const after = known();
      const { seq, records } = await health.timed(link.purges(this.#keys, after));
      health.answered();
      if (seq <= after) return;
      let oldest = Infinity;
      for (const text of records) {
        const seqOf = this.#apply(text, false);
        if (seqOf !== undefined) oldest = Math.min(oldest, seqOf);
      }
      // Purges the log no longer keeps (it keeps the last ones): answers stamped before them count as purged.
      if (oldest === Infinity) forgotten(seq);
      else if (oldest > after + 1) forgotten(oldest - 1);
    } catch (err) {
      log.debug("redis: purge sync failed: {error}", { error: String(err) });
    } finally {
      this.#syncing = false;
    }
  }

  #heard(message: Uint8Array): void {
    const before = this.#options.known();
    const seq = this.#apply(new TextDecoder().decode(message), true);
    // A gap (a purge number skipped): a message was lost; catch up now rather than within syncMs.
    if (seq !== undefined && seq > before + 1) this.sync();
  }

  /** Applies one purge record; returns its fleet number (undefined for a record that is not one). */
  #apply(text: string, heard: boolean): number | undefined {
    let record: { seq?: unknown; kind?: unknown; value?: unknown; at?: unknown; by?: unknown };
    let target: PurgeTarget;
    try {
      record = JSON.parse(text);
      if (typeof record.kind !== "string") throw new TypeError("no kind");
      target = parsePurgeTarget({ [record.kind]: record.value });
    } catch (err) {
      log.warn("redis: a purge record could not be read ({error}); ignored", { error: String(err) });
      return undefined;
    }
    const seq = Number(record.seq);
    if (!Number.isSafeInteger(seq) || seq < 1) return undefined;
    // This proxy's own purge is applied when its script returns.
    if (heard && record.by === this.#options.id) return seq;
    const at = typeof record.at === "number" ? record.at : Date.now();
    this.#options.apply(target, seq, at);
    return seq;
  }
}
