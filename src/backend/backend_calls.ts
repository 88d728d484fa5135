/**
 * The proxy's calls to the backend: the one detached call behind each flight of collapsed callers (the
 * leader's), and the passthrough calls that belong to one caller each. Both are counted, traced and
 * reported here, so the downstream side only decides which one a call gets.
 *
 * @module
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import type { Collapser, Flight } from "../core/collapser.ts";
import { serveStale } from "./serve_stale.ts";
import { TimeoutQueue } from "../util/timeout_queue.ts";
import { LeadCall, type LeadHost } from "./lead_call.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { log } from "../util/log.ts";
import { logStatus } from "./backend_log.ts";
import { type LeadRequest, NOT_CACHED, retention, STALE_IF } from "../policy/retention.ts";
import type { Freshness } from "../policy/freshness.ts";
import { Limiter, type LimiterOptions } from "./limiter.ts";
import { queuedStream } from "./queued_stream.ts";
import type { ClientTls } from "../wire/tls.ts";
import { startBackendSpan } from "../wire/tracing.ts";
import { requestMetadata, Upstream } from "./upstream.ts";
import type { Balancer, BalancerOptions } from "./balancer.ts";
import type { PassClient, UnaryClient } from "./clients.ts";
import { backendClients } from "./backend_clients.ts";
import { type ResponseEvent, type StatusEvent, statusEvent, type UpstreamStream } from "../wire/response.ts";

export { DEFAULT_BACKEND_TIMEOUT_MS } from "./clients.ts";

/** One finished backend call. */
export interface BackendCallReport {
  method: string;
  code: StatusCode;
  durationMs: number;
  /** The collapse key, for a collapsed call's backend call. */
  key?: string;
}

/** Counters of backend calls. */
export interface BackendStats {
  /** Backend calls started since start. */
  backendCalls: number;
  /** Backend calls running now. */
  backendInflight: number;
  /** Calls passed through (not collapsed) since start. */
  passthrough: number;
  /** Backend calls waiting for a slot now (`--max-backend-concurrency`). */
  queued: number;
  /** Calls shed because the queue was full, since start. */
  shedQueueFull: number;
  /** Calls shed because no slot came free within the queue timeout, since start. */
  shedQueueTimeout: number;
}

/** Options for {@linkcode BackendCalls}. */
export interface BackendCallsOptions {
  /** Backend target, e.g. `127.0.0.1:50051`. */
  backend: string;
  /** Bound on one collapsed backend call, in ms. */
  backendTimeoutMs: number;
  /** `"h2"`: collapsed calls over a lean raw HTTP/2 client when the target is `host:port`. @default {"h2"} */
  backendClient?: "h2" | "grpc-js";
  /** Told of every finished backend call. */
  onFinished?: (info: BackendCallReport) => void;
  /** Call the backend over TLS with this; undefined = plaintext h2c. */
  tls?: ClientTls;
  /** Bound on backend calls at once (collapsed and passed through), with its queue. @default {no bound} */
  limit?: LimiterOptions;
  /** How calls are spread when the target has several addresses (balancer.ts). @default {its defaults} */
  balancing?: Omit<BalancerOptions, "tls">;
  /** How each answer is kept (its `cache-control`, purges since its call). @default {the method's policy} */
  freshness?: Freshness;
}

/** The backend clients and the calls made through them. */
export class BackendCalls {
  /** The grpc-js client: passthrough calls, readiness, and collapsed calls to targets h2 cannot serve. */
  #upstream: PassClient;
  readonly #target: string;
  /** Collapsed calls' client when the backend is a plain `host:port` (see h2_channel.ts). */
  readonly #unary: UnaryClient | undefined;
  /** With several addresses (or a name to resolve): the balancer behind both clients. */
  readonly balancer: Balancer | undefined;
  /** What a leader's call sees of this (lead_call.ts); its backend timeouts share one timer. */
  readonly #leadHost: LeadHost;
  readonly #onFinished: BackendCallsOptions["onFinished"];
  readonly #collapser: Collapser<ResponseEvent>;
  readonly #stats = { backendCalls: 0, backendInflight: 0, passthrough: 0 };
  readonly #limiter: Limiter | undefined;
  readonly #freshness: Freshness | undefined;

  constructor(options: BackendCallsOptions, collapser: Collapser<ResponseEvent>) {
    this.#target = options.backend;
    ({ unary: this.#unary, upstream: this.#upstream, balancer: this.balancer } = backendClients(options));
    const timeouts = new TimeoutQueue(options.backendTimeoutMs);
    this.#leadHost = {
      timeouts,
      hasStale: (key) => collapser.hasStale(key),
      callStarted: (method, headers) => {
        this.#stats.backendCalls++;
        this.#stats.backendInflight++;
        return startBackendSpan(method, headers, { role: "leader" });
      },
      callEnded: (method, code, durationMs, key) => {
        this.#stats.backendInflight--;
        this.#onFinished?.({ method, code, durationMs, key });
      },
      send: ({ method, message, headers }, sink, opts) =>
        this.#unary
          ? this.#unary.call(method, message, headers, sink, opts)
          : this.#upstream.call(method, message, requestMetadata(headers, opts.traceparent), sink, opts),
      settle: (flight, request, status, held, headers) =>
        this.#settle(flight, request, status, held, headers),
      keep: (request, status, headers) => this.#keep(request, status, headers),
    };
    this.#onFinished = options.onFinished;
    this.#collapser = collapser;
    this.#limiter = options.limit && new Limiter(options.limit);
    this.#freshness = options.freshness;
  }

  /** Counters of backend calls (a snapshot). */
  get stats(): BackendStats {
    const limiter = this.#limiter;
    return {
      ...this.#stats,
      queued: limiter?.queued ?? 0,
      shedQueueFull: limiter?.shed.queue_full ?? 0,
      shedQueueTimeout: limiter?.shed.queue_timeout ?? 0,
    };
  }

  /**
   * Whether the backend can be reached now, through the raw channel when there is one: a readiness check
   * is not activity there, so checks every few seconds do not keep an idle connection open (grpc-js counts
   * them as activity, and an idle connection held open is one the backend will GOAWAY; h2_channel.ts).
   */
  ready(timeoutMs: number): Promise<boolean> {
    return this.#unary?.ready(timeoutMs) ?? this.#upstream.ready(timeoutMs);
  }

  /** The grpc-js client. */
  get upstream(): PassClient {
    return this.#upstream;
  }

  /**
   * New TLS material for the backend (a certificate reload): new connections use it. The raw channel
   * retires its session; the grpc-js client is replaced, and the old one closed, which lets the calls it
   * has in flight finish.
   */
  setTls(tls: ClientTls): void {
    if (this.balancer !== undefined) return this.balancer.setTls(tls);
    this.#unary?.setTls(tls);
    const old = this.#upstream;
    this.#upstream = new Upstream(this.#target, { tls });
    old.close();
  }

  /** Closes both clients; calls in flight end with UNAVAILABLE or CANCELLED. */
  close(): void {
    this.#upstream.close();
    this.#unary?.close();
  }

  /**
   * Counts a backend call in and starts its trace span. `ended` counts it out and ends the span; it is
   * idempotent.
   */
  #started(
    method: string,
    headers: IncomingHttpHeaders,
    role: "leader" | "passthrough",
    key?: string,
  ) {
    const startedAt = performance.now();
    this.#stats.backendCalls++;
    this.#stats.backendInflight++;
    const span = startBackendSpan(method, headers, { role });
    let running = true;
    const ended = (code: StatusCode, details = "") => {
      if (!running) return;
      running = false;
      this.#stats.backendInflight--;
      this.#onFinished?.({ method, code, durationMs: performance.now() - startedAt, key });
      span?.end(code, details);
    };
    return { span, ended };
  }

  /**
   * Starts the one backend call of a flight. It belongs to no caller: it is bounded by the backend timeout,
   * and its answer is kept as `request.policy` says. With stale-if-error on, the response headers are held
   * back until a message or the status arrives, so that an availability failure can still be answered with
   * the key's last good answer instead.
   */
  lead(flight: Flight<ResponseEvent>, request: LeadRequest): void {
    flight.tag = request.method;
    const limiter = this.#limiter;
    if (limiter === undefined) return this.#lead(flight, request, noop);
    // Past the concurrency limit the flight waits for a slot (its callers with it), or is shed.
    let granted = false;
    let acquiring = true;
    const ticket = limiter.acquire((release) => {
      granted = true;
      try {
        this.#lead(flight, request, release);
      } catch (err) {
        if (acquiring) throw err; // the limiter gives the slot back; join() answers the leader INTERNAL
        release();
        this.#settle(flight, request, statusEvent(Status.INTERNAL, `cannot call the backend: ${err}`));
      }
    }, (reason) => {
      const why = reason === "queue_full" ? "its queue is full" : "no slot came free in time";
      this.#settle(
        flight,
        request,
        statusEvent(Status.RESOURCE_EXHAUSTED, `backend concurrency limit reached and ${why}`),
      );
    });
    acquiring = false;
    if (!granted && !flight.done) {
      flight.onIdle = () => {
        // Everyone left while it waited for a slot: give the place up, nothing was sent.
        ticket.release();
        flight.finish(NOT_CACHED);
      };
    }
  }

  /**
   * Ends a flight with `status` (`held`: response headers not yet passed on; `headers`: those of the answer),
   * or with the key's stale answer when the failure is one stale-if-error covers and that answer is within
   * the grace it was kept with (the policy's, or its own `stale-if-error`).
   */
  #settle(
    flight: Flight<ResponseEvent>,
    request: LeadRequest,
    status: StatusEvent,
    held?: ResponseEvent,
    headers?: OutgoingHttpHeaders,
  ): void {
    const { method } = request;
    if (STALE_IF.has(status.code)) {
      const stale = this.#collapser.stale(request.key);
      if (stale !== undefined) {
        log.warn("backend call {method} failed ({code} {details}): answering with the last good answer", {
          method,
          code: status.code,
          details: status.details,
        });
        return serveStale(flight, stale, status);
      }
    }
    if (held !== undefined) flight.emit(held);
    logStatus(method, status);
    flight.finish(this.#keep(request, status, headers), status);
  }

  /** How the answer that ended with `status` is kept (decided once, here, as its flight finishes). */
  #keep(request: LeadRequest, status: StatusEvent, headers: OutgoingHttpHeaders | undefined) {
    return this.#freshness?.keep(request, status.code, { headers, trailers: status.trailers }) ??
      retention(request.policy, status.code);
  }

  /** The leader's backend call itself (lead_call.ts); `release` gives its concurrency slot back when it ends. */
  #lead(flight: Flight<ResponseEvent>, request: LeadRequest, release: () => void): void {
    new LeadCall(this.#leadHost, flight, request, release);
  }

  /**
   * Opens a passthrough call: the caller's own, with its deadline and metadata. Past the concurrency limit
   * it opens when a slot is granted (what the caller sends meanwhile waits, and the caller is paused), or
   * ends with RESOURCE_EXHAUSTED when shed.
   */
  pass(
    method: string,
    headers: IncomingHttpHeaders,
    deadline: number | undefined,
    sink: (e: ResponseEvent) => void,
  ): UpstreamStream {
    this.#stats.passthrough++;
    const limiter = this.#limiter;
    if (limiter === undefined) return this.#pass(method, headers, deadline, sink, noop);
    return queuedStream(
      limiter,
      (release) => this.#pass(method, headers, deadline, sink, release),
      () => sink(statusEvent(Status.RESOURCE_EXHAUSTED, "backend concurrency limit reached; call shed")),
    );
  }

  /** The passthrough call itself; `release` gives its concurrency slot back when it ends. */
  #pass(
    method: string,
    headers: IncomingHttpHeaders,
    deadline: number | undefined,
    sink: (e: ResponseEvent) => void,
    release: () => void,
  ): UpstreamStream {
    const { span, ended } = this.#started(method, headers, "passthrough");
    const start = () =>
      this.#upstream.stream(method, requestMetadata(headers, span?.traceparent), (event) => {
        if (event.type === "status") {
          ended(event.code, event.details);
          release();
        }
        sink(event);
      }, { deadline });
    const stream = span ? span.run(start) : start();
    return {
      ...stream,
      cancel: () => {
        ended(Status.CANCELLED);
        release();
        stream.cancel();
      },
    };
  }
}

function noop(): void {}
