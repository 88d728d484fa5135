/**
 * Prometheus metrics (prom-client), fed by the proxy's observer hooks and read from its gauges at scrape.
 *
 * @module
 */

import client from "prom-client";
import {
  scrapedCounter,
  talliedCounter,
  type TalliedHistogram,
  talliedHistogram,
  type Tally,
} from "./scraped.ts";
import type { CollapserStats } from "../core/collapser.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import type { BackendCallReport } from "../backend/backend_calls.ts";
import type { ProxyStats } from "../server/proxy.ts";
import type { CallReport, ProxyObserver } from "../server/observer.ts";
import { fanOutStats } from "../server/fan_out.ts";
import type { TierStats } from "../fleet/shared_tier.ts";
import type { BalancerStats } from "../backend/balancer.ts";
import { addressMetrics } from "./address_metrics.ts";
import { CacheMetrics, type CacheMetricsSource } from "./cache_metrics.ts";

/** Most distinct method label values; further methods are counted under `_other`. */
export const DEFAULT_MAX_METHOD_LABELS = 200;

/** Label value for calls that named no usable method (rejected, or UNIMPLEMENTED by the backend). */
export const UNKNOWN_METHOD = "_unknown";
/** Label value for methods beyond the label limit. */
export const OTHER_METHOD = "_other";

const STATUS_NAMES = Object.fromEntries(Object.entries(Status).map(([name, code]) => [code, name])) as Record<
  number,
  string
>;

/** The gRPC status name for a code (`OK`, `UNAVAILABLE`, ...). */
export function statusName(code: StatusCode): string {
  return STATUS_NAMES[code] ?? String(code);
}

/** What the metrics read at scrape time. */
export interface MetricsSource extends CacheMetricsSource {
  proxyStats(): ProxyStats;
  collapserStats(): CollapserStats;
}

/**
 * Statuses a backend call can end with although the backend never recognised the method: it does not
 * implement it, or it was not reached, or the call ended before it answered.
 */
const NOT_PROOF_OF_A_METHOD: ReadonlySet<StatusCode> = new Set([
  Status.UNIMPLEMENTED,
  Status.UNAVAILABLE,
  Status.CANCELLED,
  Status.DEADLINE_EXCEEDED,
]);

/**
 * Bounds the method label: a method becomes a label value once a backend call to it has ended with a status
 * that shows the backend serves it (not UNIMPLEMENTED, UNAVAILABLE, CANCELLED or DEADLINE_EXCEEDED), up to
 * `limit` methods. Until then its calls count under `_unknown`; past the limit, under `_other`. A client
 * spraying random method names cannot grow the series, nor take the slots of real methods.
 */
export class MethodLabels {
  readonly #known = new Set<string>();
  readonly #limit: number;
  constructor(limit = DEFAULT_MAX_METHOD_LABELS) {
    this.#limit = limit;
  }

  /** Records that a backend call to `method` ended with `code`. */
  learn(method: string, code: StatusCode): void {
    if (NOT_PROOF_OF_A_METHOD.has(code) || this.#known.size >= this.#limit || method === "") return;
    this.#known.add(method);
  }

  /** The label value for `method`. */
  label(method: string): string {
    if (this.#known.has(method)) return method;
    return this.#known.size >= this.#limit ? OTHER_METHOD : UNKNOWN_METHOD;
  }
}

/** The proxy's Prometheus registry and the observer that feeds it. */
export class Metrics implements ProxyObserver {
  /** The registry served at `/metrics`. */
  readonly registry: client.Registry;
  readonly #methods: MethodLabels;
  readonly #requests: Tally;
  readonly #requestDuration: TalliedHistogram;
  readonly #backendCalls: Tally;
  readonly #backendLatency: TalliedHistogram;
  readonly #shadow: client.Counter<"method" | "would">;
  readonly #stale: client.Counter<"method">;
  readonly #reloads: client.Counter<"result">;
  readonly #cache: CacheMetrics;
  #source: MetricsSource | undefined;

  /**
   * @param options.defaultMetrics also export prom-client's process and runtime metrics @default {true}
   * @param options.maxMethodLabels most distinct method label values @default {200}
   */
  constructor(options: { defaultMetrics?: boolean; maxMethodLabels?: number } = {}) {
    const registry = this.registry = new client.Registry();
    this.#methods = new MethodLabels(options.maxMethodLabels);
    if (options.defaultMetrics ?? true) client.collectDefaultMetrics({ register: registry });
    const registers = [registry];

    this.#requests = talliedCounter(
      registers,
      "collapser_requests_total",
      "Calls answered, by method, how they were served (outcome) and gRPC status (code).",
      ["method", "outcome", "code"],
    );
    this.#requestDuration = talliedHistogram(
      registers,
      "collapser_request_duration_seconds",
      "Time from a call's request headers to its status, by outcome.",
      "outcome",
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );
    this.#backendCalls = talliedCounter(
      registers,
      "collapser_backend_calls_total",
      "Calls made to the backend, by method and gRPC status (code).",
      ["method", "code"],
    );
    this.#backendLatency = talliedHistogram(
      registers,
      "collapser_backend_latency_seconds",
      "Duration of backend calls, by method.",
      "method",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );

    this.#shadow = new client.Counter({
      name: "collapser_shadow_calls_total",
      help:
        "Shadow mode: collapsible calls passed through, by method and what they would have been (would: leader, follower, cache).",
      labelNames: ["method", "would"],
      registers,
    });
    this.#stale = new client.Counter({
      name: "collapser_stale_answers_total",
      help: "Calls answered with a stale answer because the backend call failed (stale-if-error), by method.",
      labelNames: ["method"],
      registers,
    });
    this.#reloads = new client.Counter({
      name: "collapser_policy_reloads_total",
      help: "Policy reloads (SIGHUP), by result: ok, or failed (the previous policy stays).",
      labelNames: ["result"],
      registers,
    });
    this.#reloads.inc({ result: "ok" }, 0);
    this.#reloads.inc({ result: "failed" }, 0);
    this.#cache = new CacheMetrics(registry, () => this.#source);

    const proxyStats = (): ProxyStats =>
      this.#source?.proxyStats() ?? {
        backendCalls: 0,
        backendInflight: 0,
        passthrough: 0,
        activeCalls: 0,
        connections: 0,
        queued: 0,
        shedQueueFull: 0,
        shedQueueTimeout: 0,
      };
    const collapserStats = (): CollapserStats =>
      this.#source?.collapserStats() ?? {
        leaders: 0,
        followers: 0,
        cacheHits: 0,
        refreshes: 0,
        inflight: 0,
        waiting: 0,
        cacheEntries: 0,
        cacheBytes: 0,
        cacheEvictions: 0,
      };
    const gauge = (name: string, help: string, read: () => number) =>
      new client.Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    // Counters kept by the core are exposed as counters whose value is set at scrape time.
    const counter = (name: string, help: string, read: () => number) =>
      scrapedCounter(registers, name, help, read);
    gauge(
      "collapser_inflight_requests",
      "Backend calls running now (collapsed and passed through).",
      () => proxyStats().backendInflight,
    );
    counter(
      "collapser_client_connections_total",
      "Client connections accepted since start (each closed one keeps memory in Deno 2.8.3: docs/limits.md).",
      () => proxyStats().connections,
    );
    gauge(
      "collapser_backend_queue_length",
      "Backend calls waiting for a slot now (--max-backend-concurrency).",
      () => proxyStats().queued,
    );
    new client.Counter({
      name: "collapser_backend_shed_total",
      help:
        "Calls answered RESOURCE_EXHAUSTED by the proxy instead of reaching the backend (--max-backend-concurrency), by reason: queue_full, queue_timeout.",
      labelNames: ["reason"],
      registers,
      collect() {
        const stats = proxyStats();
        this.reset();
        this.inc({ reason: "queue_full" }, stats.shedQueueFull);
        this.inc({ reason: "queue_timeout" }, stats.shedQueueTimeout);
      },
    });
    gauge(
      "collapser_waiting_callers",
      "Callers waiting on a shared backend call now (leaders and followers).",
      () => collapserStats().waiting,
    );
    gauge(
      "collapser_fanout_queued_events",
      "Events of followers' answers waiting their turn to be written now (a herd's answer goes out 64 a turn).",
      () => fanOutStats().waiting,
    );
    gauge("collapser_cache_entries", "Answers in the cache now.", () => collapserStats().cacheEntries);
    gauge(
      "collapser_cache_bytes",
      "Bytes of answers in the cache now.",
      () => collapserStats().cacheBytes,
    );
    counter(
      "collapser_cache_hits_total",
      "Calls answered from the cache.",
      () => collapserStats().cacheHits,
    );
    counter(
      "collapser_cache_misses_total",
      "Collapsible calls not answered from the cache (leaders and followers).",
      () => {
        const s = collapserStats();
        return s.leaders + s.followers;
      },
    );
    counter(
      "collapser_cache_refreshes_total",
      "Backend calls started by a cache hit shortly before its answer expired (refresh-ahead).",
      () => collapserStats().refreshes,
    );
    counter(
      "collapser_cache_evictions_total",
      "Answers dropped from the cache for room before their TTL.",
      () => collapserStats().cacheEvictions,
    );
    gauge(
      "collapser_collapse_ratio",
      "Collapsible calls per backend call since start: (leaders + followers + cache hits) / (leaders + refreshes); 0 before the first call.",
      () => {
        const s = collapserStats();
        const backendCalls = s.leaders + s.refreshes;
        return backendCalls === 0 ? 0 : (s.leaders + s.followers + s.cacheHits) / backendCalls;
      },
    );
  }

  /** Where gauges and the core's counters are read at scrape time (the running proxy). */
  attach(source: MetricsSource): void {
    this.#source = source;
  }

  /** Exports the shared tier's state and counters (only a proxy with `--redis` has them). */
  tier(read: () => TierStats): void {
    const registers = [this.registry];
    new client.Gauge({
      name: "collapser_redis_up",
      help: "1 while the shared tier (Redis) is in use; 0 while this proxy collapses alone.",
      registers,
      collect() {
        this.set(read().up ? 1 : 0);
      },
    });
    const labelled = (name: string, help: string, field: "lookups" | "waits" | "settles", label: string) =>
      scrapedCounter(registers, name, help, () => read()[field], label);
    labelled(
      "collapser_redis_lookups_total",
      "Local leaders' round trips to the shared tier, by result: hit (answer from Redis), lock (this proxy calls the backend), wait (another proxy does), skipped (tier down), error, bypass (a caller's no-cache found another proxy's lock: called the backend itself).",
      "lookups",
      "result",
    );
    labelled(
      "collapser_redis_waits_total",
      "Waits for another proxy's answer, by how they ended: answer (published), polled (found stored), notice (not shareable: called the backend), free (lock gone: called the backend), timeout (lock's life passed: called the backend), down (tier went down: called the backend).",
      "waits",
      "outcome",
    );
    labelled(
      "collapser_redis_settles_total",
      "Lock holders passing their answer on, by result: stored (OK answer kept for its TTL), published (not stored, sent to waiters), unheard (not stored, nobody waited), local_only (not shareable), lost_lock (the lock had expired), error.",
      "settles",
      "result",
    );
    scrapedCounter(
      registers,
      "collapser_redis_outages_total",
      "Times the shared tier went down (Redis unreachable, failing or slower than --redis-timeout).",
      () => read().outages,
    );
    new client.Gauge({
      name: "collapser_redis_shards_down",
      help:
        "Redis Cluster: masters whose keys this proxy serves locally now (gone, failing over, or without a master); 0 with one Redis.",
      registers,
      collect() {
        this.set(read().shards.down.length);
      },
    });
    scrapedCounter(
      registers,
      "collapser_redis_shard_outages_total",
      "Redis Cluster: times one master's keys went local while the rest of the tier stayed in use.",
      () => read().shards.outages,
    );
  }

  /** Exports the backend's addresses (only a backend of several, or a name, has a balancer). */
  balancer(read: () => BalancerStats): void {
    addressMetrics(this.registry, read);
  }

  /** @inheritdoc */
  call(info: CallReport): void {
    const method = this.#methods.label(info.method);
    this.#requests.inc(method, info.outcome, statusName(info.code));
    this.#requestDuration.observe(info.outcome, info.durationMs / 1000);
    if (info.wouldBe !== undefined) this.#shadow.inc({ method, would: info.wouldBe });
    if (info.stale) this.#stale.inc({ method });
    this.#cache.call(info, method);
  }

  /** Counts a policy reload. */
  reloaded(ok: boolean): void {
    this.#reloads.inc({ result: ok ? "ok" : "failed" });
  }

  /** @inheritdoc */
  backendCall(info: BackendCallReport): void {
    this.#methods.learn(info.method, info.code);
    const method = this.#methods.label(info.method);
    this.#backendCalls.inc(method, statusName(info.code));
    this.#backendLatency.observe(method, info.durationMs / 1000);
  }

  /** The exposition text for a scrape. */
  async text(): Promise<string> {
    return await this.registry.metrics();
  }
}
