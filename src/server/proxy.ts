/**
 * The downstream side: a raw `node:http2` server that speaks the gRPC wire for any method. Each call is a
 * {@linkcode DownstreamCall} (downstream_call.ts), which collapses it or passes it through by its method's
 * policy; the backend calls themselves are made by {@linkcode BackendCalls} (backend_calls.ts).
 *
 * Why raw HTTP/2 rather than grpc-js's Server: a transparent proxy must accept methods it has no .proto
 * for, and grpc-js's Server answers UNIMPLEMENTED to unregistered paths.
 *
 * @module
 */

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { BackendCalls, type BackendStats, DEFAULT_BACKEND_TIMEOUT_MS } from "../backend/backend_calls.ts";
import type { LimiterOptions } from "../backend/limiter.ts";
import { Collapser, DEFAULT_CACHE_TTL_MS } from "../core/collapser.ts";
import { DownstreamCall } from "./downstream_call.ts";
import { onError } from "./call_streams.ts";
import type { CallHost } from "./call_host.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, encodeGrpcMessage, Status } from "../wire/grpc_wire.ts";
import { log } from "../util/log.ts";
import { Policy } from "../policy/policy.ts";
import { ShadowLedger } from "../core/shadow.ts";
import { type ClientTls, peerIdentity, serverSecureContext, type ServerTls } from "../wire/tls.ts";
import type { PassClient } from "../backend/clients.ts";
import type { BalancerOptions } from "../backend/balancer.ts";
import { parseTarget } from "../backend/target.ts";
import { type ResponseEvent, responseEventBytes } from "../wire/response.ts";
import type { RedisConfig } from "../fleet/redis_config.ts";
import { SharedTier } from "../fleet/shared_tier.ts";
import { createHash } from "node:crypto";
import type { CallReport, ProxyObserver } from "./observer.ts";
import { Freshness } from "../policy/freshness.ts";
import { PurgeLog, type PurgeTarget } from "../policy/purges.ts";
import { applyPurge, type PurgeResult } from "./purge.ts";

/** Options for {@linkcode Proxy.start}. */
export interface ProxyOptions {
  /** Backend target, e.g. `127.0.0.1:50051`. */
  backend: string;
  /** Address to listen on. @default {"0.0.0.0"} */
  host?: string;
  /** Port to listen on; 0 picks a free one. @default {0} */
  port?: number;
  /**
   * Per-method policy (collapse or not, TTL, key metadata, ...). Swap it later with
   * {@linkcode Proxy.policy}. @default {new Policy({ ttlMs: cacheTtlMs, keyHeaders })}
   */
  policy?: Policy;
  /** Shorthand, when no `policy` is given: the cache TTL of every method, in ms. @default {100} */
  cacheTtlMs?: number;
  /** Shorthand, when no `policy` is given: metadata always in the key besides authorization. @default {[]} */
  keyHeaders?: readonly string[];
  /** Bound on one collapsed backend call, in ms. @default {10_000} */
  backendTimeoutMs?: number;
  /** Largest request message accepted, in bytes. @default {4 MiB} */
  maxMessageBytes?: number;
  /**
   * Shadow mode: collapse nothing, pass every call through, and report what each collapsible call would
   * have been (leader, follower, cache). @default {false}
   */
  shadow?: boolean;
  /**
   * Client for collapsed backend calls: `"h2"`, a lean raw HTTP/2 client, when the backend is a plain
   * `host:port`; `"grpc-js"` always uses grpc-js (as passthrough calls and other targets do). @default {"h2"}
   */
  backendClient?: "h2" | "grpc-js";
  /** Most answers cached. @default {10_000} */
  cacheMaxEntries?: number;
  /** Most bytes of answers cached. @default {64 MiB} */
  cacheMaxBytes?: number;
  /** Clock for the cache, in ms (tests pass a fake one). @default {performance.now} */
  now?: () => number;
  /**
   * Serve gRPC over TLS (ALPN h2) with this certificate; with a client CA, clients must present a
   * certificate it signed (mTLS), and its identity becomes part of the collapse key. @default {plaintext h2c}
   */
  tls?: ServerTls;
  /** Call the backend over TLS with this. @default {plaintext h2c} */
  backendTls?: ClientTls;
  /**
   * Bound on backend calls at once (collapsed and passed through): calls past it wait in a bounded queue
   * for a bounded time, then get RESOURCE_EXHAUSTED. @default {no bound}
   */
  backendLimit?: LimiterOptions;
  /**
   * A fleet that collapses as one: share answers and locks with other proxies through this Redis (see
   * shared_tier.ts). @default {this proxy collapses alone}
   */
  redis?: RedisConfig;
  /** Bind the port with SO_REUSEPORT, so that several processes can share it. @default {false} */
  reusePort?: boolean;
  /** Told of every finished call and backend call (the seam for metrics). */
  observer?: ProxyObserver;
  /** A backend of several addresses: how calls are spread, ejected and retried. @default {balancer.ts's} */
  balancing?: Omit<BalancerOptions, "tls">;
  /** Say how each collapsible call's answer was served, in a `cache-status` trailer. @default {true} */
  cacheStatus?: boolean;
  /** With `redis`: how often the fleet's purge number is checked, in ms. @default {1000} */
  purgeSyncMs?: number;
}

/** Counters of the proxy itself, beside {@linkcode Collapser.stats}. */
export interface ProxyStats extends BackendStats {
  /** Downstream calls not yet answered. */
  activeCalls: number;
  /** Client connections accepted since start. */
  connections: number;
}

const GRPC_CONTENT_TYPE = "application/grpc";
/**
 * Connection-level flow-control window granted to each client, in bytes. At HTTP/2's default (64 KiB) a
 * herd of 10,000 calls on one connection arrived in two waves: the second waited for WINDOW_UPDATEs that
 * the event loop, busy answering the first, sent late — past a 200 ms TTL, so the herd cost two backend
 * calls. With 8 MiB all 10,000 requests arrive at once (`deno task demo --calls 10000 --delay 50ms
 * --cache-ttl 200ms`: 1 backend call; 2 without this). Per-stream windows stay at the default, so one
 * stream still cannot take more than 64 KiB.
 */
const CONNECTION_WINDOW_BYTES = 8 << 20;

/** A running proxy. */
export class Proxy implements CallHost {
  readonly #server: http2.Http2Server | http2.Http2SecureServer;
  /** With mTLS: each session's verified client identity, read once per connection. */
  readonly #identities: WeakMap<http2.Http2Session, string | undefined> | undefined;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #observer: ProxyObserver | undefined;
  readonly #host: string;
  readonly #listenPort: number;
  /** The collapsing core (exposed for stats and tests). */
  readonly collapser: Collapser<ResponseEvent>;
  /** The backend clients and calls. */
  readonly backend: BackendCalls;
  /** Shadow mode's ledger; undefined when calls are really collapsed. */
  readonly shadow: ShadowLedger | undefined;
  /** Largest request message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** The shared tier (Redis), when one is configured. */
  tier: SharedTier | undefined;
  /** The purges applied here (and, with Redis, the fleet's): answers are checked against them. */
  readonly purges: PurgeLog = new PurgeLog();
  /** How each answer is kept (the method's policy, its `cache-control`, purges); holds the counters. */
  readonly freshness: Freshness = new Freshness(this.purges);
  /** Whether answers say how they were served (`cache-status`). */
  readonly cacheStatus: boolean;
  /** The policy new calls get; assign a new one to reload (calls in progress keep theirs). */
  policy: Policy;
  #activeCalls = 0;
  #connections = 0;
  #draining = false;
  #idle: PromiseWithResolvers<void> | undefined;
  #port = 0;

  private constructor(options: ProxyOptions) {
    this.#host = options.host ?? "0.0.0.0";
    this.#listenPort = options.port ?? 0;
    this.#observer = options.observer;
    this.cacheStatus = options.cacheStatus ?? true;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.policy = options.policy ??
      new Policy({ ttlMs: options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS, keyHeaders: options.keyHeaders });
    this.collapser = new Collapser<ResponseEvent>({
      maxEntries: options.cacheMaxEntries,
      maxBytes: options.cacheMaxBytes,
      now: options.now,
      sizeOf: responseEventBytes,
    });
    this.shadow = options.shadow
      ? new ShadowLedger({ maxEntries: options.cacheMaxEntries, now: options.now })
      : undefined;
    this.backend = new BackendCalls({
      backend: options.backend,
      backendTimeoutMs: options.backendTimeoutMs ?? DEFAULT_BACKEND_TIMEOUT_MS,
      backendClient: options.backendClient,
      onFinished: this.#observer && ((info) => this.#observer!.backendCall(info)),
      tls: options.backendTls,
      limit: options.backendLimit,
      balancing: options.balancing,
      freshness: this.freshness,
    }, this.collapser);
    const serverOptions: http2.ServerOptions = {
      // Each collapsed follower is a stream; allow large herds on one connection.
      settings: { maxConcurrentStreams: 1_000_000 },
      maxSessionMemory: 512,
    };
    const tls = options.tls;
    this.#server = tls === undefined
      ? http2.createServer(serverOptions)
      : http2.createSecureServer({ ...serverOptions, ...serverSecureContext(tls), ALPNProtocols: ["h2"] });
    this.#identities = tls?.ca === undefined ? undefined : new WeakMap();
    this.#server.on("tlsClientError", (err: Error) => {
      // A client without a valid certificate (mTLS) or speaking something else: refused at the handshake.
      log.debug("TLS handshake refused: {error}", { error: err.message });
    });
    this.#server.on("session", (session: http2.ServerHttp2Session) => {
      this.#connections++;
      this.#identities?.set(session, peerIdentity(session.socket));
      this.#sessions.add(session);
      try {
        session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      } catch {
        // closed meanwhile
      }
      session.on("close", () => this.#sessions.delete(session));
      session.on("error", (err) => log.debug("client session error: {error}", { error: String(err) }));
    });
    this.#server.on(
      "stream",
      (stream, headers) => this.#onStream(stream as http2.ServerHttp2Stream, headers),
    );
  }

  /**
   * The verified client identity of `session` (mTLS), undefined without one; callers with different
   * identities never share an answer.
   */
  identityOf(session: http2.Http2Session | undefined): string | undefined {
    return session === undefined ? undefined : this.#identities?.get(session);
  }

  /**
   * New TLS material (a certificate reload): new connections get it; connections and calls already open
   * keep theirs. Only what is given changes.
   */
  reloadTls(material: { tls?: ServerTls; backendTls?: ClientTls }): void {
    if (material.tls !== undefined) {
      if (!("setSecureContext" in this.#server)) throw new Error("the proxy does not serve TLS");
      if ((material.tls.ca === undefined) !== (this.#identities === undefined)) {
        // Whether clients must present certificates (and are keyed by them) is fixed at start-up.
        throw new Error("a reload cannot turn client certificates (mTLS) on or off: restart the proxy");
      }
      this.#server.setSecureContext(serverSecureContext(material.tls));
    }
    if (material.backendTls !== undefined) this.backend.setTls(material.backendTls);
  }

  /**
   * Starts a proxy and resolves once it listens. With `redis`, the shared tier starts first; a Redis that
   * does not answer yet does not stop the proxy (it collapses alone until Redis does).
   */
  static async start(options: ProxyOptions): Promise<Proxy> {
    const proxy = new Proxy(options);
    await proxy.backend.balancer?.start(); // the first resolution of the backend's names
    const redis = options.redis;
    if (redis !== undefined) {
      // Loaded only when asked for: without the tier no Redis code runs.
      const { openLink } = await import("../fleet/open_link.ts");
      proxy.tier = new SharedTier(await openLink(redis), {
        prefix: redis.prefix,
        // Pub/sub ignores the database number, and two services can have methods of the same name: a fleet
        // shares only with proxies on the same database in front of the same backend target.
        // The service, not its addresses: the same whatever a name resolves to (target.ts).
        scope: `${redis.db}:${
          createHash("sha256").update(parseTarget(options.backend).service).digest("hex").slice(0, 12)
        }`,
        maxBytes: redis.maxBytes,
        timeoutMs: redis.timeoutMs,
        lockMs: redis.lockTtlMs,
        freshness: proxy.freshness,
        purges: proxy.purges,
        onPurge: (target, fleetSeq, at) =>
          applyPurge(proxy.collapser, proxy.purges, target, { origin: "fleet", fleetSeq, at }),
        purgeSyncMs: options.purgeSyncMs,
      });
      await proxy.tier.start();
    }
    try {
      await new Promise<void>((resolve, reject) => {
        proxy.#server.once("error", reject);
        const listening = () => {
          proxy.#server.off("error", reject);
          resolve();
        };
        if (options.reusePort) {
          proxy.#server.listen({ port: proxy.#listenPort, host: proxy.#host, reusePort: true }, listening);
        } else proxy.#server.listen(proxy.#listenPort, proxy.#host, listening);
      });
    } catch (err) {
      await proxy.tier?.close();
      throw err;
    }
    proxy.#port = (proxy.#server.address() as AddressInfo).port;
    return proxy;
  }

  /** The port the proxy listens on. */
  get port(): number {
    return this.#port;
  }

  /** The backend's grpc-js client (for readiness checks). */
  get upstream(): PassClient {
    return this.backend.upstream;
  }

  /** Whether the backend can be reached now; resolves within `timeoutMs`. */
  backendReady(timeoutMs: number): Promise<boolean> {
    return this.backend.ready(timeoutMs);
  }

  /** A snapshot of the proxy's own counters. */
  stats(): ProxyStats {
    return { ...this.backend.stats, activeCalls: this.#activeCalls, connections: this.#connections };
  }

  /**
   * Drops the cached answers `target` names, here and (with Redis) across the fleet: see purges.ts. With
   * Redis unreachable the purge is applied here only, and the result says why in `fleetError`.
   */
  async purge(target: PurgeTarget): Promise<PurgeResult> {
    const at = Date.now();
    let fleet: PurgeResult["fleet"] = null;
    let fleetError: string | undefined;
    if (this.tier !== undefined) {
      try {
        fleet = await this.tier.purge(target, at);
      } catch (err) {
        fleetError = `the purge reached this proxy only: ${(err as Error).message}`;
      }
    }
    const record = applyPurge(this.collapser, this.purges, target, {
      origin: "admin",
      fleetSeq: fleet?.seq,
      at,
    });
    const { kind, value, dropped, flights } = record;
    return { kind, value, dropped, inFlight: flights, fleet, ...(fleetError ? { fleetError } : {}) };
  }

  /** Whether the proxy is draining: it takes no new calls. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Graceful shutdown, first half: stop accepting connections and send every client GOAWAY (streams a
   * client opens after it are refused at the HTTP/2 level; one that slips past gets UNAVAILABLE), then
   * resolve once every call in progress has been answered (true) or `timeoutMs` has passed (false). Call
   * {@linkcode close} afterwards.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.#draining = true;
    this.#server.close();
    for (const session of this.#sessions) if (!session.closed) session.close();
    if (this.#activeCalls === 0) return true;
    this.#idle ??= Promise.withResolvers<void>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs));
    try {
      return await Promise.race([this.#idle.promise.then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops listening, resets open calls and closes the backend clients. */
  async close(): Promise<void> {
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const session of this.#sessions) session.destroy();
    await closed;
    this.backend.close();
    await this.tier?.close();
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const startedAt = performance.now();
    stream.on("error", onError);
    const contentType = headers["content-type"];
    if (
      headers[":method"] !== "POST" || typeof contentType !== "string" ||
      !contentType.startsWith(GRPC_CONTENT_TYPE)
    ) {
      // The gRPC spec: a request that is not gRPC gets HTTP 415. Its body is read and dropped, or a client
      // still sending would block forever on a flow-control window nobody opens. (RST_STREAM(NO_ERROR)
      // after the response is the RFC 9113 §8.1 way, but Deno 2.8.3's stream.close() does not end the
      // client's side: measured, the client stream stayed open.)
      if (!stream.destroyed) {
        stream.respond({
          ":status": 415,
          "grpc-status": String(Status.INTERNAL),
          "grpc-message": encodeGrpcMessage(
            `invalid gRPC request content-type ${JSON.stringify(contentType)}`,
          ),
        }, { endStream: true });
        stream.resume();
      }
      return;
    }
    // Active until its stream closes (its trailers have left), which drain() awaits: begin() listens first.
    const call = new DownstreamCall(this, stream, headers, startedAt);
    this.#activeCalls++;
    call.begin();
  }

  /** @internal A call's stream closed (for {@linkcode DownstreamCall}): one call fewer to drain. */
  streamClosed(): void {
    if (--this.#activeCalls === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }

  /** @internal Reports a finished call (for {@linkcode DownstreamCall}). */
  callFinished(report: CallReport): void {
    this.#observer?.call(report);
    log.debug("call {method} {role} {code} in {durationMs} ms", () => ({
      method: report.method,
      key: report.key?.slice(0, 12),
      role: report.outcome,
      wouldBe: report.wouldBe,
      stale: report.stale || undefined,
      served: report.served,
      code: report.code,
      durationMs: Math.round(report.durationMs * 1000) / 1000,
    }));
  }
}
