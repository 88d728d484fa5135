/**
 * Shadow mode's bookkeeping: every call is passed through as its own backend call, and this ledger says
 * what the call would have been had the proxy collapsed — a leader, a follower of a flight in progress, or
 * a cache hit — so an operator can measure the saving on live traffic before trusting the proxy with it.
 * It keeps keys only, never answers, and is bounded like the cache.
 *
 * @module
 */

import type { Role } from "./collapser.ts";
import { type Retention, TtlCache } from "./ttl_cache.ts";

/** What a call would have been: `leader` (a backend call), `follower` or `cache` (backend calls saved). */
export type WouldBe = Role;

/** A shadowed call's place in the ledger; `finished` once its own backend call has ended. */
export interface ShadowEntry {
  readonly wouldBe: WouldBe;
  /** The call's backend call ended; `kept`: how long its answer would have been cached, if at all. */
  finished(kept: Retention | undefined): void;
}

/**
 * Key-only model of the collapser. A call whose key has a would-be flight open (a would-be leader whose own
 * backend call has not ended) would have followed it; one whose key's would-be answer is still within its
 * TTL would have been a cache hit; any other call would have led. Refresh-ahead is not modelled: a hot key
 * counts one more leader per TTL than the collapser would make.
 */
export class ShadowLedger {
  readonly #flights = new Set<string>();
  readonly #cached: TtlCache<true>;

  /** @param options as the cache's: bounds and clock */
  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#cached = new TtlCache({ maxEntries: options.maxEntries, now: options.now });
  }

  /** Records a call for `key` and says what it would have been. */
  observe(key: string): ShadowEntry {
    if (this.#cached.get(key) !== undefined) return CACHE;
    if (this.#flights.has(key)) return FOLLOWER;
    this.#flights.add(key);
    return {
      wouldBe: "leader",
      finished: (kept) => {
        this.#flights.delete(key);
        if (kept !== undefined && kept.ttlMs > 0) this.#cached.set(key, true, 0, { ttlMs: kept.ttlMs });
      },
    };
  }

  /** Would-be flights open now (for tests). */
  get flights(): number {
    return this.#flights.size;
  }
}

const noop = (): void => {};
const CACHE: ShadowEntry = Object.freeze({ wouldBe: "cache" as const, finished: noop });
const FOLLOWER: ShadowEntry = Object.freeze({ wouldBe: "follower" as const, finished: noop });
