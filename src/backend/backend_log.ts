/**
 * What is logged of a backend call's status: a failure of the backend at `warn`, an application's answer
 * (NOT_FOUND, INVALID_ARGUMENT, ...) at `debug` only.
 *
 * @module
 */

import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { log } from "../util/log.ts";
import type { StatusEvent } from "../wire/response.ts";

/** Statuses that mean the backend failed (rather than answered no): logged at warn. */
const BACKEND_FAILURES: ReadonlySet<StatusCode> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** Logs the status a backend call of `method` ended with. */
export function logStatus(method: string, status: StatusEvent): void {
  if (BACKEND_FAILURES.has(status.code)) {
    log.warn("backend call {method} failed: {code} {details}", {
      method,
      code: status.code,
      details: status.details,
    });
  } else if (status.code !== Status.OK) {
    // An application answer (NOT_FOUND, INVALID_ARGUMENT, ...): one line per call would flood at warn.
    log.debug("backend call {method} answered {code} {details}", () => ({
      method,
      code: status.code,
      details: status.details,
    }));
  }
}
