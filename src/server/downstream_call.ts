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
import type { FinishOptions, Membership, Role, Subscriber } from "../core/collapser.ts";
import { corkTurn } from "../wire/cork.ts";
import { FrameDecoder, GrpcWireError, parseGrpcTimeout, Status } from "../wire/grpc_wire.ts";
import { collapseKey } from "../policy/key.ts";
import { log } from "../util/log.ts";
import type { MethodPolicy } from "../policy/policy.ts";
import type { Outcome } from "./observer.ts";
import { ServedAnswer } from "./served.ts";
import { type CallHost, lead } from "./call_host.ts";
import {
  awaitEnd,
  onClose,
  onData,
  onEnd,
  onWantTrailers,
  type StreamCall,
  tagStream,
} from "./call_streams.ts";
import { type Paced, paced } from "./fan_out.ts";
import { HEALTH_CHECK_METHOD, healthCheckAnswer } from "./health_check.ts";
import type { ShadowEntry } from "../core/shadow.ts";
import { recordSharedCall, TRACING_ENABLED } from "../wire/tracing.ts";
import {
  type ResponseEvent,
  single,
  type StatusEvent,
  statusEvent,
  type UpstreamStream,
} from "../wire/response.ts";

export { HEALTH_CHECK_METHOD };

const GRPC_CONTENT_TYPE = "application/grpc";
const SUPPORTED_ENCODINGS = new Set(["identity", "gzip", "deflate"]);
const NO_MESSAGES = Object.freeze([]) as unknown as Uint8Array[]; // held once no longer reading: frozen
const NO_HEADERS: http2.IncomingHttpHeaders = Object.freeze({});
/** Largest delay setTimeout honours; a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One downstream call, from its request headers to its status. It is also its own subscriber to the shared
 * flight or cached answer it gets (`event`, `end`, `cached`, `finishing`).
 */
export class DownstreamCall implements Subscriber<ResponseEvent>, StreamCall, Paced {
  readonly #proxy: CallHost;
  readonly #stream: http2.ServerHttp2Stream;
  #headers: http2.IncomingHttpHeaders;
  readonly #method: string;
  readonly #policy: MethodPolicy;
  readonly #startedAt: number;
  #mode: "reading" | "collapse" | "pass" | "done" = "reading";
  #outcome: Outcome = "rejected";
  #buffered: Uint8Array[] = [];
  #ended = false;
  #decideScheduled = false;
  /** The caller's deadline (epoch ms), if it sent one. */
  #deadline: number | undefined;
  #decoder: FrameDecoder | undefined;
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
  /** A collapsed call: what it learns of how its answer is served. */
  #answer: ServedAnswer | undefined;

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
    // The stream's listeners are module functions that find the call through the stream (no closures per
    // call). First the close, so that every call, however it ends, is counted out when its stream closes.
    tagStream(stream, this);
    stream.on("close", onClose);
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
    this.#deadline = deadline;
    this.#decoder = new FrameDecoder({ encoding, maxMessageBytes: this.#proxy.maxMessageBytes });
    stream.on("data", onData);
    stream.on("end", onEnd);
  }

  /** @internal The stream closed: the client went away (RST_STREAM, connection lost) or the call ended. */
  _closed(): void {
    try {
      if (this.#mode !== "done") {
        this.#finish(statusEvent(Status.CANCELLED, "client cancelled"), undefined, false);
      }
    } finally {
      this.#proxy.streamClosed(); // counted out whatever happens, or a drain would wait for it
    }
  }

  /** @internal Request bytes. */
  _data(chunk: Uint8Array): void {
    if (this.#mode === "done" || this.#mode === "collapse") return;
    let messages: Uint8Array[];
    try {
      messages = this.#decoder!.push(chunk);
    } catch (err) {
      return this.#fail(err);
    }
    if (this.#mode === "pass") {
      for (const message of messages) this.#write(message);
      return;
    }
    this.#buffered.push(...messages);
    if (this.#buffered.length > 1) this.#startPass(this.#deadline);
    else if (this.#buffered.length === 1 && !this.#decideScheduled) {
      // The wire does not say whether a call is unary. A call may be collapsed only if its request ends
      // with its first message; a streaming client (e.g. a bidi ping-pong waiting for a reply) does not end
      // it. END_STREAM that came in the same read has been seen by the next macrotask.
      this.#decideScheduled = true;
      awaitEnd(this);
    }
  }

  /** @internal The request ended (END_STREAM). */
  _end(): void {
    this.#ended = true;
    if (this.#mode === "done") return;
    // Nothing a request carries may throw out of an http2 event handler: that would end the process.
    try {
      this.#decoder!.finish();
      this.#decoder = undefined; // nothing more comes: a held call (a follower in a herd) keeps less
      if (this.#mode === "pass") this.#upstream?.end();
      else if (this.#mode === "reading") {
        if (this.#buffered.length === 1) this.#decide(this.#buffered[0], this.#deadline);
        else this.#startPass(this.#deadline);
      }
    } catch (err) {
      this.#fail(err);
    }
  }

  /** @internal The stream is ready for the trailers of an answer that had headers. */
  _wantTrailers(): void {
    this.#stream.sendTrailers(this.#trailers!);
  }

  /** @internal The turn its first message came in has passed: without END_STREAM it is not unary. */
  _turnPassed(): void {
    if (this.#mode === "reading" && !this.#ended) this.#startPass(this.#deadline);
  }

  /** A request of exactly one message has arrived whole: answer it, collapse it, or shadow it. */
  #decide(message: Uint8Array, deadline: number | undefined): void {
    const health = this.#method === HEALTH_CHECK_METHOD && healthCheckAnswer(message, this.#proxy.draining);
    if (health) {
      // The proxy's own serving state; a named service is the backend's to answer, so it goes through.
      this.#mode = "collapse";
      this.#outcome = "health";
      this.#send({ type: "message", frame: health });
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
    this.#buffered = NO_MESSAGES;
    const answer = this.#answer = new ServedAnswer();
    const join = answer.join(this.#headers["cache-control"], this.#policy);
    // Only a cache hit is answered inside join(); a leader's or follower's status comes later, after the
    // role below is recorded.
    this.#outcome = "cache";
    let membership: Membership;
    try {
      membership = this.#proxy.collapser.join(key, this, (flight) => {
        this.#outcome = "leader"; // before lead(), so a call that fails to start is counted as what it was
        const method = this.#method, headers = this.#headers, policy = this.#policy, bypass = answer.bypass;
        lead(this.#proxy, flight, { method, message, headers, key, policy, bypass });
      }, join);
    } catch (err) {
      return this.#fail(err);
    }
    this.#outcome = membership.role;
    if (!TRACING_ENABLED) this.#headers = NO_HEADERS; // nothing reads them now: a held call keeps less
    if ((this.#mode as string) === "done") return; // (cast: TypeScript narrows #mode across the callbacks)
    this.#membership = membership;
  }

  /** @internal Subscriber: one event of the shared answer; a follower's waits its turn (fan_out.ts). */
  event(event: ResponseEvent): void {
    if (this.#outcome !== "follower" || paced(this, event)) this.#send(event);
  }

  /** @internal Subscriber: the shared answer ended. */
  end(): void {
    if (this.#outcome !== "follower" || paced(this, undefined)) this.deliver(undefined);
  }

  /** @internal Paced: an event of the answer, or its end (undefined); one not sent ends the call. */
  deliver(event: ResponseEvent | undefined): void {
    try {
      if (event !== undefined) return this.#send(event);
    } catch { /* ended below */ }
    if (this.#mode !== "done") this.#finish(statusEvent(Status.INTERNAL, "shared call ended without status"));
  }

  /** @internal Subscriber: a cache hit, before its replay. */
  cached(ageMs: number, freshMs: number): void {
    this.#answer?.cached(ageMs, freshMs);
  }

  /** @internal Subscriber: the flight finished; its last event follows. */
  finishing(stored: boolean, options: FinishOptions): void {
    this.#answer?.finishing(stored, options);
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
    this.#buffered = NO_MESSAGES;
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
      case "headers": {
        if (this.#headersSent) return;
        this.#headersSent = true;
        if (event.stale) {
          this.#stale = true;
          this.#answer?.stale(event.staleness);
        }
        // The backend's own content-type (e.g. application/grpc+proto) wins over the default.
        const headers = { ":status": 200, "content-type": GRPC_CONTENT_TYPE, ...event.headers };
        // A cached answer says how old it is (seconds since the backend gave it: RFC 9111 §5.1).
        const age = this.#answer?.age;
        if (age !== undefined) headers.age = age;
        stream.respond(headers, { waitForTrailers: true });
        return;
      }
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
        this.#finish(event, this.#mode === "collapse" ? this.#servedTrailers() : undefined);
    }
  }

  /** How a collapsible call's answer was served: noted for reports, and said in its trailers. */
  #servedTrailers(): http2.OutgoingHttpHeaders | undefined {
    const role = this.#outcome === "cache" || this.#outcome === "follower" ? this.#outcome : "leader";
    return this.#answer?.trailers(this.#key ?? "", role, this.#proxy.cacheStatus, this.#headersSent);
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
        stream.once("wantTrailers", onWantTrailers);
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
      served: this.#answer?.served,
      clientNoCache: this.#answer?.clientNoCache,
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
