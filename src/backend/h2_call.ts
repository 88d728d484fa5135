/**
 * One call of {@linkcode H2Channel} (h2_channel.ts): its request sent on a session's stream, and the
 * stream's events read back as wire events, with a refused stream sent once more.
 *
 * The stream's listeners are module functions, not closures: each finds its attempt through a symbol on the
 * stream (as Node's own http2 keeps its state). Per cache miss the closures of the first version (seven
 * functions and two contexts per call) were a kilobyte and a half of the proxy's own garbage, in the path
 * every miss takes.
 *
 * @module
 */

import * as http2 from "node:http2";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import {
  decodeGrpcMessage,
  FrameDecoder,
  GrpcWireError,
  Status,
  type StatusCode,
} from "../wire/grpc_wire.ts";
import { corkTurn } from "../wire/cork.ts";
import type { Session } from "./h2_session.ts";
import { statusForHttp, statusForReset, wasRefused } from "./h2_mapping.ts";
import {
  RESPONSE_HOP_HEADERS,
  type ResponseSink,
  single,
  statusEvent,
  type UpstreamCall,
  withoutHopHeaders,
} from "../wire/response.ts";

const { NGHTTP2_FLAG_END_STREAM: END_STREAM, NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = http2.constants;

/** Why a call never reached the backend: its connection failed, or its stream was refused or excluded. */
export type Unreached = "connect" | "refused";

/** Per-call options of {@linkcode H2Channel.call}. */
export interface H2CallOptions {
  /** The backend span's W3C `traceparent`, sent instead of the caller's. */
  traceparent?: string;
  /**
   * Called instead of finishing a call that never reached the backend: its connection could not be made,
   * or its stream was refused or excluded by a GOAWAY (RFC 9113 §8.7). Return true to take it over (to
   * send it elsewhere): its sink then hears nothing more. Otherwise it ends as it would have.
   */
  unreached?: (why: Unreached) => boolean;
}

/** What a call needs of its channel. */
export interface CallChannel {
  /** Whether the channel is closed: calls end UNAVAILABLE. */
  isClosed(): boolean;
  /** Largest response message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** The open session, or a new one. */
  connected(): Session;
  /** New calls must not go to `session` (it is going away). */
  drop(session: Session): void;
}

const ATTEMPT = Symbol("collapser.h2Attempt");
type TaggedStream = http2.ClientHttp2Stream & { [ATTEMPT]?: Attempt };

/** One call: its request, its sink, and whether it has finished. */
export class H2Call implements UpstreamCall {
  finished = false;
  stream: http2.ClientHttp2Stream | undefined;
  readonly #channel: CallChannel;
  readonly headers: OutgoingHttpHeaders;
  readonly body: Uint8Array;
  readonly sink: ResponseSink;
  readonly options: H2CallOptions;

  constructor(
    channel: CallChannel,
    headers: OutgoingHttpHeaders,
    body: Uint8Array,
    sink: ResponseSink,
    options: H2CallOptions,
  ) {
    this.#channel = channel;
    this.headers = headers;
    this.body = body;
    this.sink = sink;
    this.options = options;
  }

  get channel(): CallChannel {
    return this.#channel;
  }

  /** Ends the call with its status (once). */
  finish(code: StatusCode, details: string, trailers?: IncomingHttpHeaders): void {
    if (this.finished) return;
    this.finished = true;
    this.sink(statusEvent(code, details, trailers && withoutHopHeaders(trailers)));
  }

  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    const stream = this.stream;
    if (stream !== undefined && !stream.closed && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
  }

  /** Sends the request; `retries`: how many more times a refused attempt may be sent again. */
  attempt(retries: number): void {
    const channel = this.#channel;
    if (channel.isClosed()) {
      queueMicrotask(() => this.finish(Status.UNAVAILABLE, "backend channel closed"));
      return;
    }
    let session: Session;
    let stream: TaggedStream;
    try {
      session = channel.connected();
      corkTurn(session.h2);
      stream = this.stream = session.h2.request(this.headers, { endStream: false });
      stream.end(this.body);
    } catch (err) {
      // A header node:http2 will not send, or a session torn down under us.
      queueMicrotask(() => this.finish(Status.INTERNAL, `cannot call the backend: ${err}`));
      return;
    }
    session.open++;
    stream[ATTEMPT] = new Attempt(this, session, stream, retries);
    stream.on("response", onResponse);
    stream.on("data", onData);
    stream.on("trailers", onTrailers);
    stream.on("error", onError);
    stream.on("close", onClose);
  }
}

/** One sending of a call's request, on one stream. */
class Attempt {
  responded = false;
  decoder: FrameDecoder | undefined;
  /** DATA that came before the response headers (Deno 2.8.3's node:http2 emits the first DATA first). */
  early: Uint8Array[] | undefined;
  trailers: IncomingHttpHeaders | undefined;
  error: Error | undefined;

  constructor(
    readonly call: H2Call,
    readonly session: Session,
    readonly stream: http2.ClientHttp2Stream,
    readonly retries: number,
  ) {}

  response(headers: IncomingHttpHeaders, flags: number): void {
    this.responded = true;
    const call = this.call;
    if (call.finished) return;
    const httpStatus = Number(headers[":status"]);
    if (headers["grpc-status"] !== undefined && (httpStatus !== 200 || (flags & END_STREAM) !== 0)) {
      // Trailers-only: the status came in the one HEADERS frame. It wins over a non-200 HTTP status (an
      // Envoy or a rate limiter in front of the backend may send both).
      this.trailers = headers;
    } else if (httpStatus !== 200) {
      call.finish(statusForHttp(httpStatus), `Received HTTP status code ${httpStatus}`);
      this.stream.close(NGHTTP2_CANCEL);
    } else {
      this.decoder = new FrameDecoder({
        encoding: single(headers["grpc-encoding"]),
        maxMessageBytes: call.channel.maxMessageBytes,
      });
      call.sink({ type: "headers", headers: withoutHopHeaders(headers, RESPONSE_HOP_HEADERS) });
      const early = this.early;
      if (early !== undefined) { for (const chunk of early.splice(0)) this.data(chunk); }
    }
  }

  data(chunk: Uint8Array): void {
    const call = this.call;
    if (call.finished) return;
    if (this.decoder === undefined) {
      (this.early ??= []).push(chunk);
      return;
    }
    let frames: Uint8Array[];
    try {
      frames = this.decoder.pushFrames(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    for (const frame of frames) {
      if (call.finished) return; // cancelled by the sink
      call.sink({ type: "message", frame });
    }
  }

  fail(err: unknown): void {
    const wire = err instanceof GrpcWireError ? err : undefined;
    this.call.finish(wire?.code ?? Status.INTERNAL, wire?.message ?? String(err));
    this.stream.close(NGHTTP2_CANCEL);
  }

  closed(): void {
    const { call, session, stream, early, trailers, error } = this;
    if (--session.open === 0) session.idleSince = performance.now();
    if (call.finished) return;
    const h2 = session.h2;
    const refused = !this.responded && early === undefined && wasRefused(stream, error);
    const unreached = call.options.unreached;
    if (unreached !== undefined && (refused || !session.connected)) {
      if (unreached(refused ? "refused" : "connect")) {
        call.finished = true;
        return;
      }
    }
    if (refused && this.retries > 0) {
      // The backend did not process it (RFC 9113 §8.7): a stream refused, or one that crossed the backend's
      // GOAWAY on the wire. Sending it again is safe; a session that is going away is not used for it (the
      // refusal of one stream alone says nothing about the connection).
      if (h2.closed || h2.destroyed) call.channel.drop(session);
      return call.attempt(this.retries - 1);
    }
    if (early !== undefined && early.length > 0) {
      call.finish(Status.INTERNAL, "backend sent a message without response headers");
    } else if (trailers !== undefined) {
      const status = single(trailers["grpc-status"]) ?? "";
      const code = /^\d{1,2}$/.test(status) ? Number(status) : NaN;
      if (!(code >= 0 && code <= 16)) {
        return call.finish(Status.UNKNOWN, `backend sent an invalid grpc-status ${JSON.stringify(status)}`);
      }
      try {
        this.decoder?.finish(); // a truncated last message is not an answer, whatever the status says
      } catch (err) {
        return this.fail(err);
      }
      call.finish(code as StatusCode, decodeGrpcMessage(single(trailers["grpc-message"]) ?? ""), trailers);
    } else if (error !== undefined && (error as { code?: string }).code !== "ERR_HTTP2_STREAM_ERROR") {
      // The connection failed or broke (refused, reset, GOAWAY with an error), not this one stream.
      call.finish(Status.UNAVAILABLE, `backend unreachable: ${error.message}`);
    } else if (h2.destroyed || h2.socket === undefined || h2.socket.destroyed) {
      // The connection went away under the call (the backend crashed or closed it, or close()): node reports
      // that as a CANCEL of every open stream, sometimes before it marks the session destroyed (Deno 2.8.3:
      // a backend killed mid-call left the session closed, its socket destroyed).
      call.finish(Status.UNAVAILABLE, "backend connection closed");
    } else if (stream.rstCode !== undefined && stream.rstCode !== NGHTTP2_NO_ERROR) {
      call.finish(statusForReset(stream.rstCode), `Received RST_STREAM with code ${stream.rstCode}`);
    } else {
      call.finish(Status.UNKNOWN, "No status received");
    }
  }
}

// The stream's listeners: `this` is the stream, which carries its attempt.

function onResponse(this: TaggedStream, headers: IncomingHttpHeaders, flags: number): void {
  this[ATTEMPT]?.response(headers, flags);
}

function onData(this: TaggedStream, chunk: Uint8Array): void {
  this[ATTEMPT]?.data(chunk);
}

function onTrailers(this: TaggedStream, headers: IncomingHttpHeaders): void {
  const attempt = this[ATTEMPT];
  if (attempt !== undefined) attempt.trailers = headers;
}

function onError(this: TaggedStream, err: Error): void {
  const attempt = this[ATTEMPT];
  if (attempt !== undefined) attempt.error = err;
}

function onClose(this: TaggedStream): void {
  const attempt = this[ATTEMPT];
  // Once (anything the runtime emits after it finds no attempt); and the stream may outlive the call in
  // node's own lists: let go of it.
  this[ATTEMPT] = undefined;
  attempt?.closed();
}
