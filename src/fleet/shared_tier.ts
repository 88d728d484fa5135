/**
 * The shared tier: a fleet of proxies that collapses as one, through Redis.
 *
 * Local collapsing stays in front. Only a local leader — the one flight per key on this proxy — asks the
 * tier, in one round trip (one Lua script): an answer another proxy stored is served from Redis; otherwise
 * the first proxy to ask takes the key's lock (`SET NX PX` with a token of its own) and calls the backend,
 * and the others wait for its answer. When its call ends the lock holder, in one more round trip and only if
 * the lock is still its own, stores an OK answer for its TTL, releases the lock, and — when someone waits —
 * publishes the answer on the tier's channel. A waiter is answered by that message; a poll (every
 * `pollMs`) covers a lost message and a lock holder that died (its lock, renewed while its call runs, then
 * expires); a waiter that has waited the lock's whole life, or finds the lock gone with no answer, calls the
 * backend itself. An answer that cannot be shared (a stream — announced as soon as it shows, a stale
 * answer, an availability failure, over `maxBytes`) is announced as such, and its waiters call the backend
 * themselves. A proxy that closes hands back the locks it holds.
 *
 * Redis failing never fails a call: a round trip that errs, or three in a row that take longer than
 * `timeoutMs`, put the tier down — one warning, every waiter released to call the backend itself, every new
 * flight local — and a probe brings it back once Redis answers in time again. (A single late round trip
 * falls back for its own call only: under load it is as often this process's event loop as Redis.)
 *
 * The keys are the collapse keys (SHA-256 of everything the answer may depend on, credentials and the mTLS
 * identity included), so isolation holds across the fleet as it does within one proxy, provided every proxy
 * runs the same key configuration. Where they live in Redis is the link's to say (keysOf): in a Redis
 * Cluster every key of one collapse key, and its channel, share a hash slot, and a failure of one master
 * sends only its keys to the backend (tier_health.ts).
 *
 * @module
 */

import type { FinishOptions, Flight } from "../core/collapser.ts";
import { Status } from "../wire/grpc_wire.ts";
import { log } from "../util/log.ts";
import { encodeAnswer } from "./shared_answer.ts";
import { type FleetAnswerRules, serveEvents, serveStored } from "./fleet_answers.ts";
import type { RedisLink, TierKeys } from "./link.ts";
import { TierHealth } from "./tier_health.ts";
import { ANSWER, CALL_IT_YOURSELF, notice, Waiters } from "./waiters.ts";
import { type ResponseEvent, statusEvent } from "../wire/response.ts";
import { type LeadRequest, STALE_IF } from "../policy/retention.ts";
import type { Freshness } from "../policy/freshness.ts";
import type { PurgeLog, PurgeTarget } from "../policy/purges.ts";
import { type FleetPurge, FleetPurges } from "./fleet_purges.ts";

/** Options for {@linkcode SharedTier}. */
export interface SharedTierOptions {
  /** Namespace of every key and of the channel. @default {"collapser:"} */
  prefix?: string;
  /**
   * What else separates this fleet from others on the same Redis: the database number (pub/sub ignores
   * it) and the backend target, so that fleets in front of different services never share. @default {""}
   */
  scope?: string;
  /** Answers larger than this stay local. @default {256 KiB} */
  maxBytes?: number;
  /** Bound on one Redis round trip; three in a row past it put the tier down. @default {250} */
  timeoutMs?: number;
  /** Life of a lock, and so the longest a proxy waits for another's answer. @default {5000} */
  lockMs?: number;
  /** How often a waiter checks Redis in case a message was lost. @default {250} */
  pollMs?: number;
  /** How often a down tier probes Redis. @default {1000} */
  probeMs?: number;
  /** How answers taken from Redis or another proxy are kept here. @default {the method's policy} */
  freshness?: Freshness;
  /** The purges answers from Redis are checked against (fleet_purges.ts); without it, none are. */
  purges?: PurgeLog;
  /** Applies a purge another proxy of the fleet made. */
  onPurge?: (target: PurgeTarget, fleetSeq: number, at: number) => void;
  /** How often the fleet's purge number is checked. @default {1000} */
  purgeSyncMs?: number;
}

/** Counters of the tier, for metrics. */
export interface TierStats {
  up: boolean;
  /**
   * Local leaders' lookups, by result (`skipped`: the tier was down, `error`: the lookup failed, `bypass`: a
   * caller's `no-cache` found another proxy's lock and called the backend itself).
   */
  lookups: Record<"hit" | "lock" | "wait" | "skipped" | "error" | "bypass", number>;
  /** How waits ended. */
  waits: Record<"answer" | "notice" | "polled" | "free" | "timeout" | "down", number>;
  /** Lock holders' settles, by result. */
  settles: Record<"stored" | "published" | "unheard" | "lost_lock" | "local_only" | "error", number>;
  /** Times the tier went down. */
  outages: number;
  /** Redis Cluster: masters whose keys are local now (their shard failed), and times one failed. */
  shards: { down: string[]; outages: number };
}

/** The key the probe takes and releases a lock on (no collapse key is all zeros). */
const PROBE_KEY = "0".repeat(64);
/** How much life a stored answer must have for a bypass (or a retry past a purged one) to take it: none will. */
const REFUSE_STORED = Number.MAX_SAFE_INTEGER;
/** How a lock handed back unused is kept: not at all. */
const NOT_KEPT: FinishOptions = Object.freeze({ cache: false });

const EMPTY = new Uint8Array(0);

type Local = (flight: Flight<ResponseEvent>) => void;

/** The shared tier in front of the backend: see the module doc. */
export class SharedTier {
  readonly #link: RedisLink;
  readonly #prefix: string;
  /** The prefix and the scope: where this fleet's keys and channels live. */
  readonly #namespace: string;
  /** Locks held now (their flights are calling the backend): token → keys, to release them at close. */
  readonly #held = new Map<string, { keys: TierKeys; key: string }>();
  readonly #maxBytes: number;
  readonly #timeoutMs: number;
  readonly #lockMs: number;
  readonly #pollMs: number;
  readonly #probeMs: number;
  readonly #waiters: Waiters;
  readonly #tokenPrefix = `${crypto.randomUUID()}:`;
  #tokens = 0;
  readonly #health: TierHealth;
  /** What answers from the fleet are kept and checked by. */
  readonly #answers: FleetAnswerRules;
  readonly #purges: FleetPurges | undefined;
  readonly #stats: TierStats = {
    up: false,
    lookups: { hit: 0, lock: 0, wait: 0, skipped: 0, error: 0, bypass: 0 },
    waits: { answer: 0, notice: 0, polled: 0, free: 0, timeout: 0, down: 0 },
    settles: { stored: 0, published: 0, unheard: 0, lost_lock: 0, local_only: 0, error: 0 },
    outages: 0,
    shards: { down: [], outages: 0 },
  };

  constructor(link: RedisLink, options: SharedTierOptions = {}) {
    this.#link = link;
    this.#prefix = options.prefix ?? "collapser:";
    this.#namespace = options.scope ? `${this.#prefix}${options.scope}:` : this.#prefix;
    this.#maxBytes = options.maxBytes ?? 256 * 1024;
    this.#timeoutMs = options.timeoutMs ?? 250;
    this.#lockMs = options.lockMs ?? 5_000;
    this.#pollMs = options.pollMs ?? 250;
    this.#probeMs = options.probeMs ?? 1_000;
    this.#health = new TierHealth({
      timeoutMs: this.#timeoutMs,
      probeMs: this.#probeMs,
      probe: () => this.#probe(),
      onDown: () => this.#waiters.releaseAll(),
    });
    this.#waiters = new Waiters({
      link,
      health: this.#health,
      pollMs: this.#pollMs,
      lockMs: this.#lockMs,
      counts: this.#stats.waits,
    });
    const purges = options.purges;
    this.#answers = { freshness: options.freshness, purges };
    const onPurge = options.onPurge;
    this.#purges = purges && onPurge && new FleetPurges({
      link,
      health: this.#health,
      namespace: this.#namespace,
      id: this.#tokenPrefix,
      apply: onPurge,
      forgotten: (fleetSeq) => purges.forgotten(fleetSeq),
      known: () => purges.fleetMark,
      syncMs: options.purgeSyncMs,
    });
    link.onConnection((state, reason) => {
      if (state === "down") this.#health.down(reason);
      else this.#health.reconnected();
    });
  }

  /**
   * Subscribes and probes once. Never rejects: a Redis that is not there yet leaves the tier down (one
   * warning), and the probe brings it up when Redis comes.
   */
  async start(): Promise<void> {
    // Not awaited: the subscription waits for a connection, and the link re-subscribes after reconnects.
    // A message missed meanwhile is covered by the waiters' poll.
    this.#link.subscribe(this.#namespace, (message) => this.#waiters.onMessage(message)).catch((err) =>
      log.debug("redis: subscribe failed: {error}", { error: String(err) })
    );
    await this.#health.start();
    this.#purges?.start();
  }

  /**
   * Makes a purge fleet-wide: recorded and published through Redis (one round trip). Rejects when Redis is
   * down or does not answer in time; the caller applies it here once it resolves.
   */
  purge(target: PurgeTarget, at: number): Promise<FleetPurge> {
    if (this.#purges === undefined) return Promise.reject(new Error("fleet purges are not set up"));
    if (!this.#health.up) return Promise.reject(new Error("the shared tier (Redis) is down"));
    return this.#purges.publish(target, at);
  }

  /** The namespace of the tier's keys and channel. */
  get prefix(): string {
    return this.#prefix;
  }

  /** Whether the tier is in use now. */
  get up(): boolean {
    return this.#health.up;
  }

  /** A snapshot of the counters. */
  get stats(): TierStats {
    const s = this.#stats;
    return {
      up: this.#health.up,
      lookups: { ...s.lookups },
      waits: { ...s.waits },
      settles: { ...s.settles },
      outages: this.#health.outages,
      shards: this.#health.shards(this.#link.shards?.()),
    };
  }

  /**
   * Produces the answer of a local leader's flight through the tier, or with `local` (the backend call)
   * when the tier is down, the lock is ours, or waiting did not bring an answer.
   */
  lead(flight: Flight<ResponseEvent>, request: LeadRequest, local: Local): void {
    const key = request.key;
    const keys = this.#keys(key);
    if (!this.#health.usable(keys.shard)) {
      this.#stats.lookups.skipped++;
      return local(flight);
    }
    flight.tag = request.method;
    const token = this.#tokenPrefix + this.#tokens++;
    // Registered before the lookup is sent: the answer may be published before the reply arrives.
    const { waiter, forget } = this.#waiters.register(key, flight);
    const freshForMs = this.#freshFor(flight, request);
    const asked = this.#link.acquire(keys, token, this.#lockMs, freshForMs);
    this.#health.timed(asked).then((found) => {
      this.#health.answered(keys.shard);
      if (found.kind === "hit") {
        forget();
        this.#stats.lookups.hit++;
        return this.#serveStored(flight, request, found.value, found.ttlMs, local);
      }
      if (found.kind === "lock") {
        forget();
        this.#stats.lookups.lock++;
        this.#hold(flight, keys, token, request);
        return this.#local(flight, local);
      }
      if (request.bypass) {
        // A fresh answer was asked for: not one another proxy's call, begun earlier, will bring.
        forget();
        this.#stats.lookups.bypass++;
        return this.#local(flight, local);
      }
      this.#stats.lookups.wait++;
      this.#waiters.wait(waiter, keys, freshForMs, forget, (outcome) => {
        if (outcome.kind === "answer") {
          // An answer whose call began before a purge that names it: this proxy calls the backend itself.
          const served = serveEvents(this.#answers, flight, request, outcome.events, outcome.stamp);
          return served === "purged" ? this.#local(flight, local) : undefined;
        }
        if (outcome.kind === "polled") {
          return this.#serveStored(flight, request, outcome.value, outcome.ttlMs, local);
        }
        this.#local(flight, local);
      });
    }, (err) => {
      forget();
      this.#stats.lookups.error++;
      this.#health.failed(err, keys.shard);
      this.#local(flight, local);
      // Given up on, the lookup may still have taken the lock: give it back at once rather than leave other
      // proxies waiting for an answer that will never be published (they call the backend themselves).
      asked.then((found) => {
        if (found.kind === "lock") this.#handBack(keys, token, key).catch(() => {});
      }, () => {});
    });
  }

  /**
   * Stops the probe, releases every waiter to call the backend itself, and hands back the locks this proxy
   * holds (waiters elsewhere call the backend themselves rather than wait for them to expire).
   */
  async close(): Promise<void> {
    this.#health.close();
    this.#purges?.close();
    this.#waiters.releaseAll();
    const held = [...this.#held.entries()];
    this.#held.clear();
    await Promise.allSettled(
      held.map(([token, { keys, key }]) => this.#health.timed(this.#handBack(keys, token, key))),
    );
    await this.#link.close().catch(() => {});
  }

  /**
   * The lock is ours: keep it alive while the backend call runs, hand it back when the flight turns out to
   * be a stream (nobody can share it: waiters elsewhere call the backend themselves at once), and pass the
   * answer on when the flight finishes.
   */
  #hold(flight: Flight<ResponseEvent>, keys: TierKeys, token: string, request: LeadRequest): void {
    const lockedAt = performance.now();
    this.#held.set(token, { keys, key: request.key });
    let released = false;
    const renew = setInterval(() => {
      this.#health.timed(this.#link.extend(keys, token, this.#lockMs)).catch(() => {});
    }, this.#lockMs / 2);
    const release = () => {
      released = true;
      clearInterval(renew);
      this.#held.delete(token);
    };
    flight.onUnshare = () => {
      if (released) return;
      release();
      this.#settle(keys, token, request, undefined, NOT_KEPT, 0);
    };
    flight.onFinish = (events, kept) => {
      if (released) return;
      release();
      this.#settle(keys, token, request, events, kept, performance.now() - lockedAt);
    };
  }

  /**
   * How much life a stored answer must have left to be taken: any, for a miss; for a refresh-ahead (its
   * local answer is in the last half of its life), more than half its TTL — one another proxy refreshed.
   */
  #freshFor(flight: Flight<ResponseEvent>, request: LeadRequest): number {
    if (request.bypass) return REFUSE_STORED;
    return flight.refresh ? (flight.refreshTtlMs ?? request.policy.ttlMs) / 2 : 0;
  }

  #keys(key: string): TierKeys {
    return this.#link.keysOf(this.#namespace, key);
  }

  /** Answers a flight with an answer from Redis, or asks again / calls the backend when it cannot be taken. */
  #serveStored(
    flight: Flight<ResponseEvent>,
    request: LeadRequest,
    value: Uint8Array,
    ttlMs: number,
    local: Local,
  ): void {
    const served = serveStored(this.#answers, flight, request, value, ttlMs);
    // Stored before a purge that names it: asked again, refusing stored answers, the lock (or a call of our
    // own) brings a fresh one, which replaces it in Redis.
    if (served === "purged") return this.lead(flight, { ...request, bypass: true }, local);
    if (served === "unreadable") this.#local(flight, local);
  }

  /** Calls the backend for a flight (later than join() would have: errors are the flight's to report). */
  #local(flight: Flight<ResponseEvent>, local: Local): void {
    if (flight.done) return;
    try {
      local(flight);
    } catch (err) {
      flight.finish(NOT_KEPT, statusEvent(Status.INTERNAL, `cannot call the backend: ${err}`));
    }
  }

  /** The lock holder's flight finished: pass its answer on, release the lock. */
  #settle(
    keys: TierKeys,
    token: string,
    request: LeadRequest,
    events: readonly ResponseEvent[] | undefined,
    kept: FinishOptions,
    tookMs: number,
  ): void {
    const last = events?.[events.length - 1];
    // An availability failure (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED — possibly this proxy's own
    // concurrency limit) is not passed on as an answer: each waiting proxy tries for itself, and may answer
    // with its own stale copy (stale-if-error).
    const failed = last?.type === "status" && STALE_IF.has(last.code);
    // Only OK answers are stored (for the TTL they are kept here); errors only reach current waiters.
    const keptMs = kept.cache && last?.type === "status" && last.code === Status.OK
      ? kept.ttlMs ?? request.policy.ttlMs
      : 0;
    // Stamped with the fleet's purge number its flight started with: a later purge can name it.
    const stamp = { stamp: request.fleetSince ?? 0, ageMs: kept.ageMs ?? 0, ttlMs: keptMs };
    const encoded = events === undefined || failed ? undefined : encodeAnswer(events, tookMs, stamp);
    const shareable = encoded !== undefined && encoded.byteLength <= this.#maxBytes;
    const answer = shareable ? encoded : EMPTY;
    const ttlMs = shareable ? keptMs : 0;
    const message = notice(request.key, shareable ? ANSWER : CALL_IT_YOURSELF);
    // Tried even while the tier is down here: other proxies may be waiting on this lock, and a Redis that
    // is really gone fails this at once.
    this.#health.timed(this.#link.settle(keys, token, answer, ttlMs, message)).then((done) => {
      this.#health.answered(keys.shard);
      const s = this.#stats.settles;
      if (done === "lost") s.lost_lock++;
      else if (!shareable) s.local_only++;
      else if (ttlMs > 0) s.stored++;
      else if (done === "published") s.published++;
      else s.unheard++;
    }, (err) => {
      this.#stats.settles.error++;
      this.#health.failed(err, keys.shard);
    });
  }

  /** Releases a lock unused: nothing stored, and waiters (if any) told to call the backend themselves. */
  #handBack(keys: TierKeys, token: string, key: string): Promise<"released" | "published" | "lost"> {
    return this.#link.settle(keys, token, EMPTY, 0, notice(key, CALL_IT_YOURSELF));
  }

  /**
   * One probe of Redis. It takes the real path, not PING: a read-only replica, a full Redis or an ACL without
   * EVALSHA answer PING.
   */
  async #probe(): Promise<void> {
    const keys = this.#keys(PROBE_KEY);
    const token = this.#tokenPrefix + this.#tokens++;
    await this.#health.timed(this.#link.acquire(keys, token, 1_000, 0));
    await this.#health.timed(this.#handBack(keys, token, PROBE_KEY));
  }
}
