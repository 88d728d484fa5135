/**
 * Purges: what an operator asked to drop (`POST /purge`: a method glob, a collapse key, or a tag the backend
 * put in `surrogate-key`), and the log of purges that answers are checked against.
 *
 * A purge drops the matching answers cached here at once (the core scans its cache: exact, and at most
 * `--cache-max-entries`). What a scan cannot reach is checked against this log instead, by sequence number:
 * - an answer whose backend call started before a purge and ends after it (it may carry what the purge was
 *   meant to remove) is not stored if the purge matches it: {@linkcode PurgeLog.purgedSince} with the local
 *   mark taken when its flight started;
 * - with `--redis`, every answer stored in Redis carries the fleet's purge number known when its flight
 *   started, and an answer read from Redis is not taken if a later purge matches it
 *   ({@linkcode PurgeLog.purgedInFleet}). A tag is only known once the answer is, so this check, at read
 *   time, is what makes a tag purge reach the shared entries without a scan of Redis.
 *
 * @module
 */

import { methodGlob } from "./policy.ts";

/** What a purge names. */
export type PurgeKind = "method" | "key" | "tag";

/** One purge request: a method glob, a collapse key (or a prefix of at least 12 hex digits), or a tag. */
export interface PurgeTarget {
  readonly kind: PurgeKind;
  readonly value: string;
}

/** A purge request that cannot be used; the message is one line saying why. */
export class PurgeRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PurgeRequestError";
  }
}

/** Where a purge came from: this proxy's admin port, or another proxy of the fleet (through Redis). */
export type PurgeOrigin = "admin" | "fleet";

/** One purge as applied here. */
export interface PurgeRecord extends PurgeTarget {
  /** This proxy's purge number (1, 2, ...). */
  readonly seq: number;
  /** The fleet's purge number (`--redis`), or undefined for a purge that stayed on this proxy. */
  readonly fleetSeq: number | undefined;
  /** When it was asked for (epoch ms). */
  readonly at: number;
  readonly origin: PurgeOrigin;
  /** Cached answers this proxy dropped for it. */
  dropped: number;
  /** Running backend calls this proxy retired for it (answered, not cached). */
  flights: number;
  /** Whether an answer of `method` with `key` and `tags` is one it names. */
  readonly matches: (method: string | undefined, key: string, tags: readonly string[] | undefined) => boolean;
}

/** Counters of purges, for metrics. */
export interface PurgeStats {
  /** Purges applied, by kind and origin. */
  purges: Record<`${PurgeKind}:${PurgeOrigin}`, number>;
  /** Cached answers dropped by purges. */
  dropped: number;
}

/** Purges remembered; older ones are forgotten, and answers that predate them count as purged. */
export const MAX_PURGE_RECORDS = 1024;
/** Longest tag a purge may name (Fastly's limit on one surrogate key). */
const MAX_TAG_LENGTH = 1024;
const FIELDS: readonly PurgeKind[] = ["method", "key", "tag"];

/**
 * Reads a purge request body (already parsed JSON): exactly one of `method` (a method glob such as
 * `/pkg.Svc/*`), `key` (12 to 64 hex digits) or `tag` (a surrogate key).
 *
 * @throws {PurgeRequestError} with a one-line reason
 */
export function parsePurgeTarget(body: unknown): PurgeTarget {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new PurgeRequestError(`expected a JSON object such as {"method": "/pkg.Svc/*"}`);
  }
  const fields = Object.keys(body);
  const unknown = fields.find((field) => !(FIELDS as readonly string[]).includes(field));
  if (unknown !== undefined) {
    throw new PurgeRequestError(
      `unknown field ${JSON.stringify(unknown)} (expected one of method, key, tag)`,
    );
  }
  if (fields.length !== 1) {
    throw new PurgeRequestError(
      fields.length === 0
        ? "expected one of method, key or tag"
        : "give one of method, key or tag, not several",
    );
  }
  const kind = fields[0] as PurgeKind;
  const value = (body as Record<string, unknown>)[kind];
  if (typeof value !== "string" || value === "") {
    throw new PurgeRequestError(`${kind}: expected a non-empty string`);
  }
  switch (kind) {
    case "method":
      try {
        methodGlob(value);
      } catch (err) {
        throw new PurgeRequestError(`method: ${(err as Error).message}`);
      }
      return { kind, value };
    case "key":
      if (!/^[0-9a-fA-F]{12,64}$/.test(value)) {
        throw new PurgeRequestError(
          "key: expected 12 to 64 hex digits of a collapse key (logs and the status page show the first 12)",
        );
      }
      return { kind, value: value.toLowerCase() };
    case "tag":
      if (value.length > MAX_TAG_LENGTH || !/^[\x21-\x7e]+$/.test(value)) {
        throw new PurgeRequestError(
          `tag: expected a surrogate key: visible ASCII without spaces, at most ${MAX_TAG_LENGTH} characters`,
        );
      }
      return { kind, value };
  }
}

/** The test a purge of `target` applies to an answer. */
export function purgeMatcher(target: PurgeTarget): PurgeRecord["matches"] {
  const { value } = target;
  switch (target.kind) {
    case "method": {
      const glob = methodGlob(value);
      return (method) => method !== undefined && glob(method);
    }
    case "key":
      return (_method, key) => key.startsWith(value);
    case "tag":
      return (_method, _key, tags) => tags !== undefined && tags.includes(value);
  }
}

/** Options of {@linkcode PurgeLog.add}. */
export interface AddOptions {
  readonly origin: PurgeOrigin;
  /** The fleet's number for it, when it went through Redis. */
  readonly fleetSeq?: number;
  /** When it was asked for (epoch ms). @default {Date.now()} */
  readonly at?: number;
}

/** The purges this proxy knows, newest last, bounded; see the module doc. */
export class PurgeLog {
  #records: PurgeRecord[] = [];
  /** Fleet purges by fleet number, ascending. */
  #fleet: PurgeRecord[] = [];
  #seq = 0;
  #fleetSeq = 0;
  /** Answers stamped below this fleet number predate purges no longer remembered: they count as purged. */
  #floor = 0;
  readonly #stats: PurgeStats = {
    purges: {
      "method:admin": 0,
      "method:fleet": 0,
      "key:admin": 0,
      "key:fleet": 0,
      "tag:admin": 0,
      "tag:fleet": 0,
    },
    dropped: 0,
  };

  /** This proxy's latest purge number: a flight notes it when it starts. */
  get mark(): number {
    return this.#seq;
  }

  /** The highest fleet purge number known: answers stored in Redis carry the one their flight started with. */
  get fleetMark(): number {
    return this.#fleetSeq;
  }

  /** A snapshot of the counters. */
  get stats(): PurgeStats {
    return { purges: { ...this.#stats.purges }, dropped: this.#stats.dropped };
  }

  /** The fleet purge number applied, if any. */
  fleet(fleetSeq: number): PurgeRecord | undefined {
    return this.#fleet.find((record) => record.fleetSeq === fleetSeq);
  }

  /**
   * Records a purge; returns it, and whether it is new here (a fleet purge already applied is not applied
   * twice: `fresh` is false and the earlier record is returned).
   */
  add(target: PurgeTarget, options: AddOptions): { record: PurgeRecord; fresh: boolean } {
    const { fleetSeq } = options;
    if (fleetSeq !== undefined) {
      const known = this.fleet(fleetSeq);
      if (known !== undefined) return { record: known, fresh: false };
    }
    const record: PurgeRecord = {
      kind: target.kind,
      value: target.value,
      seq: ++this.#seq,
      fleetSeq,
      at: options.at ?? Date.now(),
      origin: options.origin,
      dropped: 0,
      flights: 0,
      matches: purgeMatcher(target),
    };
    this.#records.push(record);
    if (this.#records.length > MAX_PURGE_RECORDS) this.#records.shift();
    if (fleetSeq !== undefined) {
      let at = this.#fleet.length;
      while (at > 0 && this.#fleet[at - 1].fleetSeq! > fleetSeq) at--;
      this.#fleet.splice(at, 0, record);
      if (fleetSeq > this.#fleetSeq) this.#fleetSeq = fleetSeq;
      if (this.#fleet.length > MAX_PURGE_RECORDS) {
        this.#floor = Math.max(this.#floor, this.#fleet.shift()!.fleetSeq!);
      }
    }
    this.#stats.purges[`${record.kind}:${record.origin}`]++;
    return { record, fresh: true };
  }

  /** Counts the cached answers a purge dropped and the flights it retired. */
  counted(record: PurgeRecord, dropped: number, flights: number): void {
    record.dropped += dropped;
    record.flights += flights;
    this.#stats.dropped += dropped;
  }

  /**
   * Tells the log that the fleet had purges up to `fleetSeq` that it no longer keeps (older than what Redis
   * remembers): answers stamped below count as purged.
   */
  forgotten(fleetSeq: number): void {
    if (fleetSeq > this.#floor) this.#floor = fleetSeq;
    if (fleetSeq > this.#fleetSeq) this.#fleetSeq = fleetSeq;
  }

  /** Whether a purge since local `mark` names the answer (a flight that started at `mark` ends now). */
  purgedSince(
    mark: number,
    method: string | undefined,
    key: string,
    tags: readonly string[] | undefined,
  ): boolean {
    if (mark >= this.#seq) return false;
    const records = this.#records;
    for (let i = records.length - 1; i >= 0 && records[i].seq > mark; i--) {
      if (records[i].matches(method, key, tags)) return true;
    }
    return records.length === 0 || records[0].seq > mark + 1; // forgotten purges since mark: assume so
  }

  /**
   * Whether a fleet purge after `stamp` (the fleet number the answer's flight started with) names the answer,
   * or the answer predates what this proxy remembers.
   */
  purgedInFleet(
    stamp: number,
    method: string | undefined,
    key: string,
    tags: readonly string[] | undefined,
  ): boolean {
    if (stamp < this.#floor) return true;
    if (stamp >= this.#fleetSeq) return false;
    const fleet = this.#fleet;
    for (let i = fleet.length - 1; i >= 0 && fleet[i].fleetSeq! > stamp; i--) {
      if (fleet[i].matches(method, key, tags)) return true;
    }
    return false;
  }

  /** Up to `n` purges, newest first. */
  recent(n: number): readonly PurgeRecord[] {
    return this.#records.slice(-n).reverse();
  }
}
