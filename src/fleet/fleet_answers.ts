/**
 * Answers a proxy takes from the fleet — stored in Redis, or published by the proxy whose call made them —
 * are served to the local flight as this proxy's policy and the answer's own metadata say (freshness.ts),
 * and are not taken when a purge made after their flight began names them (purges.ts): their purge number
 * is on them, their tags are in their `surrogate-key`.
 *
 * @module
 */

import type { OutgoingHttpHeaders } from "node:http2";
import type { FinishOptions, Flight } from "../core/collapser.ts";
import { parseSurrogateKeys } from "../policy/cache_control.ts";
import type { Freshness } from "../policy/freshness.ts";
import type { PurgeLog } from "../policy/purges.ts";
import { type LeadRequest, retention } from "../policy/retention.ts";
import { Status } from "../wire/grpc_wire.ts";
import type { ResponseEvent, StatusEvent } from "../wire/response.ts";
import { log } from "../util/log.ts";
import { type AnswerStamp, decodeAnswer } from "./shared_answer.ts";

/** What answers from the fleet are kept and checked by. */
export interface FleetAnswerRules {
  /** How an answer is kept here. @default {the method's policy} */
  readonly freshness?: Freshness;
  /** The purges an answer is checked against; without it, none are. */
  readonly purges?: PurgeLog;
}

const NOT_KEPT: FinishOptions = Object.freeze({ cache: false });

/**
 * Serves a flight an answer from Redis (`value`, with `ttlMs` of life left there), kept here for at most
 * that; or says why it did not: the answer is `unreadable`, or `purged`.
 */
export function serveStored(
  rules: FleetAnswerRules,
  flight: Flight<ResponseEvent>,
  request: LeadRequest,
  value: Uint8Array,
  ttlMs: number,
): "served" | "purged" | "unreadable" {
  let answer: ReturnType<typeof decodeAnswer>;
  try {
    answer = decodeAnswer(value);
  } catch (err) {
    log.warn("redis: a stored answer could not be read ({error}); calling the backend", {
      error: String(err),
    });
    return "unreadable";
  }
  const { events, tookMs } = answer;
  const last = events[events.length - 1] as StatusEvent;
  const headers = events[0].type === "headers" ? events[0].headers : undefined;
  if (purged(rules, request, answer, headers, last)) return "purged";
  let kept = keep(rules, request, last, headers);
  if (kept.cache) {
    // Its age: what it came with, and how long it has been in Redis.
    const inRedisMs = answer.ttlMs === undefined ? 0 : Math.max(0, answer.ttlMs - ttlMs);
    kept = ttlMs > 0
      // The backend call's own duration, not this round trip's: refresh-ahead starts that long before expiry.
      ? { ...kept, ttlMs: Math.min(ttlMs, kept.ttlMs ?? ttlMs), ageMs: (kept.ageMs ?? 0) + inRedisMs, tookMs }
      : NOT_KEPT;
  }
  for (let i = 0; i < events.length - 1; i++) flight.emit(events[i]);
  flight.finish(kept, last);
  return "served";
}

/** Serves a flight an answer another proxy published (its flight began at purge number `stamp`), or not. */
export function serveEvents(
  rules: FleetAnswerRules,
  flight: Flight<ResponseEvent>,
  request: LeadRequest,
  events: readonly ResponseEvent[],
  stamp: number,
): "served" | "purged" {
  const last = events[events.length - 1] as StatusEvent;
  const headers = events[0].type === "headers" ? events[0].headers : undefined;
  if (purged(rules, request, { stamp, ageMs: 0 }, headers, last)) return "purged";
  for (let i = 0; i < events.length - 1; i++) flight.emit(events[i]);
  flight.finish(keep(rules, request, last, headers), last);
  return "served";
}

/** How an answer from the fleet is kept here. */
function keep(
  rules: FleetAnswerRules,
  request: LeadRequest,
  last: StatusEvent,
  headers: OutgoingHttpHeaders | undefined,
): FinishOptions {
  const code = last.type === "status" ? last.code : Status.UNKNOWN;
  return rules.freshness?.keep(request, code, { headers, trailers: last.trailers ?? {} }) ??
    retention(request.policy, code);
}

/** Whether a purge after the answer's flight began names it. */
function purged(
  rules: FleetAnswerRules,
  request: LeadRequest,
  answer: AnswerStamp,
  headers: OutgoingHttpHeaders | undefined,
  last: StatusEvent,
): boolean {
  const purges = rules.purges;
  // Nothing purged in the fleet since its flight began (the common case): no need to read its tags.
  if (purges === undefined || answer.stamp >= purges.fleetMark) return false;
  const tags = parseSurrogateKeys(headers?.["surrogate-key"] ?? last.trailers?.["surrogate-key"]).tags;
  return purges.purgedInFleet(answer.stamp, request.method, request.key, tags);
}
