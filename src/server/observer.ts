/**
 * What the server tells the rest of the program about each call: how it was served ({@linkcode Outcome}),
 * one {@linkcode CallReport} per finished call and one backend-call report per backend call, through a
 * {@linkcode ProxyObserver} (the seam for metrics, the status page and logs).
 *
 * @module
 */

import type { BackendCallReport } from "../backend/backend_calls.ts";
import type { Role } from "../core/collapser.ts";
import type { StatusCode } from "../wire/grpc_wire.ts";
import type { ClientNoCache, Served } from "./served.ts";

/** How a call was served, for logs and metrics. */
export type Outcome = "leader" | "follower" | "cache" | "passthrough" | "health" | "rejected";

/** One finished downstream call. */
export interface CallReport {
  method: string;
  outcome: Outcome;
  code: StatusCode;
  durationMs: number;
  /** Shadow mode: what the call would have been had it been collapsed. */
  wouldBe?: Role;
  /** The call was answered with a stale answer because the backend failed (stale-if-error). */
  stale?: boolean;
  /** The collapse key (the full SHA-256 hex), for a call that had one. */
  key?: string;
  /** A collapsible call answered from a flight or the cache: how (its `cache-status`). */
  served?: Served;
  /** The caller sent `cache-control: no-cache` (or `max-age=0`): honoured (`bypassed`) or `ignored`. */
  clientNoCache?: ClientNoCache;
}

/** Receives one report per finished call and per finished backend call. Must not throw. */
export interface ProxyObserver {
  /** A downstream call ended. */
  call(info: CallReport): void;
  /** A backend call ended (collapsed or passed through). */
  backendCall(info: BackendCallReport): void;
}

/** One observer that tells each of `observers`, in order. */
export function observers(...list: ProxyObserver[]): ProxyObserver {
  if (list.length === 1) return list[0];
  return {
    call: (info) => {
      for (const observer of list) observer.call(info);
    },
    backendCall: (info) => {
      for (const observer of list) observer.backendCall(info);
    },
  };
}
