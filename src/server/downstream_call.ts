/**
 * One downstream call: reads the request, decides by the method's policy whether it collapses, passes
 * through, or (shadow mode) passes through while the ledger notes what it would have been, and writes the
 * response back.
 *
 * @module
 */

import type * as http2 from "node:http2";
import type { SpanContext } from "@opentelemetry/api";
import { retention } from "../policy/retention.ts";
import type { BackendCalls } from "../backend/backend_calls.ts";
import type { Collapser, Membership, Role } from "../core/collapser.ts";
import { corkTurn } from "../wire/cork.ts";
import { encodeFrame, FrameDecoder, GrpcWireError, parseGrpcTimeout, Status } from "../wire/grpc_wire.ts";
import { collapseKey } from "../policy/key.ts";
import { log } from "../util/log.ts";
import { ProtoReader, WireType } from "../wire/protobuf.ts";
import type { MethodPolicy, Policy } from "../policy/policy.ts";
import type { SharedTier } from "../fleet/shared_tier.ts";
import type { CallReport, Outcome } from "./observer.ts";
import type { ShadowEntry, ShadowLedger } from "../core/shadow.ts";
import { recordSharedCall, TRACING_ENABLED } from "../wire/tracing.ts";
import {
  type ResponseEvent,
  single,
  type StatusEvent,
  statusEvent,
  type UpstreamStream,
} from "../wire/response.ts";

/** The standard gRPC health check method, answered by the proxy itself for the empty service name. */
export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

const GRPC_CONTENT_TYPE = "application/grpc";
const SUPPORTED_ENCODINGS = new Set(["identity", "gzip", "deflate"]);
/** Largest delay setTimeout honours; a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * What a call needs from the server it arrived on. The {@linkcode Proxy} is one; the call never reaches
 * back into the server for anything else.
 */
export interface CallHost {
  /** Whether the server is draining: new calls are refused (the proxy's own health check still answers). */
  readonly draining: boolean;
  /** The policy new calls are resolved against. */
  readonly policy: Policy;
  /** Largest request message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** The collapsing core. */
  readonly collapser: Collapser<ResponseEvent>;
  /** The backend clients and calls. */
  readonly backend: BackendCalls;
  /** Shadow mode's ledger; undefined when calls are really collapsed. */
  readonly shadow: ShadowLedger | undefined;
  /** The shared tier, when there is one. */
  readonly tier: SharedTier | undefined;
  /** The verified client identity (mTLS) of a connection; callers with different identities never share. */
  identityOf(session: http2.Http2Session | undefined): string | undefined;
  /** A call ended. */
  callFinished(report: CallReport): void;
}

/** One downstream call, from its request headers to its status. */
export class DownstreamCall {
  readonly #proxy: CallHost;
  readonly #stream: http2.ServerHttp2Stream;
  readonly #headers: http2.IncomingHttpHeaders;
  readonly #method: string;
  readonly #policy: MethodPolicy;
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
  #shadow: ShadowEntry | undefined;
  #stale = false;

  constructor(
    proxy: CallHost,
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    startedAt: number,
  ) {
    this.#proxy = proxy;
    this.#stream = stream;
    this.#headers = headers;
    this.#method = headers[":path"] ?? "";
    this.#policy = proxy.policy.resolve(this.#method);
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
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
      // Longer (grpc-timeout allows up to 99999999H) cannot be a timer: setTimeout would fire at once.
      // Such a deadline is far beyond any call; the backend still gets it for passthrough calls.
      this.#deadlineTimer = setTimeout(() => {
        this.#deadlineTimer = undefined;
        this.#finish(statusEvent(Status.DEADLINE_EXCEEDED, "deadline exceeded"));
      }, timeoutMs);
    }
    if (!this.#policy.collapse && this.#method !== HEALTH_CHECK_METHOD) {
      // Not to be collapsed (a method with side effects, a declared client stream): the caller's own call,
      // with nothing held back.
      this.#startPass(deadline);
    }
    const decoder = new FrameDecoder({ encoding, maxMessageBytes: this.#proxy.maxMessageBytes });
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
      // Nothing a request carries may throw out of an http2 event handler: that would end the process.
      try {
        decoder.finish();
        if (this.#mode === "pass") this.#upstream?.end();
        else if (this.#mode === "reading") {
          if (this.#buffered.length === 1) this.#decide(this.#buffered[0], deadline);
          else this.#startPass(deadline);
        }
      } catch (err) {
        this.#fail(err);
      }
    });
    stream.on("close", () => {
      // The client went away (RST_STREAM, connection lost) or the call ended normally.
      if (this.#mode !== "done") {
        this.#finish(statusEvent(Status.CANCELLED, "client cancelled"), undefined, false);
      }
    });
  }

  /** A request of exactly one message has arrived whole: answer it, collapse it, or shadow it. */
  #decide(message: Uint8Array, deadline: number | undefined): void {
    if (this.#method === HEALTH_CHECK_METHOD && healthCheckService(message) === "") {
      // The proxy's own serving state; a named service is the backend's to answer, so it goes through.
      this.#mode = "collapse";
      this.#outcome = "health";
      this.#send({ type: "message", frame: this.#proxy.draining ? NOT_SERVING : SERVING });
      return this.#finish(statusEvent(Status.OK, ""));
    }
    if (!this.#policy.collapse) return this.#startPass(deadline);
    const key = this.#key = collapseKey(
      this.#method,
      this.#headers,
      message,
      this.#policy.key,
      this.#proxy.identityOf(this.#stream.session),
    );
    const ledger = this.#proxy.shadow;
    if (ledger !== undefined) {
      this.#shadow = ledger.observe(key);
      return this.#startPass(deadline);
    }
    this.#mode = "collapse";
    this.#buffered = [];
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
        this.#outcome = "leader"; // before lead(), so a call that fails to start is counted as what it was
        const request = { method: this.#method, message, headers: this.#headers, key, policy: this.#policy };
        const { tier, backend } = this.#proxy;
        if (tier === undefined) backend.lead(flight, request);
        else tier.lead(flight, request, (local) => backend.lead(local, request));
      }, this.#policy.join);
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
      this.#upstream = this.#proxy.backend.pass(this.#method, this.#headers, deadline, (e) => this.#send(e));
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
        if (event.stale) this.#stale = true;
        // The backend's own content-type (e.g. application/grpc+proto) wins over the default.
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
  #finish(status: StatusEvent, extraTrailers?: http2.OutgoingHttpHeaders, send = true): void {
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
    let wouldBe: Role | undefined;
    if (this.#shadow !== undefined) {
      wouldBe = this.#shadow.wouldBe;
      const kept = retention(this.#policy, status.code);
      this.#shadow.finished(kept.cache ? { ttlMs: kept.ttlMs ?? 0 } : undefined);
    }
    this.#proxy.callFinished({
      method: this.#method,
      outcome: this.#outcome,
      code: status.code,
      durationMs: performance.now() - this.#startedAt,
      wouldBe,
      stale: this.#stale,
      key: this.#key,
    });
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
function healthCheckService(message: Uint8Array): string | undefined {
  try {
    const reader = new ProtoReader(message);
    let service = "";
    while (reader.next()) {
      if (reader.field === 1 && reader.wireType === WireType.LEN) service = reader.string();
      else reader.skip();
    }
    return service;
  } catch {
    return undefined; // not a HealthCheckRequest: the backend's to answer
  }
}
