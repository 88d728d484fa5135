/**
 * The downstream side: a raw `node:http2` server that speaks the gRPC wire for any method, decides per call
 * whether it may be collapsed, and either joins the collapser or pumps the call through to the backend.
 *
 * Why raw HTTP/2 rather than grpc-js's Server: a transparent proxy must accept methods it has no .proto
 * for, and grpc-js's Server answers UNIMPLEMENTED to unregistered paths.
 *
 * @module
 */

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { corkTurn } from "./cork.ts";
import { H2Channel, plainAuthority } from "./h2_channel.ts";
import { Collapser, type Flight, type Membership } from "./collapser.ts";
import { DEFAULT_BACKEND_TIMEOUT_MS, DEFAULT_CACHE_DURATION_MS } from "./config.ts";
import { formatDuration } from "./duration.ts";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeFrame,
  encodeGrpcMessage,
  FrameDecoder,
  GrpcWireError,
  parseGrpcTimeout,
  Status,
  type StatusCode,
} from "./grpc_wire.ts";
import { collapseKey, DEFAULT_KEY_HEADERS } from "./key.ts";
import { log } from "./log.ts";
import { recordSharedCall, startBackendSpan, TRACING_ENABLED } from "./tracing.ts";
import type { SpanContext } from "@opentelemetry/api";
import {
  requestMetadata,
  type ResponseEvent,
  single,
  type StatusEvent,
  statusEvent,
  Upstream,
  type UpstreamCall,
  type UpstreamStream,
} from "./upstream.ts";

/** How a call was served, for logs and metrics. */
export type Outcome = "leader" | "follower" | "cache" | "passthrough" | "health" | "rejected";

/** Options for {@linkcode Proxy.start}. */
export interface ProxyOptions {
  /** Backend target, e.g. `127.0.0.1:50051`. */
  backend: string;
  /** Address to listen on. @default {"0.0.0.0"} */
  host?: string;
  /** Port to listen on; 0 picks a free one. @default {0} */
  port?: number;
  /** TTL of cached answers in ms; 0 = collapse only. @default {100} */
  cacheTtlMs?: number;
  /** Bound on one collapsed backend call, in ms. @default {10_000} */
  backendTimeoutMs?: number;
  /** Request metadata keys that are part of the collapse key. @default {["authorization"]} */
  keyHeaders?: readonly string[];
  /** Largest request message accepted, in bytes. @default {4 MiB} */
  maxMessageBytes?: number;
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
  /** Told of every finished call and backend call (the seam for metrics). */
  observer?: ProxyObserver;
}

/** Receives one report per finished call and per finished backend call. Must not throw. */
export interface ProxyObserver {
  /** A downstream call ended. */
  call(info: { method: string; outcome: Outcome; code: StatusCode; durationMs: number }): void;
  /** A backend call ended (collapsed or passed through). */
  backendCall(info: { method: string; code: StatusCode; durationMs: number }): void;
}

/** Counters of the proxy itself, beside {@linkcode Collapser.stats}. */
export interface ProxyStats {
  /** Backend calls started since start. */
  backendCalls: number;
  /** Backend calls running now. */
  backendInflight: number;
  /** Calls passed through (not collapsed) since start. */
  passthrough: number;
  /** Downstream calls not yet answered. */
  activeCalls: number;
}

/** Statuses that mean the backend failed (rather than answered no): logged at warn. */
const BACKEND_FAILURES: ReadonlySet<StatusCode> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** The standard gRPC health check method, answered by the proxy itself for the empty service name. */
export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

const GRPC_CONTENT_TYPE = "application/grpc";
const SUPPORTED_ENCODINGS = new Set(["identity", "gzip", "deflate"]);

/** A running proxy. */
export class Proxy {
  readonly #server: http2.Http2Server;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #upstream: Upstream;
  /** Collapsed calls' client when the backend is a plain `host:port` (see h2_channel.ts); else grpc-js. */
  readonly #unary: H2Channel | undefined;
  readonly #options: Required<
    Omit<ProxyOptions, "now" | "observer" | "cacheMaxEntries" | "cacheMaxBytes" | "backendClient">
  >;
  readonly #observer: ProxyObserver | undefined;
  /** The collapsing core (exposed for stats and tests). */
  readonly collapser: Collapser<ResponseEvent>;
  #stats: ProxyStats = { backendCalls: 0, backendInflight: 0, passthrough: 0, activeCalls: 0 };
  #draining = false;
  #idle: PromiseWithResolvers<void> | undefined;
  #port = 0;

  private constructor(options: ProxyOptions) {
    this.#options = {
      backend: options.backend,
      host: options.host ?? "0.0.0.0",
      port: options.port ?? 0,
      cacheTtlMs: options.cacheTtlMs ?? DEFAULT_CACHE_DURATION_MS,
      backendTimeoutMs: options.backendTimeoutMs ?? DEFAULT_BACKEND_TIMEOUT_MS,
      keyHeaders: (options.keyHeaders ?? DEFAULT_KEY_HEADERS).map((h) => h.toLowerCase()),
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    };
    this.#observer = options.observer;
    this.collapser = new Collapser<ResponseEvent>({
      ttlMs: this.#options.cacheTtlMs,
      maxEntries: options.cacheMaxEntries,
      maxBytes: options.cacheMaxBytes,
      now: options.now,
      sizeOf: eventBytes,
    });
    this.#upstream = new Upstream(this.#options.backend);
    const authority = options.backendClient === "grpc-js" ? undefined : plainAuthority(this.#options.backend);
    this.#unary = authority === undefined ? undefined : new H2Channel(authority);
    this.#server = http2.createServer({
      // Each collapsed follower is a stream; allow large herds on one connection.
      settings: { maxConcurrentStreams: 1_000_000 },
      maxSessionMemory: 512,
    });
    this.#server.on("session", (session) => {
      this.#sessions.add(session);
      session.on("close", () => this.#sessions.delete(session));
      session.on("error", (err) => log.debug("client session error: {error}", { error: String(err) }));
    });
    this.#server.on(
      "stream",
      (stream, headers) => this.#onStream(stream as http2.ServerHttp2Stream, headers),
    );
  }

  /** Starts a proxy and resolves once it listens. */
  static async start(options: ProxyOptions): Promise<Proxy> {
    const proxy = new Proxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(proxy.#options.port, proxy.#options.host, () => {
        proxy.#server.off("error", reject);
        resolve();
      });
    });
    proxy.#port = (proxy.#server.address() as AddressInfo).port;
    return proxy;
  }

  /** The port the proxy listens on. */
  get port(): number {
    return this.#port;
  }

  /** The backend client (for readiness checks). */
  get upstream(): Upstream {
    return this.#upstream;
  }

  /** A snapshot of the proxy's own counters. */
  stats(): ProxyStats {
    return { ...this.#stats };
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
    if (this.#stats.activeCalls === 0) return true;
    this.#idle ??= Promise.withResolvers<void>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs));
    try {
      return await Promise.race([this.#idle.promise.then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops listening, resets open calls and closes the backend channel. */
  async close(): Promise<void> {
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const session of this.#sessions) session.destroy();
    await closed;
    this.#upstream.close();
    this.#unary?.close();
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const startedAt = performance.now();
    stream.on("error", (err) => log.debug("client stream error: {error}", { error: String(err) }));
    const contentType = headers["content-type"];
    if (
      headers[":method"] !== "POST" || typeof contentType !== "string" ||
      !contentType.startsWith(GRPC_CONTENT_TYPE)
    ) {
      // The gRPC spec: a request that is not gRPC gets HTTP 415.
      if (!stream.destroyed) {
        stream.respond({
          ":status": 415,
          "grpc-status": String(Status.INTERNAL),
          "grpc-message": encodeGrpcMessage(
            `invalid gRPC request content-type ${JSON.stringify(contentType)}`,
          ),
        }, { endStream: true });
      }
      return;
    }
    const method = headers[":path"] ?? "";
    // A call counts as active until its HTTP/2 stream has closed, i.e. its trailers have left: draining
    // waits for that, not merely for the status to be decided.
    this.#stats.activeCalls++;
    stream.once("close", () => {
      if (--this.#stats.activeCalls === 0 && this.#idle) {
        this.#idle.resolve();
        this.#idle = undefined;
      }
    });
    new DownstreamCall(this, stream, headers, method, startedAt).begin();
  }

  /** @internal */
  _options() {
    return this.#options;
  }

  /** @internal Reports a finished call. */
  _finished(method: string, outcome: Outcome, code: StatusCode, startedAt: number, key?: string): void {
    const durationMs = performance.now() - startedAt;
    this.#observer?.call({ method, outcome, code, durationMs });
    log.debug("call {method} {role} {code} in {durationMs} ms", () => ({
      method,
      key: key?.slice(0, 12),
      role: outcome,
      code,
      durationMs: Math.round(durationMs * 1000) / 1000,
    }));
  }

  /**
   * Counts a backend call in, starts its trace span, and builds its metadata (the caller's, with the span as
   * `traceparent`). `ended` counts it out and ends the span; it is idempotent.
   */
  #backendCallStarted(method: string, headers: http2.IncomingHttpHeaders, role: "leader" | "passthrough") {
    const startedAt = performance.now();
    this.#stats.backendCalls++;
    this.#stats.backendInflight++;
    const span = startBackendSpan(method, headers, { role });
    let running = true;
    const ended = (code: StatusCode, details = "") => {
      if (!running) return;
      running = false;
      this.#stats.backendInflight--;
      this.#observer?.backendCall({ method, code, durationMs: performance.now() - startedAt });
      span?.end(code, details);
    };
    return { span, ended };
  }

  /** @internal Starts the one backend call of a flight. */
  _lead(
    flight: Flight<ResponseEvent>,
    method: string,
    message: Uint8Array,
    headers: http2.IncomingHttpHeaders,
  ): void {
    const timeoutMs = this.#options.backendTimeoutMs;
    let messages = 0;
    const { span, ended } = this.#backendCallStarted(method, headers, "leader");
    if (span) flight.emit({ type: "origin", spanContext: span.spanContext });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = (code: StatusCode, details?: string) => {
      clearTimeout(timer);
      ended(code, details);
    };
    const sink = (event: ResponseEvent) => {
      if (event.type === "message" && ++messages === 2) {
        // A second response message: this is a stream. Stop sharing it (nobody new joins, nothing is
        // cached), keep serving those already here, and let it run past BACKEND_TIMEOUT: a watch-style
        // stream lives as long as its callers do.
        flight.unshare();
        clearTimeout(timer);
        if (flight.subscribers === 0) {
          // Everyone left while it was still shared: nobody can join a stream, so nobody will read it.
          done(Status.CANCELLED, "no callers left");
          call.cancel();
          flight.finish({ cache: false });
          return;
        }
      }
      // The backend call is counted out before its callers are answered, so their metrics see its method.
      if (event.type === "status") done(event.code, event.details);
      flight.emit(event);
      if (event.type === "status") {
        if (BACKEND_FAILURES.has(event.code)) {
          log.warn("backend call {method} failed: {code} {details}", {
            method,
            code: event.code,
            details: event.details,
          });
        } else if (event.code !== Status.OK) {
          // An application answer (NOT_FOUND, INVALID_ARGUMENT, ...): one line per call would flood at warn.
          log.debug("backend call {method} answered {code} {details}", () => ({
            method,
            code: event.code,
            details: event.details,
          }));
        }
        flight.finish({ cache: event.code === Status.OK });
      }
    };
    const start = () =>
      this.#unary
        ? this.#unary.call(method, message, headers, sink, { traceparent: span?.traceparent })
        : this.#upstream.call(method, message, backendMetadata(headers, span?.traceparent), sink);
    let call: UpstreamCall;
    try {
      call = span ? span.run(start) : start();
    } catch (err) {
      ended(Status.INTERNAL, String(err));
      throw err;
    }
    if (!flight.done) {
      timer = setTimeout(() => {
        done(Status.DEADLINE_EXCEEDED, "backend timeout");
        call.cancel();
        const timeout = formatDuration(timeoutMs);
        log.warn("backend call {method} exceeded the backend timeout ({timeout})", { method, timeout });
        flight.emit(
          statusEvent(Status.DEADLINE_EXCEEDED, `backend call exceeded the backend timeout (${timeout})`),
        );
        flight.finish({ cache: false });
      }, timeoutMs);
    }
    flight.onIdle = () => {
      // Everyone left. A shared call goes on to fill the cache (bounded by the backend timeout); a stream
      // that nobody can join again has no reason to run.
      if (flight.shared) return;
      done(Status.CANCELLED);
      call.cancel();
      flight.finish({ cache: false });
    };
  }

  /** @internal Opens a passthrough call. */
  _pass(
    method: string,
    headers: http2.IncomingHttpHeaders,
    deadline: number | undefined,
    sink: (e: ResponseEvent) => void,
  ): UpstreamStream {
    this.#stats.passthrough++;
    const { span, ended } = this.#backendCallStarted(method, headers, "passthrough");
    const start = () =>
      this.#upstream.stream(method, backendMetadata(headers, span?.traceparent), (event) => {
        if (event.type === "status") ended(event.code, event.details);
        sink(event);
      }, { deadline });
    const stream = span ? span.run(start) : start();
    return {
      ...stream,
      cancel: () => {
        ended(Status.CANCELLED);
        stream.cancel();
      },
    };
  }
}

/** The caller's metadata for a grpc-js backend call, with the backend span as `traceparent`. */
function backendMetadata(headers: http2.IncomingHttpHeaders, traceparent: string | undefined) {
  const metadata = requestMetadata(headers);
  if (traceparent !== undefined) metadata.set("traceparent", traceparent);
  return metadata;
}

/** Bytes a cached event holds (messages dominate; headers counted roughly). */
function eventBytes(event: ResponseEvent): number {
  return event.type === "message" ? event.frame.byteLength : 128;
}

/** One downstream call: reads the request, picks collapse or passthrough, writes the response. */
class DownstreamCall {
  readonly #proxy: Proxy;
  readonly #stream: http2.ServerHttp2Stream;
  readonly #headers: http2.IncomingHttpHeaders;
  readonly #method: string;
  readonly #startedAt: number;
  #mode: "reading" | "collapse" | "pass" | "done" = "reading";
  #outcome: Outcome = "rejected";
  #buffered: Uint8Array[] = [];
  #ended = false;
  #decideScheduled = false;
  #headersSent = false;
  #trailers: http2.OutgoingHttpHeaders | undefined;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #membership: Membership | undefined;
  #key: string | undefined;
  #requestPaused = false;
  #responsePaused = false;
  #origin: SpanContext | undefined;
  #upstream: UpstreamStream | undefined;

  constructor(
    proxy: Proxy,
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    method: string,
    startedAt: number,
  ) {
    this.#proxy = proxy;
    this.#stream = stream;
    this.#headers = headers;
    this.#method = method;
    this.#startedAt = startedAt;
  }

  begin(): void {
    const stream = this.#stream;
    if (this.#proxy.draining && this.#method !== HEALTH_CHECK_METHOD) {
      return this.#finish(statusEvent(Status.UNAVAILABLE, "proxy is shutting down"));
    }
    let timeoutMs: number | undefined;
    try {
      timeoutMs = parseGrpcTimeout(single(this.#headers["grpc-timeout"]));
    } catch (err) {
      return this.#fail(err);
    }
    const encoding = single(this.#headers["grpc-encoding"]);
    if (encoding !== undefined && !SUPPORTED_ENCODINGS.has(encoding)) {
      return this.#finish(
        statusEvent(Status.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported`),
        { "grpc-accept-encoding": "identity,gzip,deflate" },
      );
    }
    if (this.#method === "") return this.#finish(statusEvent(Status.UNIMPLEMENTED, "missing :path"));
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    if (timeoutMs !== undefined) {
      if (timeoutMs <= MAX_TIMER_MS) {
        // Longer (grpc-timeout allows up to 99999999H) cannot be a timer: setTimeout would fire at once.
        // Such a deadline is far beyond any call; the backend still gets it for passthrough calls.
        this.#deadlineTimer = setTimeout(() => {
          this.#deadlineTimer = undefined;
          this.#finish(statusEvent(Status.DEADLINE_EXCEEDED, "deadline exceeded"));
        }, timeoutMs);
      }
    }
    const decoder = new FrameDecoder({ encoding, maxMessageBytes: this.#proxy._options().maxMessageBytes });
    stream.on("data", (chunk: Uint8Array) => {
      if (this.#mode === "done" || this.#mode === "collapse") return;
      let messages: Uint8Array[];
      try {
        messages = decoder.push(chunk);
      } catch (err) {
        return this.#fail(err);
      }
      if (this.#mode === "pass") {
        for (const message of messages) this.#write(message);
        return;
      }
      this.#buffered.push(...messages);
      if (this.#buffered.length > 1) this.#startPass(deadline);
      else if (this.#buffered.length === 1 && !this.#decideScheduled) {
        // The wire does not say whether a call is unary. A call may be collapsed only if its request
        // ends with its first message; a streaming client (e.g. a bidi ping-pong waiting for a reply)
        // does not end it. END_STREAM that came in the same read has been seen by the next macrotask.
        this.#decideScheduled = true;
        setImmediate(() => {
          if (this.#mode === "reading" && !this.#ended) this.#startPass(deadline);
        });
      }
    });
    stream.on("end", () => {
      this.#ended = true;
      if (this.#mode === "done") return;
      try {
        decoder.finish();
      } catch (err) {
        return this.#fail(err);
      }
      if (this.#mode === "pass") this.#upstream?.end();
      else if (this.#mode === "reading") {
        if (this.#buffered.length === 1) this.#collapse(this.#buffered[0]);
        else this.#startPass(deadline);
      }
    });
    stream.on("close", () => {
      // The client went away (RST_STREAM, connection lost) or the call ended normally.
      if (this.#mode !== "done") {
        this.#finish(statusEvent(Status.CANCELLED, "client cancelled"), undefined, false);
      }
    });
  }

  #collapse(message: Uint8Array): void {
    this.#mode = "collapse";
    this.#buffered = [];
    if (this.#method === HEALTH_CHECK_METHOD && healthCheckService(message) === "") {
      // The proxy's own serving state; a named service is the backend's to answer, so it goes through.
      this.#outcome = "health";
      this.#send({ type: "message", frame: this.#proxy.draining ? NOT_SERVING : SERVING });
      return this.#finish(statusEvent(Status.OK, ""));
    }
    const options = this.#proxy._options();
    const keyValues = options.keyHeaders.map((name) => joined(this.#headers[name]));
    const key = this.#key = collapseKey(this.#method, keyValues, message);
    // Only a cache hit is answered inside join(); a leader's or follower's status comes later, after the
    // role below is recorded.
    this.#outcome = "cache";
    let membership: Membership;
    try {
      membership = this.#proxy.collapser.join(key, {
        event: (event) => this.#send(event),
        end: () => {
          if (this.#mode !== "done") {
            this.#finish(statusEvent(Status.INTERNAL, "shared call ended without status"));
          }
        },
      }, (flight) => {
        this.#outcome = "leader"; // before _lead, so a call that fails to start is counted as what it was
        this.#proxy._lead(flight, this.#method, message, this.#headers);
      });
    } catch (err) {
      return this.#fail(err);
    }
    this.#outcome = membership.role;
    if (this.#done) return;
    this.#membership = membership;
  }

  /** Whether the call has ended (a method, so TypeScript does not narrow it away across callbacks). */
  get #done(): boolean {
    return this.#mode === "done";
  }

  #startPass(deadline: number | undefined): void {
    if (this.#mode !== "reading") return;
    this.#mode = "pass";
    this.#outcome = "passthrough";
    try {
      this.#upstream = this.#proxy._pass(this.#method, this.#headers, deadline, (event) => this.#send(event));
    } catch (err) {
      return this.#fail(err);
    }
    for (const message of this.#buffered) this.#write(message);
    this.#buffered = [];
    if (this.#ended) this.#upstream.end();
  }

  /** Sends one message to the backend, pausing the client while the backend is slow to take it. */
  #write(message: Uint8Array): void {
    const upstream = this.#upstream!;
    if (!upstream.write(message) && !this.#requestPaused) {
      this.#requestPaused = true;
      this.#stream.pause();
      upstream.onDrain(() => {
        this.#requestPaused = false;
        this.#stream.resume();
      });
    }
  }

  #send(event: ResponseEvent): void {
    if (this.#mode === "done") return;
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) return;
    corkTurn(stream.session);
    switch (event.type) {
      case "origin":
        this.#origin = event.spanContext;
        return;
      case "headers":
        if (this.#headersSent) return;
        this.#headersSent = true;
        stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE, ...event.headers }, {
          waitForTrailers: true,
        });
        return;
      case "message":
        if (!this.#headersSent) this.#send({ type: "headers", headers: {} });
        if (!stream.write(event.frame) && this.#mode === "pass" && !this.#responsePaused) {
          // A slow client: stop reading from the backend until this stream drains. grpc-js then pauses its
          // HTTP/2 stream; on Deno 2.8.3 that does not hold the backend back (the runtime keeps granting
          // flow-control window and buffers below JS: measured, a paused client let the backend finish a
          // 12.8 MB stream), so this only keeps the buffering out of the JS heap. See README "Limits".
          // (A shared call cannot wait for one slow caller; its answer is bounded by the cache limits.)
          this.#responsePaused = true;
          this.#upstream!.pause();
          stream.once("drain", () => {
            this.#responsePaused = false;
            this.#upstream?.resume();
          });
        }
        return;
      case "status":
        // The flight delivering this status is finishing; leaving it now would look like an early exit.
        this.#membership = undefined;
        this.#finish(event);
    }
  }

  /** Ends the call with `status` (sent unless the client is gone) and releases everything it holds. */
  #finish(
    status: StatusEvent,
    extraTrailers?: http2.OutgoingHttpHeaders,
    send = true,
  ): void {
    if (this.#mode === "done") return;
    const wasPass = this.#mode === "pass";
    this.#mode = "done";
    clearTimeout(this.#deadlineTimer);
    this.#membership?.leave();
    if (wasPass && status.code !== Status.OK) this.#upstream?.cancel();
    const stream = this.#stream;
    if (send && !stream.destroyed && !stream.closed) {
      corkTurn(stream.session);
      const trailers = extraTrailers ? { ...status.trailers, ...extraTrailers } : status.trailers;
      if (this.#headersSent) {
        this.#trailers = trailers;
        stream.once("wantTrailers", () => stream.sendTrailers(this.#trailers!));
        stream.end();
      } else {
        // Trailers-only response: status in the one HEADERS frame.
        stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE, ...trailers }, {
          endStream: true,
        });
      }
      if (!this.#ended) {
        // The client may still be sending; we are done reading.
        stream.resume();
      }
    }
    this.#proxy._finished(this.#method, this.#outcome, status.code, this.#startedAt, this.#key);
    if (TRACING_ENABLED && (this.#outcome === "follower" || this.#outcome === "cache")) {
      recordSharedCall(this.#method, this.#headers, {
        role: this.#outcome,
        startedAtEpochMs: Date.now() - (performance.now() - this.#startedAt),
        origin: this.#origin,
        code: status.code,
      });
    }
  }

  #fail(err: unknown): void {
    if (err instanceof GrpcWireError) this.#finish(statusEvent(err.code, err.message));
    else {
      log.error("internal error on {method}: {error}", { method: this.#method, error: String(err) });
      this.#finish(statusEvent(Status.INTERNAL, "internal proxy error"));
    }
  }
}

/** HealthCheckResponse{status: SERVING} and {status: NOT_SERVING}, framed (protobuf field 1, varint). */
const SERVING = encodeFrame(Uint8Array.of(0x08, 0x01));
const NOT_SERVING = encodeFrame(Uint8Array.of(0x08, 0x02));

/** The `service` field of a protobuf HealthCheckRequest, or undefined when it cannot be read. */
export function healthCheckService(message: Uint8Array): string | undefined {
  let service = "";
  let i = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (i >= message.length) return undefined;
      const byte = message[i++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    return undefined;
  };
  while (i < message.length) {
    const tag = varint();
    if (tag === undefined) return undefined;
    const wireType = tag & 7;
    if (wireType === 0) {
      if (varint() === undefined) return undefined;
    } else if (wireType === 2) {
      const length = varint();
      if (length === undefined || i + length > message.length) return undefined;
      if (tag >>> 3 === 1) service = new TextDecoder().decode(message.subarray(i, i + length));
      i += length;
    } else return undefined;
  }
  return service;
}

/** Largest delay setTimeout honours; a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A key header's value; repeated values are joined with a newline, which no header value contains. */
function joined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join("\n") : value;
}
