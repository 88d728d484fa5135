/**
 * The retry budget: every retry the balancer makes, transparent or not, spends a token; every first
 * attempt earns `ratio` of one. Over any stretch of time retries are so at most `ratio` of the calls made
 * (20% by default), plus what was saved up before: at most `MAX_RETRY_TOKENS`, and `START_RETRY_TOKENS`
 * at start so that a quiet proxy can still retry a refused call. This is gRPC's retry throttling (a token
 * bucket, gRFC A6) with Envoy's retry budget's default share (budget_percent 20%): when a backend fails
 * wholesale, retries cannot multiply its load.
 *
 * @module
 */

/** Default share of calls that may be retried: 20%. */
export const DEFAULT_RETRY_BUDGET = 0.2;
/** Most tokens saved up: a burst of this many retries after a long healthy stretch. */
export const MAX_RETRY_TOKENS = 100;
/** Tokens at start. */
export const START_RETRY_TOKENS = 10;

/** A token bucket of retries. */
export class RetryBudget {
  readonly #ratio: number;
  #tokens: number;
  /** Retries refused for want of a token, since start. */
  exhausted = 0;

  /** @param ratio share of calls that may be retried, 0 to 1; 0 turns retries off @default {0.2} */
  constructor(ratio = DEFAULT_RETRY_BUDGET) {
    if (!(ratio >= 0 && ratio <= 1)) {
      throw new RangeError(`Cannot create RetryBudget: ratio must be between 0 and 1: received ${ratio}`);
    }
    this.#ratio = ratio;
    this.#tokens = ratio === 0 ? 0 : START_RETRY_TOKENS;
  }

  /** A first attempt was made: earns its share of a token. */
  earn(): void {
    const tokens = this.#tokens + this.#ratio;
    this.#tokens = tokens > MAX_RETRY_TOKENS ? MAX_RETRY_TOKENS : tokens;
  }

  /** Spends a token for a retry; false (and nothing spent) when none is left. */
  spend(): boolean {
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    this.exhausted++;
    return false;
  }

  /** Tokens left now. */
  get tokens(): number {
    return this.#tokens;
  }
}
