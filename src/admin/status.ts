/**
 * The live status behind the admin port's page (`GET /`) and `GET /status.json`: request and backend-call
 * rates now and over the last five minutes, the collapse ratio, hot keys, flights in progress, the cache,
 * readiness and the effective configuration. It watches the proxy as an observer (a counter per call, and
 * the hot-key summary when enabled) and samples the proxy's counters once a second; a snapshot is built
 * only when someone asks.
 *
 * Nothing here holds a payload or a metadata value: keys are shown as a 12-hex-digit prefix of their
 * SHA-256, and the configuration is the start-up log's, credentials masked.
 *
 * @module
 */

import type { BackendCallReport } from "../backend/backend_calls.ts";
import type { AddressStatus } from "../backend/balancer.ts";
import type { CollapserStats } from "../core/collapser.ts";
import { type HotKey, HotKeys, KEY_PREFIX_LENGTH } from "./hot_keys.ts";
import type { Proxy, ProxyStats } from "../server/proxy.ts";
import type { CallReport, ProxyObserver } from "../server/observer.ts";
import type { TierStats } from "../fleet/shared_tier.ts";
import type { PurgeLog } from "../policy/purges.ts";
import { VERSION } from "../util/version.ts";

/** `GET /status.json`, field by field in the README ("Status page"). */
export interface StatusSnapshot {
  version: string;
  /** When this snapshot was taken (ISO 8601). */
  generatedAt: string;
  startedAt: string;
  uptimeSeconds: number;
  draining: boolean;
  /**
   * `ready`: whether the backend answered the last readiness probe (every 5 s); null before the first.
   * `addresses`: each address of a backend of several (a name or a list) and its state; null for one IP.
   */
  backend: { target: string; ready: boolean | null; addresses: AddressStatus[] | null };
  /** Over the last `windowSeconds` (10, or less just after start). */
  now: {
    windowSeconds: number;
    requestsPerSecond: number;
    backendCallsPerSecond: number;
    /** Collapsible calls per backend call made for them; null when none were made. */
    collapseRatio: number | null;
    /** Followers and cache hits per second: backend calls saved. */
    savedPerSecond: number;
  };
  /** Since the proxy started. */
  sinceStart: {
    requests: number;
    collapsible: number;
    backendCalls: number;
    saved: number;
    collapseRatio: number | null;
  };
  /** One sample per second, oldest first, up to five minutes. */
  history: { intervalSeconds: number; requestsPerSecond: number[]; backendCallsPerSecond: number[] };
  hotKeys: { enabled: boolean; capacity: number; keys: HotKey[] };
  /** Backend calls of shared flights running now; `top` the 20 with the most waiting callers. */
  flights: {
    inProgress: number;
    waiting: number;
    top: { method: string; key: string; waiters: number; ageMs: number }[];
  };
  cache: {
    entries: number;
    bytes: number;
    evictions: number;
    hits: number;
    misses: number;
    refreshes: number;
  };
  /**
   * The shared tier (`--redis`), null without one: whether it is in use now, the backend calls it saved
   * (answers from Redis or published by another proxy), and its outages.
   */
  sharedTier: { up: boolean; fromFleet: number; outages: number } | null;
  /**
   * Purges (`POST /purge`, and with `--redis` the fleet's): whether this proxy takes them (an admin token is
   * configured), how many were applied here and what they dropped, and the last 10, newest first.
   */
  purges: {
    enabled: boolean;
    total: number;
    dropped: number;
    recent: {
      at: string;
      kind: string;
      value: string;
      origin: string;
      fleetSeq: number | null;
      dropped: number;
      inFlight: number;
    }[];
  };
  /** The effective configuration, as the start-up log line has it (credentials masked). */
  config: Record<string, unknown>;
}

/** What the board reads from the running proxy. */
export interface StatusSource {
  proxyStats(): ProxyStats;
  collapserStats(): CollapserStats;
  /** Shared flights running now. */
  flights(): Iterable<{ key: string; tag: string | undefined; subscribers: number; startedAt: number }>;
  draining(): boolean;
  backendReady(timeoutMs: number): Promise<boolean>;
  backendTarget: string;
  config: Record<string, unknown>;
  /** The shared tier's counters, when there is one. */
  tierStats?(): TierStats | undefined;
  /** The backend's addresses, when it has a balancer. */
  backendAddresses?(): AddressStatus[] | undefined;
  /** The purges applied here. */
  purges?(): PurgeLog;
  /** Whether this proxy takes purges (an admin token is configured). */
  purgeEnabled?: boolean;
}

/** What the board reads from a running `proxy`; `config` is shown as it is (mask credentials first). */
export function statusSource(
  proxy: Proxy,
  config: Record<string, unknown>,
  options: { purgeEnabled?: boolean } = {},
): StatusSource {
  return {
    proxyStats: () => proxy.stats(),
    collapserStats: () => proxy.collapser.stats(),
    flights: () => proxy.collapser.flights(),
    draining: () => proxy.draining,
    backendReady: (timeoutMs) => proxy.backendReady(timeoutMs),
    backendTarget: String(config.backend ?? ""),
    config,
    tierStats: () => proxy.tier?.stats,
    backendAddresses: () => proxy.backend.balancer?.stats().addresses,
    purges: () => proxy.purges,
    purgeEnabled: options.purgeEnabled ?? false,
  };
}

/** Samples kept: five minutes at one a second. */
const HISTORY_SECONDS = 300;
/** The "now" window. */
const NOW_SECONDS = 10;
/** Hot keys and flights shown. */
const TOP = 20;
/** Purges shown. */
const RECENT_PURGES = 10;
/** Readiness is probed this often by the sampler, not per request. */
const READY_EVERY_SECONDS = 5;

interface Sample {
  at: number;
  requests: number;
  backendCalls: number;
  collapsible: number;
  collapsedCalls: number;
  saved: number;
}

/** Collects the status; an observer of the proxy. */
export class StatusBoard implements ProxyObserver {
  readonly #hotKeys: HotKeys | undefined;
  readonly #startedAt = Date.now();
  readonly #clock: () => number;
  #requests = 0;
  #source: StatusSource | undefined;
  #samples: Sample[] = [];
  #ready: boolean | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #ticks = 0;
  #config: Record<string, unknown> | undefined;

  /**
   * @param options.hotKeys counters per hot-key window; 0 turns hot-key tracking off @default {1000}
   * @param options.now monotonic clock in ms (tests pass a fake one) @default {performance.now}
   */
  constructor(options: { hotKeys?: number; now?: () => number } = {}) {
    this.#clock = options.now ?? (() => performance.now());
    const capacity = options.hotKeys ?? 1_000;
    this.#hotKeys = capacity > 0 ? new HotKeys({ capacity, now: this.#clock() }) : undefined;
  }

  /** Starts sampling `source` once a second (the timer does not keep the process alive). */
  start(source: StatusSource): void {
    clearInterval(this.#timer);
    this.#source = source;
    this.sample();
    this.#timer = setInterval(() => this.sample(), 1_000);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Replaces the configuration shown (after a policy reload). */
  showConfig(config: Record<string, unknown>): void {
    this.#config = config;
  }

  /** Stops sampling. */
  [Symbol.dispose](): void {
    clearInterval(this.#timer);
  }

  /** @inheritdoc */
  call(report: CallReport): void {
    this.#requests++;
    const role = report.outcome;
    if (report.key !== undefined && (role === "leader" || role === "follower" || role === "cache")) {
      this.#hotKeys?.record(report.method, report.key, role);
    }
  }

  /** @inheritdoc */
  backendCall(info: BackendCallReport): void {
    if (info.key !== undefined) this.#hotKeys?.backendCall(info.key, info.durationMs);
  }

  /** Takes one sample (the timer calls this once a second; tests may call it themselves). */
  sample(): void {
    const source = this.#source;
    if (source === undefined) return;
    const now = this.#clock();
    this.#hotKeys?.tick(now);
    this.#samples.push(this.#sampleOf(source, now));
    if (this.#samples.length > HISTORY_SECONDS + 1) this.#samples.shift();
    if (this.#ticks++ % READY_EVERY_SECONDS === 0) {
      source.backendReady(500).then((ready) => this.#ready = ready, () => this.#ready = false);
    }
  }

  /** The counters now. */
  #sampleOf(source: StatusSource, now: number): Sample {
    const c = source.collapserStats();
    return {
      at: now,
      requests: this.#requests,
      backendCalls: source.proxyStats().backendCalls,
      collapsible: c.leaders + c.followers + c.cacheHits,
      collapsedCalls: c.leaders + c.refreshes,
      saved: c.followers + c.cacheHits,
    };
  }

  /** The status now. */
  snapshot(): StatusSnapshot {
    const source = this.#source;
    if (source === undefined) throw new Error("StatusBoard.snapshot() before start()");
    const now = this.#clock();
    const c = source.collapserStats();
    const current = this.#sampleOf(source, now);
    const samples = this.#samples;
    // The oldest sample at most NOW_SECONDS back (the first one just after start).
    let base = samples[0] ?? current;
    for (let i = samples.length - 1; i >= 0; i--) {
      if (now - samples[i].at > NOW_SECONDS * 1000) break;
      base = samples[i];
    }
    const seconds = Math.max((now - base.at) / 1000, 0.001);
    const delta = (field: keyof Omit<Sample, "at">) => current[field] - base[field];
    const ratio = (collapsible: number, calls: number) => calls === 0 ? null : collapsible / calls;
    const rates = (field: "requests" | "backendCalls") =>
      samples.slice(1).map((s, i) =>
        (s[field] - samples[i][field]) / Math.max((s.at - samples[i].at) / 1000, 0.001)
      );
    const flights = [...source.flights()];
    return {
      version: VERSION,
      generatedAt: new Date().toISOString(),
      startedAt: new Date(this.#startedAt).toISOString(),
      uptimeSeconds: (Date.now() - this.#startedAt) / 1000,
      draining: source.draining(),
      backend: {
        target: source.backendTarget,
        ready: this.#ready,
        addresses: source.backendAddresses?.() ?? null,
      },
      now: {
        windowSeconds: seconds,
        requestsPerSecond: delta("requests") / seconds,
        backendCallsPerSecond: delta("backendCalls") / seconds,
        collapseRatio: ratio(delta("collapsible"), delta("collapsedCalls")),
        savedPerSecond: delta("saved") / seconds,
      },
      sinceStart: {
        requests: current.requests,
        collapsible: current.collapsible,
        backendCalls: current.backendCalls,
        saved: current.saved,
        collapseRatio: ratio(current.collapsible, current.collapsedCalls),
      },
      history: {
        intervalSeconds: 1,
        requestsPerSecond: rates("requests"),
        backendCallsPerSecond: rates("backendCalls"),
      },
      hotKeys: {
        enabled: this.#hotKeys !== undefined,
        capacity: this.#hotKeys?.capacity ?? 0,
        keys: this.#hotKeys?.top(TOP, now) ?? [],
      },
      flights: {
        inProgress: flights.length,
        waiting: c.waiting,
        top: flights
          .sort((a, b) => b.subscribers - a.subscribers)
          .slice(0, TOP)
          .map((f) => ({
            method: f.tag ?? "",
            key: f.key.slice(0, KEY_PREFIX_LENGTH),
            waiters: f.subscribers,
            ageMs: now - f.startedAt,
          })),
      },
      cache: {
        entries: c.cacheEntries,
        bytes: c.cacheBytes,
        evictions: c.cacheEvictions,
        hits: c.cacheHits,
        misses: c.leaders + c.followers,
        refreshes: c.refreshes,
      },
      sharedTier: sharedTier(source.tierStats?.()),
      purges: purgesOf(source),
      config: this.#config ?? source.config,
    };
  }
}

function sharedTier(stats: TierStats | undefined): StatusSnapshot["sharedTier"] {
  if (stats === undefined) return null;
  return {
    up: stats.up,
    fromFleet: stats.lookups.hit + stats.waits.answer + stats.waits.polled,
    outages: stats.outages,
  };
}

function purgesOf(source: StatusSource): StatusSnapshot["purges"] {
  const log = source.purges?.();
  if (log === undefined) return { enabled: source.purgeEnabled ?? false, total: 0, dropped: 0, recent: [] };
  const stats = log.stats;
  return {
    enabled: source.purgeEnabled ?? false,
    total: Object.values(stats.purges).reduce((a, b) => a + b, 0),
    dropped: stats.dropped,
    recent: log.recent(RECENT_PURGES).map((p) => ({
      at: new Date(p.at).toISOString(),
      kind: p.kind,
      value: p.value,
      origin: p.origin,
      fleetSeq: p.fleetSeq ?? null,
      dropped: p.dropped,
      inFlight: p.flights,
    })),
  };
}
