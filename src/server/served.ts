/**
 * What one collapsible call learns of how its answer is served ({@linkcode ServedAnswer}), and how it says
 * so to the caller, the RFC 9211 way: a `cache-status` entry in the answer's
 * trailing metadata (the leader's `stored` is only known once the answer is complete; a trailers-only answer
 * has it in its one header block), with the proxy's name, `collapser`.
 *
 * | Served                                    | `cache-status`                                               |
 * | ----------------------------------------- | ------------------------------------------------------------ |
 * | a cache hit                               | `collapser; hit; ttl=S; key="…"` (S < 0: stale-while-revalidate) |
 * | the leader: its request went to the backend | `collapser; fwd=miss; stored; key="…"` (no `stored`: not kept, `detail=` why) |
 * | a follower: joined a call in flight       | `collapser; fwd=miss; stored; collapsed; key="…"`            |
 * | a caller's `no-cache` honoured            | `collapser; fwd=request; stored; key="…"`                    |
 * | stale-if-error: the call failed, a stale answer stands in | `collapser; fwd=stale; fwd-status=14; ttl=-S; key="…"` |
 *
 * `fwd-status` is the gRPC status code of the failure (a gRPC answer's HTTP status is 200); `key` is the
 * first 12 hex digits of the collapse key (what the logs and the status page show, and what `POST /purge`
 * takes). A cached answer also carries `age` (seconds since the backend gave it) with its response headers.
 *
 * @module
 */

import type { OutgoingHttpHeaders } from "node:http2";
import type { FinishOptions, JoinOptions } from "../core/collapser.ts";
import type { StatusCode } from "../wire/grpc_wire.ts";
import { type HeaderValue, wantsFresh } from "../policy/cache_control.ts";
import type { MethodPolicy } from "../policy/policy.ts";

/** The trailing-metadata name. */
export const CACHE_STATUS = "cache-status";
/** The name the proxy gives itself in `cache-status`. */
export const CACHE_NAME = "collapser";
/** How many hex digits of the key `cache-status` shows. */
const KEY_DIGITS = 12;

/** How one collapsible call's answer was served (a metric label, and the shape of its `cache-status`). */
export type Served =
  | "hit"
  | "hit_stale"
  | "stale_if_error"
  | "miss_stored"
  | "miss_not_stored"
  | "bypass_stored"
  | "bypass_not_stored";

/** What a call knows, at its status, of how its answer was served. */
export interface ServedFacts {
  /** The collapse key. */
  readonly key: string;
  /** How the call joined: `cache` for a hit. */
  readonly role: "leader" | "follower" | "cache";
  /** A hit: its freshness left, in ms (negative within stale-while-revalidate). */
  readonly freshMs: number;
  /** The caller's `no-cache` was honoured. */
  readonly bypass: boolean;
  /** A flight's answer: whether it was stored, and how it was to be kept (undefined if not told). */
  readonly stored: boolean;
  readonly kept: FinishOptions | undefined;
  /** Served stale in place of a failure: the failure and the answer's freshness left (negative). */
  readonly staleness: { readonly code: StatusCode; readonly freshMs: number } | undefined;
}

/** How the answer was served. */
export function servedAs(facts: ServedFacts): Served {
  if (facts.role === "cache") return facts.freshMs < 0 ? "hit_stale" : "hit";
  if (facts.staleness !== undefined) return "stale_if_error";
  if (facts.bypass) return facts.stored ? "bypass_stored" : "bypass_not_stored";
  return facts.stored ? "miss_stored" : "miss_not_stored";
}

/** The `cache-status` value for an answer served as `served`. */
export function cacheStatus(served: Served, facts: ServedFacts): string {
  const key = `key="${facts.key.slice(0, KEY_DIGITS)}"`;
  const collapsed = facts.role === "follower" ? "; collapsed" : "";
  switch (served) {
    case "hit":
    case "hit_stale":
      return `${CACHE_NAME}; hit; ttl=${seconds(facts.freshMs)}; ${key}`;
    case "stale_if_error": {
      const { code, freshMs } = facts.staleness!;
      return `${CACHE_NAME}; fwd=stale; fwd-status=${code}; ttl=${seconds(freshMs)}${collapsed}; ${key}`;
    }
    default: {
      const fwd = facts.bypass ? "request" : "miss";
      const reason = facts.kept?.reason;
      const stored = facts.stored ? "; stored" : reason === undefined ? "" : `; detail=${reason}`;
      return `${CACHE_NAME}; fwd=${fwd}${stored}${collapsed}; ${key}`;
    }
  }
}

/** Milliseconds of freshness as RFC 9211's whole seconds (rounded down: -0.3 s is -1, stale). */
function seconds(ms: number): number {
  const s = Math.floor(ms / 1000);
  return s === 0 ? 0 : s; // never "-0"
}

/** A caller's `cache-control: no-cache` (or `max-age=0`): honoured, or ignored (not allowed here). */
export type ClientNoCache = "bypassed" | "ignored";

/** What one collapsible call learns, as it is served, of how its answer was served. */
export class ServedAnswer {
  #ageMs: number | undefined;
  #freshMs = 0;
  #bypass = false;
  #stored = false;
  #kept: FinishOptions | undefined;
  #staleness: ServedFacts["staleness"];
  /** The caller's `no-cache`, if it sent one, and whether it was honoured. */
  clientNoCache: ClientNoCache | undefined;
  /** How the answer was served, once its status is known. */
  served: Served | undefined;

  /**
   * How the call joins its key: as the method says, or (a caller's `no-cache` or `max-age=0`, where the
   * policy allows it — any caller could otherwise defeat the herd protection) bypassing the cache.
   */
  join(requested: HeaderValue, policy: MethodPolicy): JoinOptions {
    if (requested === undefined || !wantsFresh(requested)) return policy.join;
    if (!policy.clientNoCache) {
      this.clientNoCache = "ignored";
      return policy.join;
    }
    this.clientNoCache = "bypassed";
    this.#bypass = true;
    return policy.joinBypass;
  }

  /** Whether the caller's `no-cache` is honoured. */
  get bypass(): boolean {
    return this.#bypass;
  }

  /** A cache hit: its age and freshness left, in ms. */
  cached(ageMs: number, freshMs: number): void {
    this.#ageMs = ageMs;
    this.#freshMs = freshMs;
  }

  /** The flight finished: whether its answer was stored, and how it was to be kept. */
  finishing(stored: boolean, kept: FinishOptions): void {
    this.#stored = stored;
    this.#kept = kept;
  }

  /** The answer is a stale one standing in for a failure. */
  stale(staleness: ServedFacts["staleness"]): void {
    this.#staleness = staleness;
  }

  /** The `age` of a cached answer, in whole seconds; undefined for any other. */
  get age(): string | undefined {
    return this.#ageMs === undefined ? undefined : String(Math.floor(this.#ageMs / 1000));
  }

  /**
   * Notes how the answer was served, and returns the trailers that say so: `cache-status` (unless
   * `withStatus` is false), and `age` for a cached answer with no response headers (a trailers-only one).
   */
  trailers(
    key: string,
    role: "leader" | "follower" | "cache",
    withStatus: boolean,
    headersSent: boolean,
  ): OutgoingHttpHeaders | undefined {
    const facts: ServedFacts = {
      key,
      role,
      freshMs: this.#freshMs,
      bypass: this.#bypass,
      stored: this.#stored,
      kept: this.#kept,
      staleness: this.#staleness,
    };
    const served = this.served = servedAs(facts);
    const trailers = withStatus ? { [CACHE_STATUS]: cacheStatus(served, facts) } : undefined;
    const age = headersSent ? undefined : this.age;
    return age === undefined ? trailers : { ...trailers, age };
  }
}
