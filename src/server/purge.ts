/**
 * Applying a purge on this proxy: record it in the purge log, drop the matching cached answers and retire
 * the matching backend calls in flight (they answer the callers already waiting, take no one new, and are
 * not cached), and count what it dropped.
 *
 * @module
 */

import type { Collapser } from "../core/collapser.ts";
import type { AddOptions, PurgeLog, PurgeRecord, PurgeTarget } from "../policy/purges.ts";
import { log } from "../util/log.ts";
import type { ResponseEvent } from "../wire/response.ts";

/** What `POST /purge` answers. */
export interface PurgeResult {
  readonly kind: PurgeTarget["kind"];
  readonly value: string;
  /** Cached answers this proxy dropped. */
  readonly dropped: number;
  /** Backend calls in flight on this proxy that will not be cached (their callers still get them). */
  readonly inFlight: number;
  /**
   * With `--redis`: the fleet's number for the purge and how many proxies were subscribed when it was
   * published (this one included); each drops its own matching answers, and answers stored in Redis are
   * not taken again. Null without `--redis`.
   */
  readonly fleet: { readonly seq: number; readonly proxies: number } | null;
  /** With `--redis`, when the purge could not be made fleet-wide: why (it was applied here only). */
  readonly fleetError?: string;
}

/** Applies `target` here (once per fleet purge number); returns its record with what it dropped. */
export function applyPurge(
  collapser: Collapser<ResponseEvent>,
  purges: PurgeLog,
  target: PurgeTarget,
  options: AddOptions,
): PurgeRecord {
  const { record, fresh } = purges.add(target, options);
  if (!fresh) return record;
  const { entries, flights } = collapser.purge((key, label, tags) => record.matches(label, key, tags));
  purges.counted(record, entries, flights);
  log.info("purge {kind} {value} ({origin}): dropped {dropped} cached answers, {flights} calls in flight", {
    kind: record.kind,
    value: record.value,
    origin: record.origin,
    fleetSeq: record.fleetSeq,
    dropped: entries,
    flights,
  });
  return record;
}
