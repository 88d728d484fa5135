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

import type { IncomingHttpHeaders } from "node:http2";
import { frameOf } from "../wire/grpc_wire.ts";
import type { ClientTls } from "../wire/tls.ts";
import { openSession, type Session, type SessionHost } from "./h2_session.ts";
import { forwardedHeaders } from "./h2_mapping.ts";
import { DEFAULT_IDLE_TIMEOUT_MS } from "./upstream.ts";
import type { ResponseSink, UpstreamCall } from "../wire/response.ts";
import { type CallChannel, H2Call, type H2CallOptions } from "./h2_call.ts";

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

export type { H2CallOptions, Unreached } from "./h2_call.ts";

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
  /** What its calls see of it (h2_call.ts). */
  readonly #callChannel: CallChannel;

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
    this.#callChannel = {
      isClosed: () => this.#closed,
      maxMessageBytes: this.#maxMessageBytes,
      connected: () => this.#connected(),
      drop: (session) => {
        if (this.#current === session) this.#current = undefined;
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
    const call = new H2Call(
      this.#callChannel,
      forwardedHeaders(method, caller, options.traceparent),
      frameOf(message),
      sink,
      options,
    );
    call.attempt(1);
    return call;
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
