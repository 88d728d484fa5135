/**
 * How a finished answer is kept: by its status and its method's policy (OK for the TTL, chosen errors if the
 * policy says so, never the availability failures), which failures a stale answer may stand in for, and the
 * request a shared answer is made for. The backend calls and the shared tier both decide by these.
 *
 * @module
 */

import type * as http2 from "node:http2";
import type { FinishOptions } from "../core/collapser.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import type { MethodPolicy } from "./policy.ts";

/** Failures after which a stale answer may stand in (stale-if-error): the backend could not answer now. */
export const STALE_IF: ReadonlySet<StatusCode> = new Set([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED,
]);

/** The response header that marks an answer served stale because the backend failed. */
export const STALE_HEADER = "x-collapser-stale";

/** How an answer that must not be kept is finished. */
export const NOT_CACHED: FinishOptions = Object.freeze({ cache: false });
/** How an answer whose status is not cached is finished. */
const STATUS_NOT_CACHED: FinishOptions = Object.freeze({ cache: false, reason: "status" });

/**
 * How a flight that ended with `code` is kept under `policy`, before the answer's own `cache-control` has a
 * say (freshness.ts).
 */
export function retention(policy: MethodPolicy, code: StatusCode): FinishOptions {
  if (code === Status.OK) return policy.keepOk;
  return policy.cacheErrors.has(code) ? policy.keepError : STATUS_NOT_CACHED;
}

/** One collapsible request: what the leader's backend call is made of. */
export interface LeadRequest {
  readonly method: string;
  readonly message: Uint8Array;
  readonly headers: http2.IncomingHttpHeaders;
  readonly key: string;
  readonly policy: MethodPolicy;
  /** The caller's `cache-control: no-cache` is honoured: call the backend, whatever is stored. */
  readonly bypass?: boolean;
  /** This proxy's purge number when the flight started (purges.ts `PurgeLog.mark`). */
  readonly since?: number;
  /** The fleet's purge number when the flight started (`PurgeLog.fleetMark`): stamped on shared answers. */
  readonly fleetSince?: number;
}
