/**
 * The HTTP-cache metric families: how each collapsible call's answer was served (its `cache-status`), the
 * backend's `cache-control` directives honoured, malformed values ignored, values capped, answers not
 * stored and why, callers' `no-cache`, and purges. Part of {@linkcode Metrics} (metrics.ts).
 *
 * @module
 */

import client from "prom-client";
import { scrapedCounter, talliedCounter, type Tally } from "./scraped.ts";
import type { FreshnessStats } from "../policy/freshness.ts";
import type { PurgeStats } from "../policy/purges.ts";
import type { CallReport } from "../server/observer.ts";

/** What the cache metrics read at scrape time. */
export interface CacheMetricsSource {
  freshnessStats?(): FreshnessStats;
  purgeStats?(): PurgeStats;
}

/** The HTTP-cache families of one registry. */
export class CacheMetrics {
  readonly #served: Tally;
  readonly #clientNoCache: client.Counter<"result">;

  constructor(registry: client.Registry, source: () => CacheMetricsSource | undefined) {
    const registers = [registry];
    this.#served = talliedCounter(
      registers,
      "collapser_served_total",
      "Collapsible calls answered from a flight or the cache, by method and how (their cache-status): hit, hit_stale (stale-while-revalidate), stale_if_error, miss_stored, miss_not_stored (forwarded: the answer was stored or not), bypass_stored, bypass_not_stored (a caller's no-cache honoured).",
      ["method", "served"],
    );
    this.#clientNoCache = new client.Counter({
      name: "collapser_client_no_cache_total",
      help:
        "Calls whose caller sent cache-control: no-cache or max-age=0, by result: bypassed (a fresh backend call), ignored (not allowed: --allow-client-no-cache or a rule's clientNoCache).",
      labelNames: ["result"],
      registers,
    });
    this.#clientNoCache.inc({ result: "bypassed" }, 0);
    this.#clientNoCache.inc({ result: "ignored" }, 0);

    const fromSource = <T>(read: (s: CacheMetricsSource) => T | undefined) => {
      const s = source();
      return s === undefined ? undefined : read(s);
    };
    const labelled = (
      name: string,
      help: string,
      label: string,
      read: () => Record<string, number> | undefined,
    ) => scrapedCounter(registers, name, help, read, label);
    labelled(
      "collapser_cache_control_directives_total",
      "Backend answers whose cache-control carried each directive, as honoured (see --no-cache-control).",
      "directive",
      () => fromSource((s) => s.freshnessStats?.().directives),
    );
    labelled(
      "collapser_cache_control_invalid_total",
      "Malformed values in the backend's caching metadata, ignored (the rest of the header stands), by header: cache-control, age, surrogate-key.",
      "header",
      () => fromSource((s) => s.freshnessStats?.().invalid),
    );
    labelled(
      "collapser_cache_not_stored_total",
      "Answers not stored, by reason: no-store, private, no-cache (their cache-control), zero-ttl (nothing to keep), status (not a cached status), off (the method's TTL is 0), purged (a purge named it while its call ran).",
      "reason",
      () => fromSource((s) => s.freshnessStats?.().notStored),
    );
    new client.Counter({
      name: "collapser_purges_total",
      help:
        "Purges applied on this proxy, by kind (method, key, tag) and origin (admin: this proxy's POST /purge; fleet: another proxy's, through Redis).",
      labelNames: ["kind", "origin"],
      registers,
      collect() {
        this.reset();
        for (const [both, n] of Object.entries(fromSource((s) => s.purgeStats?.().purges) ?? {})) {
          const [kind, origin] = both.split(":");
          this.inc({ kind, origin }, n);
        }
      },
    });
    new client.Counter({
      name: "collapser_cache_control_capped_total",
      help: "Values the backend's cache-control gave past --max-ttl (or past 2^31 s), taken as the cap.",
      registers,
      collect() {
        this.reset();
        this.inc(fromSource((s) => s.freshnessStats?.().capped) ?? 0);
      },
    });
    new client.Counter({
      name: "collapser_purged_entries_total",
      help: "Cached answers this proxy dropped for purges.",
      registers,
      collect() {
        this.reset();
        this.inc(fromSource((s) => s.purgeStats?.().dropped) ?? 0);
      },
    });
  }

  /** Counts one finished call, under its method label. */
  call(info: CallReport, method: string): void {
    if (info.served !== undefined) this.#served.inc(method, info.served);
    if (info.clientNoCache !== undefined) this.#clientNoCache.inc({ result: info.clientNoCache });
  }
}
