/**
 * Passive health: outlier ejection, as Envoy's outlier detection does it. An address that refuses a
 * connection is ejected at once (a gRPC client's subchannel goes to TRANSIENT_FAILURE on the first failed
 * connection too: nothing listens there); one that answers UNAVAILABLE `consecutiveFailures` times in a row
 * (Envoy's consecutive_5xx, 5) is ejected as well. An ejection lasts `baseEjectionMs` times the number of
 * times the address was ejected (Envoy's base_ejection_time, 30 s, growing linearly), capped at
 * `maxEjectionMs` (Envoy's max_ejection_time, 300 s); the count drops by one for every `baseEjectionMs`
 * the address spends un-ejected. Then the address is tried again.
 *
 * At most `maxEjectedPercent` of the addresses are ejected at once (50% by default, as the issue asks;
 * Envoy's default is 10%): a bad deploy that fails every replica cannot empty the set, and with one
 * address nothing is ever ejected, since there is nowhere else to go.
 *
 * @module
 */

/** Default failures in a row that eject an address: 5. */
export const DEFAULT_CONSECUTIVE_FAILURES = 5;
/** Default first ejection: 30 s. */
export const DEFAULT_BASE_EJECTION_MS = 30_000;
/** Longest ejection: 300 s (or the base ejection, if longer). */
export const MAX_EJECTION_MS = 300_000;
/** Default most addresses ejected at once: half. */
export const DEFAULT_MAX_EJECTED_PERCENT = 50;

/** Options for {@linkcode OutlierDetector}. */
export interface OutlierOptions {
  /** UNAVAILABLE answers in a row that eject an address; 0 = only refused connections eject. @default {5} */
  consecutiveFailures?: number;
  /** First ejection, in ms; later ones are this times the ejection count. @default {30_000} */
  baseEjectionMs?: number;
  /** Most addresses ejected at once, in percent of the set (rounded down). @default {50} */
  maxEjectedPercent?: number;
  /** Clock in ms. @default {performance.now} */
  now?: () => number;
}

/** What outlier detection keeps per address. */
export interface OutlierState {
  /** UNAVAILABLE answers in a row. */
  failures: number;
  /** Times ejected (decays while healthy). */
  ejections: number;
  /** Until when it is ejected (clock ms); 0 = not ejected. */
  ejectedUntil: number;
  /** When its last ejection ended or was set to end. */
  lastEjectionEnd: number;
}

/** A fresh per-address state. */
export function outlierState(): OutlierState {
  return { failures: 0, ejections: 0, ejectedUntil: 0, lastEjectionEnd: 0 };
}

/** Decides when an address is ejected and for how long. */
export class OutlierDetector {
  readonly #consecutive: number;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #maxPercent: number;
  readonly now: () => number;
  /** Ejections since start. */
  ejectionsTotal = 0;

  constructor(options: OutlierOptions = {}) {
    this.#consecutive = options.consecutiveFailures ?? DEFAULT_CONSECUTIVE_FAILURES;
    this.#baseMs = options.baseEjectionMs ?? DEFAULT_BASE_EJECTION_MS;
    this.#maxMs = Math.max(MAX_EJECTION_MS, this.#baseMs);
    this.#maxPercent = options.maxEjectedPercent ?? DEFAULT_MAX_EJECTED_PERCENT;
    this.now = options.now ?? (() => performance.now());
  }

  /** Whether `state`'s address is ejected at `now`. */
  ejected(state: OutlierState, now = this.now()): boolean {
    return state.ejectedUntil > now;
  }

  /** A call answered (anything but UNAVAILABLE): the run of failures ends. */
  success(state: OutlierState): void {
    state.failures = 0;
  }

  /**
   * A call answered UNAVAILABLE; `all` is every address's state (for the cap). True when this ejected it.
   */
  failure(state: OutlierState, all: Iterable<OutlierState>, size: number): boolean {
    state.failures++;
    if (this.#consecutive === 0 || state.failures < this.#consecutive) return false;
    return this.eject(state, all, size);
  }

  /** Ejects an address (a refused connection, or too many failures), unless the cap is reached. */
  eject(state: OutlierState, all: Iterable<OutlierState>, size: number): boolean {
    const now = this.now();
    if (this.ejected(state, now)) return false;
    let ejected = 0;
    for (const other of all) if (this.ejected(other, now)) ejected++;
    if (ejected + 1 > Math.floor((size * this.#maxPercent) / 100)) return false;
    const healthyFor = now - state.lastEjectionEnd;
    if (state.ejections > 0 && healthyFor > 0) {
      state.ejections = Math.max(0, state.ejections - Math.floor(healthyFor / this.#baseMs));
    }
    state.ejections++;
    state.failures = 0;
    const ms = Math.min(this.#baseMs * state.ejections, this.#maxMs);
    state.ejectedUntil = state.lastEjectionEnd = now + ms;
    this.ejectionsTotal++;
    return true;
  }
}
