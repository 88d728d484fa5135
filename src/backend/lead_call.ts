/**
 * The leader's backend call: the one detached call behind a flight of collapsed callers, from its request to
 * the flight's end. {@linkcode BackendCalls.lead} (backend_calls.ts) makes one per flight.
 *
 * A class, not a function of closures: each in-flight miss held eight closures and their contexts (0.7 KB
 * per call in the allocation profile, most of it alive across the scavenges of the call's life); here its
 * state is one object's fields.
 *
 * @module
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import type { FinishOptions, Flight } from "../core/collapser.ts";
import { formatDuration } from "../util/duration.ts";
import type { QueuedTimeout, TimeoutQueue } from "../util/timeout_queue.ts";
import { Status, type StatusCode } from "../wire/grpc_wire.ts";
import { log } from "../util/log.ts";
import { logStatus } from "./backend_log.ts";
import { type LeadRequest, NOT_CACHED } from "../policy/retention.ts";
import type { BackendSpan } from "../wire/tracing.ts";
import type { UnaryCallOptions } from "./clients.ts";
import { type ResponseEvent, type StatusEvent, statusEvent, type UpstreamCall } from "../wire/response.ts";

/** What a lead needs of {@linkcode BackendCalls}. */
export interface LeadHost {
  /** The backend timeout of every collapsed call. */
  readonly timeouts: TimeoutQueue;
  /** Whether `key` has a stale answer a failure could still be answered with. */
  hasStale(key: string): boolean;
  /** Counts a backend call in; its trace span, when tracing. */
  callStarted(method: string, headers: IncomingHttpHeaders): BackendSpan | undefined;
  /** Counts a backend call out and reports it. */
  callEnded(method: string, code: StatusCode, durationMs: number, key: string): void;
  /** Sends the call (the raw channel or grpc-js). */
  send(request: LeadRequest, sink: (event: ResponseEvent) => void, options: UnaryCallOptions): UpstreamCall;
  /** Ends a flight whose answer gave no message yet: with `status`, or a stale answer (stale-if-error). */
  settle(
    flight: Flight<ResponseEvent>,
    request: LeadRequest,
    status: StatusEvent,
    held?: ResponseEvent,
    headers?: OutgoingHttpHeaders,
  ): void;
  /** How an answer that ended with `status` is kept. */
  keep(request: LeadRequest, status: StatusEvent, headers: OutgoingHttpHeaders | undefined): FinishOptions;
}

/** One flight's backend call. */
export class LeadCall {
  readonly #host: LeadHost;
  readonly #flight: Flight<ResponseEvent>;
  /** The request; once sent, without the caller's headers and message (see {@linkcode sent}). */
  #request: LeadRequest;
  readonly #release: () => void;
  readonly #startedAt = performance.now();
  readonly #span: BackendSpan | undefined;
  /** A stale answer may stand in only if the response headers have not gone out yet. */
  readonly #holdHeaders: boolean;
  #running = true;
  #messages = 0;
  #timeout: QueuedTimeout | undefined;
  #held: ResponseEvent | undefined;
  #answerHeaders: OutgoingHttpHeaders | undefined;
  #call: UpstreamCall | undefined;
  /** The call's events (one function per lead: the clients take a sink). */
  readonly sink = (event: ResponseEvent): void => this.#event(event);
  // Callbacks as fields, not arrows in the constructor: those would keep the constructor's whole context
  // (the request with the caller's headers and message) alive for the flight's life.
  readonly #onTimeout = (): void => this.#timedOut();
  readonly #onIdle = (): void => this.#idle();

  /** Starts the call; `release` gives its concurrency slot back when it ends. Throws if it cannot start. */
  constructor(host: LeadHost, flight: Flight<ResponseEvent>, request: LeadRequest, release: () => void) {
    this.#host = host;
    this.#flight = flight;
    this.#request = request;
    this.#release = release;
    const { method, headers, policy } = request;
    const span = this.#span = host.callStarted(method, headers);
    if (span) flight.emit({ type: "origin", spanContext: span.spanContext });
    this.#holdHeaders = policy.staleIfErrorMs > 0 || host.hasStale(request.key);
    const options: UnaryCallOptions = {
      traceparent: span?.traceparent,
      retryable: policy.retry,
      streamsResponses: policy.streamsResponses,
    };
    try {
      this.#call = span
        ? span.run(() => host.send(request, this.sink, options))
        : host.send(request, this.sink, options);
    } catch (err) {
      this.#ended(Status.INTERNAL, String(err));
      throw err; // the slot, if any, is given back by whoever asked for it
    }
    this.#request = sent(request);
    if (!flight.done) this.#timeout = host.timeouts.add(this.#onTimeout);
    flight.onIdle = this.#onIdle;
  }

  /** Counts the call out (once) and ends its span. */
  #ended(code: StatusCode, details = ""): void {
    if (!this.#running) return;
    this.#running = false;
    const { method, key } = this.#request;
    this.#host.callEnded(method, code, performance.now() - this.#startedAt, key);
    this.#span?.end(code, details);
  }

  #done(code: StatusCode, details?: string): void {
    this.#timeout?.cancel();
    this.#ended(code, details);
    this.#release();
  }

  #end(status: StatusEvent): void {
    // The backend call is counted out before its callers are answered, so their metrics see its method.
    this.#done(status.code, status.details);
    // Once a message went out the answer is partly given: a stale one can no longer replace it.
    if (this.#messages > 0) {
      logStatus(this.#request.method, status);
      return this.#flight.finish(this.#host.keep(this.#request, status, this.#answerHeaders), status);
    }
    this.#host.settle(this.#flight, this.#request, status, this.#held, this.#answerHeaders);
  }

  #event(event: ResponseEvent): void {
    const flight = this.#flight;
    if (event.type === "status") return this.#end(event);
    if (event.type === "headers") {
      this.#answerHeaders = event.headers;
      if (this.#holdHeaders) {
        this.#held = event;
        return;
      }
    }
    if (event.type === "message") {
      if (this.#held !== undefined) {
        flight.emit(this.#held);
        this.#held = undefined;
      }
      if (++this.#messages === 2) {
        // A second response message: this is a stream. Stop sharing it (nobody new joins, nothing is
        // cached), keep serving those already here, and let it run past the backend timeout: a watch-style
        // stream lives as long as its callers do.
        flight.unshare();
        this.#timeout?.cancel();
        if (flight.subscribers === 0) {
          // Everyone left while it was still shared: nobody can join a stream, so nobody will read it.
          this.#done(Status.CANCELLED, "no callers left");
          this.#call?.cancel();
          flight.finish(NOT_CACHED);
          return;
        }
      }
    }
    flight.emit(event);
  }

  #timedOut(): void {
    this.#call?.cancel();
    const bound = formatDuration(this.#host.timeouts.delayMs);
    log.warn("backend call {method} exceeded the backend timeout ({timeout})", {
      method: this.#request.method,
      timeout: bound,
    });
    this.#end(statusEvent(Status.DEADLINE_EXCEEDED, `backend call exceeded the backend timeout (${bound})`));
  }

  /** Everyone left. */
  #idle(): void {
    // A shared call goes on to fill the cache (bounded by the backend timeout); a stream that nobody can
    // join again has no reason to run.
    const flight = this.#flight;
    if (flight.shared) return;
    this.#done(Status.CANCELLED);
    this.#call?.cancel();
    flight.finish(NOT_CACHED);
  }
}

const NO_HEADERS: IncomingHttpHeaders = Object.freeze({});
const NO_MESSAGE = new Uint8Array(0);

/**
 * What a lead keeps of its request once it is sent: what deciding how its answer is kept needs (method, key,
 * policy, purge marks), not the caller's headers and message, which the client has copied into its own
 * request (and keeps for a resend). A miss outlives two scavenges under load, so whatever it holds is
 * promoted to the old generation (`deno run -A bench/gc_cost.ts`).
 */
function sent(request: LeadRequest): LeadRequest {
  const { method, key, policy, bypass, since, fleetSince } = request;
  return { method, key, policy, bypass, since, fleetSince, headers: NO_HEADERS, message: NO_MESSAGE };
}
