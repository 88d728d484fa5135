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
 * And it closes a session that has had no call open for `idleTimeoutMs` (30 s), before the backend does:
 * backends and the hops in front of them close idle connections with a GOAWAY (grpc-go
 * `MaxConnectionIdle`, grpc-js `grpc.max_connection_idle_ms`, Envoy `idle_timeout`, AWS ALB after 60 s),
 * and on Deno 2.9.6 a GOAWAY received by a client session can abort the process (denoland/deno#36788:
 * nghttp2's assertion in `find_stream_on_goaway_func`, or a segfault). bench/idle_goaway.ts measured it:
 * the proxy died on the backend's GOAWAY whatever the idle period (10 s, 60 s, 4 min), while sessions the
 * proxy closed itself never took it down. Keepalive pings on idle sessions would not help: idle policies
 * count calls, not pings (an idle session pinged every quarter period was closed on time), and grpc-go's
 * default policy answers pings without calls with GOAWAY `too_many_pings`. For the same reason
 * {@linkcode H2Channel.ready} is not activity. Deno 2.8.3 survives every case.
 *
 * @module
 */

import * as http2 from "node:http2";
import type { IncomingHttpHeaders } from "node:http2";
import {
  decodeGrpcMessage,
  encodeFrame,
  FrameDecoder,
  GrpcWireError,
  Status,
  type StatusCode,
} from "../wire/grpc_wire.ts";
import type { ClientTls } from "../wire/tls.ts";
import { corkTurn } from "../wire/cork.ts";
import { openSession, type Session, type SessionHost } from "./h2_session.ts";
import { forwardedHeaders, statusForHttp, statusForReset, wasRefused } from "./h2_mapping.ts";
import { DEFAULT_IDLE_TIMEOUT_MS } from "./upstream.ts";
import {
  RESPONSE_HOP_HEADERS,
  type ResponseSink,
  single,
  statusEvent,
  type UpstreamCall,
  withoutHopHeaders,
} from "../wire/response.ts";

const {
  NGHTTP2_FLAG_END_STREAM: END_STREAM,
  NGHTTP2_CANCEL,
} = http2.constants;

/** Re-exported: how long a backend session with no call open is kept (defined beside grpc-js's). */
export { DEFAULT_IDLE_TIMEOUT_MS };

/** Options for {@linkcode H2Channel}. */
export interface H2ChannelOptions {
  /** Largest response message accepted, in bytes, after decompression. @default {Infinity} */
  maxMessageBytes?: number;
  /** Interval of keepalive pings while the session is open, in ms. @default {30_000} */
  keepaliveMs?: number;
  /** How long a keepalive ping may go unanswered before the session is dropped, in ms. @default {10_000} */
  keepaliveTimeoutMs?: number;
  /**
   * Close a session once it has had no call open for this long, in ms; the next call opens a new one. A
   * session with a call open is never closed for idleness. `Infinity` keeps idle sessions until the backend
   * closes them. @default {DEFAULT_IDLE_TIMEOUT_MS} (30 s)
   */
  idleTimeoutMs?: number;
  /** Connect over TLS (ALPN h2) with these; undefined = plaintext h2c. */
  tls?: ClientTls;
  /**
   * Connect to this IP address rather than resolving the authority's host (one address of a name the
   * balancer resolved): the `:authority` stays the name, and over TLS so do the SNI and the certificate
   * check. @default {the authority's host, resolved by the system}
   */
  address?: { readonly host: string; readonly port: number };
}

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

/** `host:port` or `[v6]:port`, the only targets this channel serves; undefined for anything else. */
export function plainAuthority(target: string): string | undefined {
  return /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(target) ? target : undefined;
}

/** A raw HTTP/2 client for one backend address. */
export class H2Channel {
  readonly #authority: string;
  readonly #maxMessageBytes: number;
  /** What its sessions read and tell (h2_session.ts). */
  readonly #host: SessionHost;
  /** The session new calls go to. */
  #current: Session | undefined;
  /** Every session not yet closed, including retired ones still finishing calls. */
  readonly #sessions = new Set<Session>();
  #closed = false;
  #tls: ClientTls | undefined;
  readonly #address: H2ChannelOptions["address"];

  constructor(authority: string, options: H2ChannelOptions = {}) {
    const { idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS } = options;
    if (!(idleTimeoutMs > 0)) {
      throw new RangeError(
        "Cannot create H2Channel: idleTimeoutMs must be a positive number or Infinity: " +
          `received ${idleTimeoutMs}`,
      );
    }
    this.#authority = authority;
    this.#tls = options.tls;
    this.#address = options.address;
    this.#maxMessageBytes = options.maxMessageBytes ?? Infinity;
    this.#host = {
      keepaliveMs: options.keepaliveMs ?? 30_000,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs ?? 10_000,
      idleTimeoutMs,
      retire: (session) => {
        if (this.#current === session) this.#current = undefined;
      },
      forget: (session) => {
        if (this.#current === session) this.#current = undefined;
        this.#sessions.delete(session);
      },
    };
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
    options: H2CallOptions = {},
  ): UpstreamCall {
    let finished = false;
    const finish = (code: StatusCode, details: string, trailers?: IncomingHttpHeaders) => {
      if (finished) return;
      finished = true;
      sink(statusEvent(code, details, trailers && withoutHopHeaders(trailers)));
    };
    let stream: http2.ClientHttp2Stream | undefined;
    const headers = forwardedHeaders(method, caller, options.traceparent);
    const body = encodeFrame(message);
    /** Sends the request; `retries`: how many more times a refused attempt may be sent again. */
    const attempt = (retries: number) => {
      if (this.#closed) {
        queueMicrotask(() => finish(Status.UNAVAILABLE, "backend channel closed"));
        return;
      }
      let session: Session;
      let current: http2.ClientHttp2Stream;
      try {
        session = this.#connected();
        corkTurn(session.h2);
        current = stream = session.h2.request(headers, { endStream: false });
        current.end(body);
      } catch (err) {
        // A header node:http2 will not send, or a session torn down under us.
        queueMicrotask(() => finish(Status.INTERNAL, `cannot call the backend: ${err}`));
        return;
      }
      session.open++;
      let responded = false;
      let decoder: FrameDecoder | undefined;
      let early: Uint8Array[] | undefined;
      let trailers: IncomingHttpHeaders | undefined;
      let error: Error | undefined;
      current.on("response", (headers, flags: number) => {
        responded = true;
        if (finished) return;
        const httpStatus = Number(headers[":status"]);
        if (headers["grpc-status"] !== undefined && (httpStatus !== 200 || (flags & END_STREAM) !== 0)) {
          // Trailers-only: the status came in the one HEADERS frame. It wins over a non-200 HTTP status
          // (an Envoy or a rate limiter in front of the backend may send both).
          trailers = headers;
        } else if (httpStatus !== 200) {
          finish(statusForHttp(httpStatus), `Received HTTP status code ${httpStatus}`);
          current.close(NGHTTP2_CANCEL);
        } else {
          decoder = new FrameDecoder({
            encoding: single(headers["grpc-encoding"]),
            maxMessageBytes: this.#maxMessageBytes,
          });
          sink({ type: "headers", headers: withoutHopHeaders(headers, RESPONSE_HOP_HEADERS) });
          if (early !== undefined) { for (const chunk of early.splice(0)) onData(chunk); }
        }
      });
      const onData = (chunk: Uint8Array) => {
        if (finished) return;
        if (decoder === undefined) {
          // Deno 2.8.3's node:http2 emits the first DATA before 'response'; keep it for then.
          (early ??= []).push(chunk);
          return;
        }
        let frames: Uint8Array[];
        try {
          frames = decoder.pushFrames(chunk);
        } catch (err) {
          fail(err);
          return;
        }
        for (const frame of frames) {
          if (finished) return; // cancelled by the sink
          sink({ type: "message", frame });
        }
      };
      const fail = (err: unknown) => {
        const wire = err instanceof GrpcWireError ? err : undefined;
        finish(wire?.code ?? Status.INTERNAL, wire?.message ?? String(err));
        current.close(NGHTTP2_CANCEL);
      };
      current.on("data", onData);
      current.on("trailers", (headers) => trailers = headers);
      current.on("error", (err) => error = err);
      current.on("close", () => {
        if (--session.open === 0) session.idleSince = performance.now();
        if (finished) return;
        const h2 = session.h2;
        const refused = !responded && early === undefined && wasRefused(current, error);
        if (options.unreached !== undefined && (refused || !session.connected)) {
          if (options.unreached(refused ? "refused" : "connect")) {
            finished = true;
            return;
          }
        }
        if (refused && retries > 0) {
          // The backend did not process it (RFC 9113 §8.7): a stream refused, or one that crossed the
          // backend's GOAWAY on the wire. Sending it again is safe; a session that is going away is not
          // used for it (the refusal of one stream alone says nothing about the connection).
          if ((h2.closed || h2.destroyed) && this.#current === session) this.#current = undefined;
          return attempt(retries - 1);
        }
        if (early !== undefined && early.length > 0) {
          finish(Status.INTERNAL, "backend sent a message without response headers");
        } else if (trailers !== undefined) {
          const status = single(trailers["grpc-status"]) ?? "";
          const code = /^\d{1,2}$/.test(status) ? Number(status) : NaN;
          if (!(code >= 0 && code <= 16)) {
            return finish(Status.UNKNOWN, `backend sent an invalid grpc-status ${JSON.stringify(status)}`);
          }
          try {
            decoder?.finish(); // a truncated last message is not an answer, whatever the status says
          } catch (err) {
            return fail(err);
          }
          finish(code as StatusCode, decodeGrpcMessage(single(trailers["grpc-message"]) ?? ""), trailers);
        } else if (error !== undefined && (error as { code?: string }).code !== "ERR_HTTP2_STREAM_ERROR") {
          // The connection failed or broke (refused, reset, GOAWAY with an error), not this one stream.
          finish(Status.UNAVAILABLE, `backend unreachable: ${error.message}`);
        } else if (h2.destroyed || h2.socket === undefined || h2.socket.destroyed) {
          // The connection went away under the call (the backend crashed or closed it, or close()): node
          // reports that as a CANCEL of every open stream, sometimes before it marks the session destroyed
          // (Deno 2.8.3: a backend killed mid-call left the session closed, its socket destroyed).
          finish(Status.UNAVAILABLE, "backend connection closed");
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
        if (stream !== undefined && !stream.closed && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
      },
    };
  }

  /**
   * New TLS material (a certificate reload): sessions opened from now on use it; the open one is retired
   * (it finishes the calls it has, and new calls go to a new session).
   */
  setTls(tls: ClientTls): void {
    this.#tls = tls;
    const current = this.#current;
    this.#current = undefined;
    if (current !== undefined && current.open === 0) current.h2.close();
  }

  /**
   * Whether the backend can be reached now: resolves true once a session has the backend's SETTINGS
   * (opening one if there is none), false if that fails or takes longer than `timeoutMs`. Unlike grpc-js's
   * `waitForReady`, a probe is not activity: a session opened or kept for probes alone is closed after
   * `idleTimeoutMs` like any other, so probing every few seconds does not hold an idle connection open
   * until the backend's GOAWAY (see the module comment).
   */
  ready(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    let session: Session;
    try {
      session = this.#connected();
    } catch {
      return Promise.resolve(false);
    }
    if (session.settled) return Promise.resolve(true);
    const { h2 } = session;
    return new Promise((resolve) => {
      const done = (ready: boolean) => {
        clearTimeout(timer);
        h2.off("remoteSettings", settled);
        h2.off("close", closed);
        resolve(ready);
      };
      const settled = () => done(true);
      const closed = () => done(false);
      const timer = setTimeout(closed, timeoutMs);
      h2.once("remoteSettings", settled);
      h2.once("close", closed);
    });
  }

  /** @internal Sessions not yet closed: the current one and retired ones still finishing calls. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Closes every session; calls in flight end with UNAVAILABLE, and so do calls made afterwards. */
  close(): void {
    this.#closed = true;
    for (const session of this.#sessions) session.h2.destroy();
    this.#sessions.clear();
    this.#current = undefined;
  }

  /** The open session, or a new one (requests made while it connects wait for it). */
  #connected(): Session {
    const current = this.#current;
    if (current !== undefined && !current.h2.closed && !current.h2.destroyed) return current;
    const session = openSession(this.#authority, this.#tls, this.#address, this.#host);
    this.#current = session;
    this.#sessions.add(session);
    return session;
  }
}
