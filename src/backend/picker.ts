/**
 * Which address a call goes to. The default is Envoy's LEAST_REQUEST with its default choice count: two
 * addresses drawn at random, the one with fewer calls in flight wins ("the power of two choices": nearly
 * as even as asking every address, at the cost of two random numbers, and a slow replica gets fewer calls
 * without any of them having to measure it). `round_robin` is gRPC's: each address in turn.
 *
 * @module
 */

/** How calls are spread over the addresses. */
export type LbPolicy = "least_request" | "round_robin";

/** The policies, as `--lb-policy` takes them. */
export const LB_POLICIES: readonly LbPolicy[] = ["least_request", "round_robin"];

/** What a picker needs of an address. */
export interface Pickable {
  /** Calls running on it now. */
  readonly inflight: number;
}

/** Chooses one of a non-empty list. */
export interface Picker {
  pick<T extends Pickable>(candidates: readonly T[]): T;
}

/** Least outstanding requests of two random choices. */
export class LeastRequest implements Picker {
  readonly #random: () => number;
  /** @param random uniform in [0, 1) (tests pass a seeded one) @default {Math.random} */
  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  pick<T extends Pickable>(candidates: readonly T[]): T {
    const n = candidates.length;
    if (n === 1) return candidates[0];
    const i = Math.floor(this.#random() * n);
    let j = Math.floor(this.#random() * (n - 1));
    if (j >= i) j++;
    const a = candidates[i], b = candidates[j];
    return b.inflight < a.inflight ? b : a;
  }
}

/** Each candidate in turn. */
export class RoundRobin implements Picker {
  #next = 0;
  pick<T extends Pickable>(candidates: readonly T[]): T {
    const n = candidates.length;
    if (this.#next >= n) this.#next = 0;
    return candidates[this.#next++];
  }
}

/** The picker of `policy`. */
export function picker(policy: LbPolicy, random?: () => number): Picker {
  return policy === "round_robin" ? new RoundRobin() : new LeastRequest(random);
}
