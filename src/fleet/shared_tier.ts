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
 * runs the same key configuration. Keys of one collapse key share a Redis Cluster hash slot (`{key}`).
 *
 * @module
 */

import type { FinishOptions, Flight } from "../core/collapser.ts";
import { Status } from "../wire/grpc_wire.ts";
import { log } from "../util/log.ts";
import { decodeAnswer, encodeAnswer } from "./shared_answer.ts";
import { type ResponseEvent, statusEvent } from "../wire/response.ts";
import { type LeadRequest, retention, STALE_IF } from "../policy/retention.ts";

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
}

/** Counters of the tier, for metrics. */
export interface TierStats {
  up: boolean;
  /** Local leaders' lookups, by result (`skipped`: the tier was down, `error`: the lookup failed). */
  lookups: Record<"hit" | "lock" | "wait" | "skipped" | "error", number>;
  /** How waits ended. */
  waits: Record<"answer" | "notice" | "polled" | "free" | "timeout" | "down", number>;
  /** Lock holders' settles, by result. */
  settles: Record<"stored" | "published" | "unheard" | "lost_lock" | "local_only" | "error", number>;
  /** Times the tier went down. */
  outages: number;
}

/** The message kind byte after the key: an answer follows, or the waiters must call the backend. */
const ANSWER = 1;
const CALL_IT_YOURSELF = 0;
/** Round trips that must time out in a row before the tier goes down. */
const TIMEOUTS_FOR_OUTAGE = 3;

/** A round trip that took longer than the tier's timeout. */
class TierTimeout extends Error {
  constructor(ms: number) {
    super(`no answer from Redis within ${ms} ms`);
    this.name = "TierTimeout";
  }
}

/** The key the probe takes and releases a lock on (no collapse key is all zeros). */
const PROBE_KEY = "0".repeat(64);
/** How a lock handed back unused is kept: not at all. */
const NOT_KEPT: FinishOptions = Object.freeze({ cache: false });

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Collapse keys are SHA-256 in hex. */
const KEY_LENGTH = 64;

interface Waiter {
  readonly flight: Flight<ResponseEvent>;
  /** A message that arrived before the lookup's reply did. */
  early?: Uint8Array;
  /** Set once the lookup said "wait". */
  resume?: (outcome: Outcome) => void;
}

type Outcome =
  | { kind: "answer"; events: ResponseEvent[] }
  | { kind: "notice" | "free" | "timeout" | "down" }
  | { kind: "polled"; value: Uint8Array; ttlMs: number };

type Local = (flight: Flight<ResponseEvent>) => void;

/** The shared tier in front of the backend: see the module doc. */
export class SharedTier {
  readonly #link: RedisLink;
  readonly #prefix: string;
  /** The prefix and the scope: where this fleet's keys and channel live. */
  readonly #namespace: string;
  readonly #channel: string;
  /** Locks held now (their flights are calling the backend): token → keys, to release them at close. */
  readonly #held = new Map<string, { keys: TierKeys; key: string }>();
  readonly #maxBytes: number;
  readonly #timeoutMs: number;
  readonly #lockMs: number;
  readonly #pollMs: number;
  readonly #probeMs: number;
  readonly #waiters = new Map<string, Waiter>();
  readonly #tokenPrefix = `${crypto.randomUUID()}:`;
  #tokens = 0;
  #up = false;
  #closed = false;
  #probe: ReturnType<typeof setTimeout> | undefined;
  /** Round trips timed out in a row. */
  #timeouts = 0;
  /** Whether a warning has been logged for the current outage (one per outage, not one per call). */
  #warned = false;
  /** While start() waits: ends the wait. */
  #started: (() => void) | undefined;
  readonly #stats: TierStats = {
    up: false,
    lookups: { hit: 0, lock: 0, wait: 0, skipped: 0, error: 0 },
    waits: { answer: 0, notice: 0, polled: 0, free: 0, timeout: 0, down: 0 },
    settles: { stored: 0, published: 0, unheard: 0, lost_lock: 0, local_only: 0, error: 0 },
    outages: 0,
  };

  constructor(link: RedisLink, options: SharedTierOptions = {}) {
    this.#link = link;
    this.#prefix = options.prefix ?? "collapser:";
    this.#namespace = options.scope ? `${this.#prefix}${options.scope}:` : this.#prefix;
    this.#channel = `${this.#namespace}answers`;
    this.#maxBytes = options.maxBytes ?? 256 * 1024;
    this.#timeoutMs = options.timeoutMs ?? 250;
    this.#lockMs = options.lockMs ?? 5_000;
    this.#pollMs = options.pollMs ?? 250;
    this.#probeMs = options.probeMs ?? 1_000;
    link.onConnection((state, reason) => {
      if (state === "down") this.#down(reason);
      else if (!this.#up) this.#probeNow();
    });
  }

  /**
   * Subscribes and probes once. Never rejects: a Redis that is not there yet leaves the tier down (one
   * warning), and the probe brings it up when Redis comes.
   */
  async start(): Promise<void> {
    // Not awaited: the subscription waits for a connection, and the link re-subscribes after reconnects.
    // A message missed meanwhile is covered by the waiters' poll.
    this.#link.subscribe(this.#channel, (message) => this.#onMessage(message)).catch((err) =>
      log.debug("redis: subscribe failed: {error}", { error: String(err) })
    );
    // Up, or the first failure reported with its reason (refused, WRONGPASS, ...), or a second at most.
    const settled = Promise.withResolvers<void>();
    this.#started = settled.resolve;
    const timer = setTimeout(settled.resolve, 1_000);
    this.#probeOnce();
    await settled.promise;
    clearTimeout(timer);
    this.#started = undefined;
    if (!this.#up) this.#down("no answer from Redis at start-up");
  }

  /** The namespace of the tier's keys and channel. */
  get prefix(): string {
    return this.#prefix;
  }

  /** Whether the tier is in use now. */
  get up(): boolean {
    return this.#up;
  }

  /** A snapshot of the counters. */
  get stats(): TierStats {
    const s = this.#stats;
    return {
      up: this.#up,
      lookups: { ...s.lookups },
      waits: { ...s.waits },
      settles: { ...s.settles },
      outages: s.outages,
    };
  }

  /**
   * Produces the answer of a local leader's flight through the tier, or with `local` (the backend call)
   * when the tier is down, the lock is ours, or waiting did not bring an answer.
   */
  lead(flight: Flight<ResponseEvent>, request: LeadRequest, local: Local): void {
    if (!this.#up) {
      this.#stats.lookups.skipped++;
      return local(flight);
    }
    flight.tag = request.method;
    const key = request.key;
    const keys = this.#keys(key);
    const token = this.#tokenPrefix + this.#tokens++;
    const waiter: Waiter = { flight };
    // Registered before the lookup is sent: the answer may be published before the reply arrives.
    const previous = this.#waiters.get(key);
    this.#waiters.set(key, waiter);
    const forget = () => {
      if (this.#waiters.get(key) === waiter) {
        if (previous !== undefined && !previous.flight.done) this.#waiters.set(key, previous);
        else this.#waiters.delete(key);
      }
    };
    const freshForMs = this.#freshFor(flight, request);
    const asked = this.#link.acquire(keys, token, this.#lockMs, freshForMs);
    this.#timed(asked).then((found) => {
      this.#answered();
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
      this.#stats.lookups.wait++;
      this.#wait(waiter, keys, request, freshForMs, local, forget);
    }, (err) => {
      forget();
      this.#stats.lookups.error++;
      this.#failed(err);
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
    this.#closed = true;
    clearTimeout(this.#probe);
    this.#releaseWaiters("down");
    const held = [...this.#held.entries()];
    this.#held.clear();
    await Promise.allSettled(
      held.map(([token, { keys, key }]) => this.#timed(this.#handBack(keys, token, key))),
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
      this.#timed(this.#link.extend(keys, token, this.#lockMs)).catch(() => {});
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
    return flight.refresh ? request.policy.ttlMs / 2 : 0;
  }

  #keys(key: string): TierKeys {
    const base = `${this.#namespace}{${key}}:`;
    return { answer: `${base}a`, lock: `${base}l`, waiters: `${base}w` };
  }

  /** Waits for the lock holder's answer: a message, a poll, or the lock's whole life at most. */
  #wait(
    waiter: Waiter,
    keys: TierKeys,
    request: LeadRequest,
    freshForMs: number,
    local: Local,
    forget: () => void,
  ): void {
    const { flight } = waiter;
    let poll: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const deadline = setTimeout(() => resume({ kind: "timeout" }), this.#lockMs);
    const resume = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(poll);
      forget();
      this.#stats.waits[outcome.kind]++;
      if (outcome.kind === "answer") return this.#serveEvents(flight, request, outcome.events);
      if (outcome.kind === "polled") {
        return this.#serveStored(flight, request, outcome.value, outcome.ttlMs, local);
      }
      this.#local(flight, local);
    };
    waiter.resume = resume;
    const schedule = () => {
      poll = setTimeout(() => {
        this.#timed(this.#link.look(keys, freshForMs)).then((found) => {
          this.#answered();
          if (settled) return;
          if (found.kind === "hit") resume({ kind: "polled", value: found.value, ttlMs: found.ttlMs });
          else if (found.kind === "free") resume({ kind: "free" });
          else schedule();
        }, (err) => {
          this.#failed(err);
          if (!settled) resume({ kind: "down" });
        });
      }, this.#pollMs);
    };
    if (waiter.early !== undefined) return this.#deliver(waiter, waiter.early);
    schedule();
  }

  #onMessage(message: Uint8Array): void {
    if (message.byteLength <= KEY_LENGTH) return;
    const key = decoder.decode(message.subarray(0, KEY_LENGTH));
    const waiter = this.#waiters.get(key);
    if (waiter === undefined) return;
    if (waiter.resume === undefined) waiter.early = message;
    else this.#deliver(waiter, message);
  }

  #deliver(waiter: Waiter, message: Uint8Array): void {
    if (message[KEY_LENGTH] !== ANSWER) return waiter.resume!({ kind: "notice" });
    let events: ResponseEvent[];
    try {
      events = decodeAnswer(message.subarray(KEY_LENGTH + 1)).events;
    } catch (err) {
      log.warn("redis: a published answer could not be read ({error}); calling the backend", {
        error: String(err),
      });
      return waiter.resume!({ kind: "notice" });
    }
    waiter.resume!({ kind: "answer", events });
  }

  /** Answers a flight with an answer from Redis, kept locally for at most what is left of its life. */
  #serveStored(
    flight: Flight<ResponseEvent>,
    request: LeadRequest,
    value: Uint8Array,
    ttlMs: number,
    local: Local,
  ): void {
    let events: ResponseEvent[], tookMs: number;
    try {
      ({ events, tookMs } = decodeAnswer(value));
    } catch (err) {
      log.warn("redis: a stored answer could not be read ({error}); calling the backend", {
        error: String(err),
      });
      return this.#local(flight, local);
    }
    const ok = request.policy.keepOk;
    const kept: FinishOptions = ttlMs > 0
      // The backend call's own duration, not this round trip's: refresh-ahead starts that long before expiry.
      ? { cache: true, ttlMs: Math.min(ttlMs, ok.ttlMs ?? ttlMs), graceMs: ok.graceMs, tookMs }
      : { cache: false };
    for (const event of events) flight.emit(event);
    flight.finish(kept);
  }

  /** Answers a flight with an answer another proxy published, kept as this proxy's policy says. */
  #serveEvents(flight: Flight<ResponseEvent>, request: LeadRequest, events: ResponseEvent[]): void {
    for (const event of events) flight.emit(event);
    const status = events[events.length - 1];
    flight.finish(retention(request.policy, status.type === "status" ? status.code : Status.UNKNOWN));
  }

  /** Calls the backend for a flight (later than join() would have: errors are the flight's to report). */
  #local(flight: Flight<ResponseEvent>, local: Local): void {
    if (flight.done) return;
    try {
      local(flight);
    } catch (err) {
      flight.emit(statusEvent(Status.INTERNAL, `cannot call the backend: ${err}`));
      flight.finish({ cache: false });
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
    const encoded = events === undefined || failed ? undefined : encodeAnswer(events, tookMs);
    const shareable = encoded !== undefined && encoded.byteLength <= this.#maxBytes;
    const answer = shareable ? encoded : EMPTY;
    // Only OK answers are stored (for the TTL they are kept here); errors only reach current waiters.
    const ttlMs = shareable && kept.cache && last?.type === "status" && last.code === Status.OK
      ? kept.ttlMs ?? request.policy.ttlMs
      : 0;
    const notice = this.#notice(request.key, shareable ? ANSWER : CALL_IT_YOURSELF);
    // Tried even while the tier is down here: other proxies may be waiting on this lock, and a Redis that
    // is really gone fails this at once.
    this.#timed(this.#link.settle(keys, token, answer, ttlMs, this.#channel, notice)).then((done) => {
      this.#answered();
      const s = this.#stats.settles;
      if (done === "lost") s.lost_lock++;
      else if (!shareable) s.local_only++;
      else if (ttlMs > 0) s.stored++;
      else if (done === "published") s.published++;
      else s.unheard++;
    }, (err) => {
      this.#stats.settles.error++;
      this.#failed(err);
    });
  }

  /** Releases a lock unused: nothing stored, and waiters (if any) told to call the backend themselves. */
  #handBack(keys: TierKeys, token: string, key: string): Promise<"released" | "published" | "lost"> {
    return this.#link.settle(keys, token, EMPTY, 0, this.#channel, this.#notice(key, CALL_IT_YOURSELF));
  }

  /** The message that tells waiters on `key` what follows: an answer, or to call the backend themselves. */
  #notice(key: string, kind: number): Uint8Array {
    const notice = new Uint8Array(KEY_LENGTH + 1);
    encoder.encodeInto(key, notice);
    notice[KEY_LENGTH] = kind;
    return notice;
  }

  /** A round trip came back in time. */
  #answered(): void {
    this.#timeouts = 0;
  }

  /**
   * A round trip failed. An error (refused, offline, WRONGPASS) puts the tier down at once; a timeout only
   * when several in a row time out, since one late reply may be this process's own event loop running
   * behind under load rather than Redis being slow.
   */
  #failed(err: unknown): void {
    if (err instanceof TierTimeout && ++this.#timeouts < TIMEOUTS_FOR_OUTAGE) return;
    this.#down(String(err));
  }

  /**
   * A Redis round trip, bounded by the timeout. When the timer fires the rejection waits one more turn of
   * the event loop: a reply that arrived while this process was busy is read first.
   */
  #timed<T>(promise: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout>;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timer = setTimeout(() => reject(new TierTimeout(this.#timeoutMs)), 0);
      }, this.#timeoutMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /** The tier goes down: one warning per outage; waiters call the backend; a probe brings it back. */
  #down(reason: string): void {
    if (this.#closed) return;
    if (this.#up || !this.#warned) {
      this.#stats.outages++;
      this.#warned = true;
      log.warn("redis unavailable ({reason}): collapsing on this proxy only until it answers again", {
        reason,
      });
    }
    this.#up = false;
    this.#started?.();
    this.#releaseWaiters("down");
    this.#scheduleProbe();
  }

  #releaseWaiters(kind: "down"): void {
    for (const waiter of [...this.#waiters.values()]) waiter.resume?.({ kind });
  }

  #scheduleProbe(): void {
    if (this.#closed || this.#probe !== undefined) return;
    this.#probe = setTimeout(() => {
      this.#probe = undefined;
      this.#probeNow();
    }, this.#probeMs);
  }

  #probeNow(): void {
    this.#probeOnce().then(() => {
      if (!this.#up) this.#scheduleProbe();
    });
  }

  async #probeOnce(): Promise<void> {
    if (this.#closed) return;
    try {
      // The real path, not PING: a read-only replica, a full Redis or an ACL without EVALSHA answer PING.
      const keys = this.#keys(PROBE_KEY);
      const token = this.#tokenPrefix + this.#tokens++;
      await this.#timed(this.#link.acquire(keys, token, 1_000, 0));
      await this.#timed(
        this.#handBack(keys, token, PROBE_KEY),
      );
    } catch {
      return;
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
