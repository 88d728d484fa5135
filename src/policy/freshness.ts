/**
 * How long an answer is kept, decided once, when the flight that produced it finishes: the method's policy
 * (its TTL, stale-if-error, which statuses are cached), then what the backend said about this answer in its
 * `cache-control` and `age` metadata (initial or trailing), as RFC 9111 says a shared cache must, capped by
 * `--max-ttl`; then the purges since the flight started. The result is one {@linkcode FinishOptions} for the
 * core: a TTL, a stale-if-error grace, a stale-while-revalidate window, the age it already had, and the tags
 * of its `surrogate-key`, by which it can be purged.
 *
 * | Response directive           | Effect on the answer                                                         |
 * | ---------------------------- | ---------------------------------------------------------------------------- |
 * | `s-maxage=N`, else `max-age=N` | fresh for N s (capped by `--max-ttl`) less the `age` it came with           |
 * | `no-store`, `private`, `no-cache` | not stored (callers already on the flight still get it)                 |
 * | `must-revalidate`, `proxy-revalidate`, `s-maxage` | no stale-if-error unless `stale-if-error=N` says so  |
 * | `stale-while-revalidate=N`   | replayed N s past its TTL, each hit then refreshing it                       |
 * | `stale-if-error=N`           | may stand in for a failed call N s past its TTL (wider of this and the policy) |
 *
 * Without `cache-control`, `surrogate-key` and purges (the common case) this returns the method's frozen
 * options: no parsing and no allocation.
 *
 * @module
 */

import type { OutgoingHttpHeaders } from "node:http2";
import type { FinishOptions } from "../core/collapser.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { type HeaderValue, parseAge, parseCacheControl, parseSurrogateKeys } from "./cache_control.ts";
import type { PurgeLog } from "./purges.ts";
import { type LeadRequest, retention } from "./retention.ts";

/** Why an answer was not stored: the `detail` of its `cache-status`, and a metric label. */
export type NotStoredReason = "no-store" | "private" | "no-cache" | "zero-ttl" | "status" | "off" | "purged";

/** Response directives counted when honoured. */
export type CountedDirective =
  | "max-age"
  | "s-maxage"
  | "no-store"
  | "private"
  | "no-cache"
  | "must-revalidate"
  | "proxy-revalidate"
  | "stale-while-revalidate"
  | "stale-if-error";

/** Counters of what answers said and how they were kept, for metrics. */
export interface FreshnessStats {
  /** Answers whose `cache-control` carried each directive (honoured). */
  directives: Record<CountedDirective, number>;
  /** Values ignored as malformed, by header. */
  invalid: Record<"cache-control" | "age" | "surrogate-key", number>;
  /** Values the backend gave past `--max-ttl` (or past 2^31 s), capped. */
  capped: number;
  /** Answers not stored, by reason. */
  notStored: Record<NotStoredReason, number>;
}

/** The metadata of a finished answer. */
export interface AnswerMetadata {
  /** Response headers (initial metadata); undefined for a trailers-only answer. */
  readonly headers: OutgoingHttpHeaders | undefined;
  /** Trailing metadata. */
  readonly trailers: OutgoingHttpHeaders;
}

const notKept = (reason: NotStoredReason): FinishOptions => Object.freeze({ cache: false, reason });
const NOT_KEPT: Readonly<Record<"no-store" | "private" | "no-cache" | "zero-ttl" | "purged", FinishOptions>> =
  {
    "no-store": notKept("no-store"),
    "private": notKept("private"),
    "no-cache": notKept("no-cache"),
    "zero-ttl": notKept("zero-ttl"),
    "purged": notKept("purged"),
  };

/** Decides how each answer is kept; holds the counters. */
export class Freshness {
  readonly #purges: PurgeLog | undefined;
  readonly #stats: FreshnessStats = {
    directives: {
      "max-age": 0,
      "s-maxage": 0,
      "no-store": 0,
      "private": 0,
      "no-cache": 0,
      "must-revalidate": 0,
      "proxy-revalidate": 0,
      "stale-while-revalidate": 0,
      "stale-if-error": 0,
    },
    invalid: { "cache-control": 0, "age": 0, "surrogate-key": 0 },
    capped: 0,
    notStored: {
      "no-store": 0,
      "private": 0,
      "no-cache": 0,
      "zero-ttl": 0,
      "status": 0,
      "off": 0,
      "purged": 0,
    },
  };

  /** @param purges the purges an answer is checked against (see purges.ts) @default {none} */
  constructor(purges?: PurgeLog) {
    this.#purges = purges;
  }

  /** A snapshot of the counters. */
  get stats(): FreshnessStats {
    const s = this.#stats;
    return {
      directives: { ...s.directives },
      invalid: { ...s.invalid },
      capped: s.capped,
      notStored: { ...s.notStored },
    };
  }

  /** How the answer to `request` that ended with `code` and carries `metadata` is kept. */
  keep(request: LeadRequest, code: StatusCode, metadata: AnswerMetadata): FinishOptions {
    const { policy } = request;
    const base = retention(policy, code);
    const { headers, trailers } = metadata;
    const since = request.since;
    const purged = since !== undefined && this.#purges !== undefined && this.#purges.mark !== since;
    const cacheControl = field(headers, trailers, "cache-control");
    const surrogateKey = field(headers, trailers, "surrogate-key");
    if (cacheControl === undefined && surrogateKey === undefined && !purged) return this.#counted(base);
    let tags: readonly string[] | undefined;
    if (surrogateKey !== undefined) {
      const parsed = parseSurrogateKeys(surrogateKey);
      tags = parsed.tags;
      this.#stats.invalid["surrogate-key"] += parsed.skipped;
    }
    if (purged && this.#purges!.purgedSince(since, request.method, request.key, tags)) {
      return this.#counted(NOT_KEPT.purged);
    }
    // The backend's word can keep an answer the method's TTL would not (`--cache-ttl 0`: only what the backend
    // says is cached), but never one whose status is not cached.
    if (code !== Status.OK && !policy.cacheErrors.has(code)) return this.#counted(base);
    if (cacheControl === undefined || !policy.cacheControl) {
      if (!base.cache) return this.#counted(base);
      return tags === undefined ? base : { ...base, tags };
    }

    const d = parseCacheControl(cacheControl);
    const stats = this.#stats;
    // (A value past 2^31 s is past any --max-ttl too: counted once, below, as capped.)
    stats.invalid["cache-control"] += d.invalid;
    const count = (directive: CountedDirective, present: boolean) => {
      if (present) stats.directives[directive]++;
    };
    count("no-store", d.noStore);
    count("private", d.private);
    count("no-cache", d.noCache);
    if (d.noStore) return this.#counted(NOT_KEPT["no-store"]);
    if (d.private) return this.#counted(NOT_KEPT.private);
    if (d.noCache) return this.#counted(NOT_KEPT["no-cache"]);
    count("max-age", d.maxAgeS !== undefined);
    count("s-maxage", d.sMaxAgeS !== undefined);
    count("must-revalidate", d.mustRevalidate);
    count("proxy-revalidate", d.proxyRevalidate);
    count("stale-while-revalidate", d.staleWhileRevalidateS !== undefined);
    count("stale-if-error", d.staleIfErrorS !== undefined);

    const cap = (seconds: number): number => {
      const ms = seconds * 1000;
      if (ms <= policy.maxTtlMs) return ms;
      stats.capped++;
      return policy.maxTtlMs;
    };
    let ttlMs = base.ttlMs ?? 0;
    let ageMs = 0;
    // A shared cache takes s-maxage over max-age (RFC 9111 §5.2.2.10).
    const lifetimeS = d.sMaxAgeS ?? d.maxAgeS;
    if (lifetimeS !== undefined) {
      const ageValue = field(headers, trailers, "age");
      if (ageValue !== undefined) {
        const ageS = parseAge(ageValue);
        if (ageS === undefined) stats.invalid.age++;
        else ageMs = ageS * 1000;
      }
      ttlMs = Math.max(0, cap(lifetimeS) - ageMs);
    }
    const swrMs = d.staleWhileRevalidateS === undefined ? 0 : cap(d.staleWhileRevalidateS);
    let graceMs = 0;
    if (code === Status.OK) {
      // Serving stale is forbidden by must-revalidate, proxy-revalidate and (for a shared cache) s-maxage
      // (RFC 9111 §4.2.4), unless the answer says stale-if-error itself ("regardless of other freshness
      // information", RFC 5861 §4).
      const staleIfErrorMs = d.staleIfErrorS === undefined ? undefined : cap(d.staleIfErrorS);
      const revalidate = d.mustRevalidate || d.proxyRevalidate || d.sMaxAgeS !== undefined;
      graceMs = revalidate ? staleIfErrorMs ?? 0 : Math.max(base.graceMs ?? 0, staleIfErrorMs ?? 0);
    }
    if (ttlMs + swrMs + graceMs === 0) return this.#counted(NOT_KEPT["zero-ttl"]);
    return { cache: true, ttlMs, graceMs, swrMs, ageMs, tags };
  }

  #counted(kept: FinishOptions): FinishOptions {
    if (!kept.cache && kept.reason !== undefined) this.#stats.notStored[kept.reason as NotStoredReason]++;
    return kept;
  }
}

/** A metadata entry from the response headers, the trailers, or both (joined as a list). */
function field(
  headers: OutgoingHttpHeaders | undefined,
  trailers: OutgoingHttpHeaders,
  name: string,
): HeaderValue {
  const first = headers?.[name];
  const second = trailers[name];
  if (first === undefined) return second;
  if (second === undefined) return first;
  return [first, second].flat().join(name === "surrogate-key" ? " " : ",");
}
