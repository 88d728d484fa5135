/**
 * Stale-if-error's answer: a collapsed call's backend call failed with an availability status, and the key's
 * last good answer, past its TTL but within the grace it was kept with, stands in for the failure.
 *
 * @module
 */

import type { Flight, StaleRecording } from "../core/collapser.ts";
import { NOT_CACHED, STALE_HEADER } from "../policy/retention.ts";
import type { ResponseEvent, StatusEvent } from "../wire/response.ts";

/**
 * Answers a flight with a stale recording in place of the failure `status`: its headers marked (and its
 * `age` given), and ends it without caching.
 */
export function serveStale(
  flight: Flight<ResponseEvent>,
  stale: StaleRecording<ResponseEvent>,
  status: StatusEvent,
): void {
  const original = stale.events.find((event) => event.type === "headers");
  const headers = original?.type === "headers" ? original.headers : {};
  flight.emit({
    type: "headers",
    headers: { ...headers, [STALE_HEADER]: "1", age: String(Math.floor(stale.ageMs / 1000)) },
    stale: true,
    staleness: { code: status.code, freshMs: stale.freshMs },
  });
  let last: ResponseEvent | undefined;
  for (const event of stale.events) {
    if (event.type === "message") flight.emit(event);
    else if (event.type === "status") last = event;
  }
  flight.finish(NOT_CACHED, last);
}
