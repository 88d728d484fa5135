/**
 * The waiting side of the shared tier: local leaders whose lookup found another proxy's lock wait for its
 * answer. The lock holder publishes a message on the key's channel: the collapse key, a kind byte, and
 * (kind {@linkcode ANSWER}) the answer itself. A waiter is answered by that message; a poll (every
 * `pollMs`) covers a lost message and a lock holder that died (its lock then expires); a waiter that has
 * waited the lock's whole life, or finds the lock gone with no answer, is told to call the backend itself.
 *
 * @module
 */

import type { Flight } from "../core/collapser.ts";
import { log } from "../util/log.ts";
import type { ResponseEvent } from "../wire/response.ts";
import type { RedisLink, TierKeys } from "./link.ts";
import { decodeAnswer } from "./shared_answer.ts";
import type { TierHealth } from "./tier_health.ts";

/** The message kind byte after the key: an answer follows. */
export const ANSWER = 1;
/** The message kind byte after the key: the waiters must call the backend themselves. */
export const CALL_IT_YOURSELF = 0;
/** Collapse keys are SHA-256 in hex. */
const KEY_LENGTH = 64;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How one wait ended. */
export type Outcome =
  | { kind: "answer"; events: ResponseEvent[]; stamp: number }
  | { kind: "notice" | "free" | "timeout" | "down" }
  | { kind: "polled"; value: Uint8Array; ttlMs: number };

/** One local leader waiting on the tier. */
export interface Waiter {
  readonly flight: Flight<ResponseEvent>;
  /** A message that arrived before the lookup's reply did. */
  early?: Uint8Array;
  /** Set once the lookup said "wait". */
  resume?: (outcome: Outcome) => void;
}

/** The message that tells waiters on `key` what follows: an answer, or to call the backend themselves. */
export function notice(key: string, kind: typeof ANSWER | typeof CALL_IT_YOURSELF): Uint8Array {
  const message = new Uint8Array(KEY_LENGTH + 1);
  encoder.encodeInto(key, message);
  message[KEY_LENGTH] = kind;
  return message;
}

/** Options for {@linkcode Waiters}. */
export interface WaitersOptions {
  readonly link: RedisLink;
  readonly health: TierHealth;
  /** How often a waiter checks Redis in case a message was lost, in ms. */
  readonly pollMs: number;
  /** Life of a lock: the longest a waiter waits, in ms. */
  readonly lockMs: number;
  /** Counted per outcome. */
  readonly counts: Record<Outcome["kind"], number>;
}

/** The local leaders waiting on other proxies' locks, by collapse key. */
export class Waiters {
  readonly #waiters = new Map<string, Waiter>();
  readonly #options: WaitersOptions;

  constructor(options: WaitersOptions) {
    this.#options = options;
  }

  /**
   * Registers `flight` as the waiter on `key` — before the lookup is sent, since the answer may be
   * published before the reply arrives. `forget` unregisters it (idempotent).
   */
  register(key: string, flight: Flight<ResponseEvent>): { waiter: Waiter; forget: () => void } {
    const waiter: Waiter = { flight };
    const previous = this.#waiters.get(key);
    this.#waiters.set(key, waiter);
    const forget = () => {
      if (this.#waiters.get(key) === waiter) {
        if (previous !== undefined && !previous.flight.done) this.#waiters.set(key, previous);
        else this.#waiters.delete(key);
      }
    };
    return { waiter, forget };
  }

  /**
   * Waits for the lock holder's answer: a message, a poll, or the lock's whole life at most; `done` is told
   * once how it ended (after `forget`).
   */
  wait(
    waiter: Waiter,
    keys: TierKeys,
    freshForMs: number,
    forget: () => void,
    done: (outcome: Outcome) => void,
  ): void {
    const { link, health, pollMs, lockMs, counts } = this.#options;
    let poll: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const deadline = setTimeout(() => resume({ kind: "timeout" }), lockMs);
    const resume = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(poll);
      forget();
      counts[outcome.kind]++;
      done(outcome);
    };
    waiter.resume = resume;
    const schedule = () => {
      poll = setTimeout(() => {
        health.timed(link.look(keys, freshForMs)).then((found) => {
          health.answered(keys.shard);
          if (settled) return;
          if (found.kind === "hit") resume({ kind: "polled", value: found.value, ttlMs: found.ttlMs });
          else if (found.kind === "free") resume({ kind: "free" });
          else schedule();
        }, (err) => {
          health.failed(err, keys.shard);
          if (!settled) resume({ kind: "down" });
        });
      }, pollMs);
    };
    if (waiter.early !== undefined) return this.#deliver(waiter, waiter.early);
    schedule();
  }

  /** A message on one of the fleet's channels. */
  onMessage(message: Uint8Array): void {
    if (message.byteLength <= KEY_LENGTH) return;
    const key = decoder.decode(message.subarray(0, KEY_LENGTH));
    const waiter = this.#waiters.get(key);
    if (waiter === undefined) return;
    if (waiter.resume === undefined) waiter.early = message;
    else this.#deliver(waiter, message);
  }

  /** Releases every waiter (the tier went down or closes): each calls the backend itself. */
  releaseAll(): void {
    for (const waiter of [...this.#waiters.values()]) waiter.resume?.({ kind: "down" });
  }

  #deliver(waiter: Waiter, message: Uint8Array): void {
    if (message[KEY_LENGTH] !== ANSWER) return waiter.resume!({ kind: "notice" });
    let answer: ReturnType<typeof decodeAnswer>;
    try {
      answer = decodeAnswer(message.subarray(KEY_LENGTH + 1));
    } catch (err) {
      log.warn("redis: a published answer could not be read ({error}); calling the backend", {
        error: String(err),
      });
      return waiter.resume!({ kind: "notice" });
    }
    waiter.resume!({ kind: "answer", events: answer.events, stamp: answer.stamp });
  }
}
