/**
 * What a downstream call needs from the server it arrived on ({@linkcode CallHost}).
 *
 * @module
 */

import type * as http2 from "node:http2";
import type { BackendCalls } from "../backend/backend_calls.ts";
import type { LeadRequest } from "../policy/retention.ts";
import type { Flight } from "../core/flight.ts";
import type { Collapser } from "../core/collapser.ts";
import type { Policy } from "../policy/policy.ts";
import type { SharedTier } from "../fleet/shared_tier.ts";
import type { CallReport } from "./observer.ts";
import type { PurgeLog } from "../policy/purges.ts";
import type { ShadowLedger } from "../core/shadow.ts";
import type { ResponseEvent } from "../wire/response.ts";

/**
 * What a call needs from the server it arrived on. The {@linkcode Proxy} is one; the call never reaches
 * back into the server for anything else.
 */
export interface CallHost {
  /** Whether the server is draining: new calls are refused (the proxy's own health check still answers). */
  readonly draining: boolean;
  /** The policy new calls are resolved against. */
  readonly policy: Policy;
  /** Largest request message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** The collapsing core. */
  readonly collapser: Collapser<ResponseEvent>;
  /** The backend clients and calls. */
  readonly backend: BackendCalls;
  /** Shadow mode's ledger; undefined when calls are really collapsed. */
  readonly shadow: ShadowLedger | undefined;
  /** The shared tier, when there is one. */
  readonly tier: SharedTier | undefined;
  /** Whether answers say how they were served (`cache-status`). */
  readonly cacheStatus: boolean;
  /** The purges a flight's answer is checked against when it ends. */
  readonly purges: PurgeLog | undefined;
  /** The verified client identity (mTLS) of a connection; callers with different identities never share. */
  identityOf(session: http2.Http2Session | undefined): string | undefined;
  /** A call ended. */
  callFinished(report: CallReport): void;
  /** A call's HTTP/2 stream closed (its trailers have left, or the client went away). */
  streamClosed(): void;
}

/**
 * Starts the backend call that `flight` waits on, through the shared tier when there is one. The purge marks
 * are taken now: an answer a purge made stale while the call ran is not cached.
 */
export function lead(
  host: CallHost,
  flight: Flight<ResponseEvent>,
  call: Omit<LeadRequest, "since" | "fleetSince">,
): void {
  const { tier, backend, purges } = host;
  const request: LeadRequest = { ...call, since: purges?.mark, fleetSince: purges?.fleetMark };
  if (tier === undefined) backend.lead(flight, request);
  else tier.lead(flight, request, (local) => backend.lead(local, request));
}
