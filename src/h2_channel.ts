/**
 * A lean gRPC client for collapsed calls: one request message out, the response read back as wire events,
 * over a raw `node:http2` session to one `host:port`.
 *
 * Why not grpc-js for these: a collapsed call is a cache miss, and the unique-key profile (bench/load.ts
 * `--only b --cpu-prof`) showed grpc-js's per-call machinery (call stack, filters, metadata objects and
 * their base64 round trip for `-bin` keys) as the largest part of a miss. Here a call is one `request()`
 * with the caller's headers passed on as they came, and the response bytes are reframed without copies
 * beyond one per message. Passthrough calls (streams, flow control both ways) stay on grpc-js, and so does
 * any target that is not a plain `host:port` (`dns:///`, `unix:`, lists), where name resolution and
 * load balancing are grpc-js's job. README "Design" has the measured difference.
 *
 * What it does itself, as grpc-js would: one session shared by all calls and opened on first use, a new one
 * after the old one is closed, refused or sent GOAWAY; keepalive pings; HTTP and RST_STREAM errors mapped
 * to gRPC statuses as the gRPC spec says (doc/http-grpc-status-mapping.md).
 *
 * @module
 */

import * as http2 from "node:http2";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import {
  decodeGrpcMessage,
  encodeFrame,
  FrameDecoder,
  GrpcWireError,
  Status,
  type StatusCode,
} from "./grpc_wire.ts";
import { log } from "./log.ts";
import { corkTurn } from "./cork.ts";
import { HOP_HEADERS, type ResponseSink, statusEvent, type UpstreamCall } from "./upstream.ts";

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
} = http2.constants;

/** Options for {@linkcode H2Channel}. */
export interface H2ChannelOptions {
  /** Largest response message accepted, in bytes, after decompression. @default {Infinity} */
  maxMessageBytes?: number;
  /** Interval of keepalive pings while the session is open, in ms. @default {30_000} */
  keepaliveMs?: number;
  /** How long a keepalive ping may go unanswered before the session is dropped, in ms. @default {10_000} */
  keepaliveTimeoutMs?: number;
}

/** `host:port` or `[v6]:port`, the only targets this channel serves; undefined for anything else. */
export function plainAuthority(target: string): string | undefined {
  return /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(target) ? target : undefined;
}

/** The gRPC status for an HTTP status other than 200 (gRPC's http-grpc-status-mapping). */
export function statusForHttp(httpStatus: number): StatusCode {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

/** The gRPC status for a stream reset by the backend without a status (as grpc-js reports it). */
function statusForReset(rstCode: number): StatusCode {
  switch (rstCode) {
    case NGHTTP2_REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case NGHTTP2_CANCEL:
      return Status.CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    default:
      return Status.INTERNAL;
  }
}

/** Caller headers → request headers for the backend: pseudo and per-hop headers dropped, the rest as is. */
function forwardedHeaders(
  method: string,
  caller: IncomingHttpHeaders,
  traceparent?: string,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const key in caller) {
    if (key.charCodeAt(0) === 0x3a /* ':' */ || HOP_HEADERS.has(key)) continue;
    const value = caller[key];
    if (value !== undefined) out[key] = value;
  }
  if (traceparent !== undefined) out["traceparent"] = traceparent;
  out[":method"] = "POST";
  out[":path"] = method;
  out["content-type"] = "application/grpc";
  out["te"] = "trailers";
  out["grpc-accept-encoding"] = "identity,deflate,gzip";
  out["user-agent"] = "collapser";
  return out;
}

/** Response headers or trailers → headers ready to send downstream: pseudo and per-hop headers dropped. */
function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (key.charCodeAt(0) === 0x3a || HOP_HEADERS.has(key)) continue;
    const value = headers[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** A raw HTTP/2 client for one backend address. */
export class H2Channel {
  readonly #authority: string;
  readonly #maxMessageBytes: number;
  readonly #keepaliveMs: number;
  readonly #keepaliveTimeoutMs: number;
  #session: http2.ClientHttp2Session | undefined;
  #closed = false;

  constructor(authority: string, options: H2ChannelOptions = {}) {
    this.#authority = authority;
    this.#maxMessageBytes = options.maxMessageBytes ?? Infinity;
    this.#keepaliveMs = options.keepaliveMs ?? 30_000;
    this.#keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 10_000;
  }

  /**
   * Calls `method` with one request message; `caller` are the downstream call's headers, forwarded as they
   * came (minus pseudo and per-hop headers). The response is reported to `sink` as it arrives, ending with
   * one `status` event; none after `cancel()`.
   */
  call(
    method: string,
    message: Uint8Array,
    caller: IncomingHttpHeaders,
    sink: ResponseSink,
    options: { traceparent?: string } = {},
  ): UpstreamCall {
    let finished = false;
    const finish = (code: StatusCode, details: string, trailers?: IncomingHttpHeaders) => {
      if (finished) return;
      finished = true;
      sink(statusEvent(code, details, trailers && responseHeaders(trailers)));
    };
    if (this.#closed) {
      queueMicrotask(() => finish(Status.UNAVAILABLE, "backend channel closed"));
      return { cancel: () => finished = true };
    }
    let stream!: http2.ClientHttp2Stream;
    const headers = forwardedHeaders(method, caller, options.traceparent);
    const body = encodeFrame(message);
    /** Sends the request; `retries`: how many more times a refused attempt may be sent again. */
    const attempt = (retries: number) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.#connected();
        corkTurn(session);
        stream = session.request(headers, { endStream: false });
        stream.end(body);
      } catch (err) {
        // A header node:http2 will not send, or a session torn down under us.
        queueMicrotask(() => finish(Status.INTERNAL, `cannot call the backend: ${err}`));
        return;
      }
      const current = stream;
      let responded = false;
      let decoder: FrameDecoder | undefined;
      let early: Uint8Array[] | undefined;
      let trailers: IncomingHttpHeaders | undefined;
      let error: Error | undefined;
      current.on("response", (headers) => {
        responded = true;
        if (finished) return;
        const httpStatus = Number(headers[":status"]);
        if (httpStatus !== 200) {
          finish(statusForHttp(httpStatus), `Received HTTP status code ${httpStatus}`);
          current.close(NGHTTP2_CANCEL);
        } else if (headers["grpc-status"] !== undefined) {
          trailers = headers; // trailers-only: the status came in the one HEADERS frame
        } else {
          decoder = new FrameDecoder({
            encoding: single(headers["grpc-encoding"]),
            maxMessageBytes: this.#maxMessageBytes,
          });
          sink({ type: "headers", headers: responseHeaders(headers) });
          if (early !== undefined) { for (const chunk of early.splice(0)) onData(chunk); }
        }
      });
      const onData = (chunk: Uint8Array) => {
        if (finished) return;
        if (decoder === undefined) {
          // Deno 2.8.3's node:http2 may emit the first DATA before 'response'; keep it for then.
          (early ??= []).push(chunk);
          return;
        }
        let messages: Uint8Array[];
        try {
          messages = decoder.push(chunk);
        } catch (err) {
          const wire = err instanceof GrpcWireError ? err : undefined;
          finish(wire?.code ?? Status.INTERNAL, wire?.message ?? String(err));
          current.close(NGHTTP2_CANCEL);
          return;
        }
        for (const m of messages) sink({ type: "message", frame: encodeFrame(m) });
      };
      current.on("data", onData);
      current.on("trailers", (headers) => trailers = headers);
      current.on("error", (err) => error = err);
      current.on("close", () => {
        if (finished) return;
        if (!responded && early === undefined && retries > 0 && wasRefused(current, error)) {
          // The backend did not process it (RFC 9113 §8.7): typically a call that crossed the backend's
          // GOAWAY on the wire. Sending it again is safe, on a new session.
          if (this.#session === session) this.#session = undefined;
          return attempt(retries - 1);
        }
        if (early !== undefined && early.length > 0) {
          finish(Status.INTERNAL, "backend sent a message without response headers");
        } else if (trailers !== undefined) {
          const code = Number(single(trailers["grpc-status"]));
          const details = decodeGrpcMessage(single(trailers["grpc-message"]) ?? "");
          if (Number.isInteger(code) && code >= 0 && code <= 16) {
            finish(code as StatusCode, details, trailers);
          } else finish(Status.UNKNOWN, `backend sent an invalid grpc-status ${trailers["grpc-status"]}`);
        } else if (error !== undefined && (error as { code?: string }).code !== "ERR_HTTP2_STREAM_ERROR") {
          // The connection failed or broke (refused, reset, GOAWAY with an error), not this one stream.
          finish(Status.UNAVAILABLE, `backend unreachable: ${error.message}`);
        } else if (current.rstCode !== undefined && current.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
          finish(statusForReset(current.rstCode), `Received RST_STREAM with code ${current.rstCode}`);
        } else {
          finish(Status.UNKNOWN, "No status received");
        }
      });
    };
    attempt(1);
    return {
      cancel: () => {
        if (finished) return;
        finished = true;
        if (!stream.closed && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
      },
    };
  }

  /** Closes the session; calls in flight end with UNAVAILABLE or CANCELLED. */
  close(): void {
    this.#closed = true;
    this.#session?.destroy();
    this.#session = undefined;
  }

  /** The open session, or a new one (requests made while it connects wait for it). */
  #connected(): http2.ClientHttp2Session {
    const current = this.#session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    const session = http2.connect(`http://${this.#authority}`, {
      settings: { enablePush: false, initialWindowSize: 1 << 20 },
      // Unique keys under load put thousands of streams on this one session.
      maxSessionMemory: 512,
    });
    this.#session = session;
    const drop = () => {
      if (this.#session === session) this.#session = undefined;
    };
    session.on("error", (err) => log.debug("backend session error: {error}", { error: String(err) }));
    session.on("goaway", drop); // calls in flight finish on it; new ones go to a new session
    session.on("close", () => {
      drop();
      clearInterval(keepalive);
    });
    session.on("connect", () => {
      try {
        session.setLocalWindowSize(8 << 20);
      } catch {
        // closed meanwhile
      }
    });
    const keepalive = setInterval(() => {
      if (session.closed || session.destroyed) return;
      // Destroyed with an error, so that the calls on it end UNAVAILABLE rather than CANCELLED.
      const timer = setTimeout(
        () => session.destroy(new Error("keepalive ping not answered")),
        this.#keepaliveTimeoutMs,
      );
      try {
        session.ping((err) => {
          clearTimeout(timer);
          if (err) session.destroy(err);
        });
      } catch (err) {
        clearTimeout(timer);
        session.destroy(err as Error);
      }
    }, this.#keepaliveMs);
    Deno.unrefTimer(keepalive);
    return session;
  }
}

/** Whether a stream ended unprocessed: refused by the backend, or cut off by its GOAWAY. */
function wasRefused(stream: http2.ClientHttp2Stream, error: Error | undefined): boolean {
  return stream.rstCode === NGHTTP2_REFUSED_STREAM ||
    (error as { code?: string } | undefined)?.code === "ERR_HTTP2_GOAWAY_SESSION";
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
