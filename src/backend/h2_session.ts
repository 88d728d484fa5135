/**
 * One HTTP/2 session of an {@linkcode H2Channel} to the backend: opened (to the authority, or to one of its
 * addresses while speaking as its name), kept alive with pings while calls are open, and closed by the
 * proxy itself after it has been idle for a while (see h2_channel.ts for why). The channel decides which
 * session a call goes to; this file only looks after one.
 *
 * @module
 */

import * as http2 from "node:http2";
import { connect as netConnect } from "node:net";
import type { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { log } from "../util/log.ts";
import type { ClientTls } from "../wire/tls.ts";

const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** A session and the number of calls open on it (keepalive pings only while there are some). */
export interface Session {
  readonly h2: http2.ClientHttp2Session;
  open: number;
  /** When `open` last fell to 0 (`performance.now()`). */
  idleSince: number;
  /** Whether the backend's SETTINGS have arrived: it speaks HTTP/2. */
  settled: boolean;
  /** Whether the connection (and its TLS handshake) was made: before that, nothing reached the backend. */
  connected: boolean;
}

/** The channel a session belongs to, as the session sees it. */
export interface SessionHost {
  /** Interval of keepalive pings, in ms; doubled when the backend asks for fewer. */
  keepaliveMs: number;
  /** How long a ping may go unanswered, in ms. */
  readonly keepaliveTimeoutMs: number;
  /** Close the session after this long without a call, in ms (Infinity: never). */
  readonly idleTimeoutMs: number;
  /** New calls must no longer go to `session` (GOAWAY received, or about to close for idleness). */
  retire(session: Session): void;
  /** `session` has closed. */
  forget(session: Session): void;
}

/** A socket to `address` that speaks as the authority's name (SNI and certificate check over TLS). */
function connectTo(
  authority: string,
  address: { host: string; port: number },
  tls: ClientTls | undefined,
): Duplex {
  const { host, port } = address;
  if (tls === undefined) return netConnect({ host, port });
  const servername = tls.servername ?? authority.replace(/:\d+$/, "");
  return tlsConnect({ ...tls, host, port, servername, ALPNProtocols: ["h2"] });
}

/**
 * Opens a session to `authority` (or to `address`, speaking as the authority), with keepalive pings while
 * calls are open and an idle close after `host.idleTimeoutMs`; `host` is told when new calls must no longer
 * go to it and when it has closed.
 */
export function openSession(
  authority: string,
  tls: ClientTls | undefined,
  address: { host: string; port: number } | undefined,
  host: SessionHost,
): Session {
  const h2 = http2.connect(`${tls ? "https" : "http"}://${authority}`, {
    settings: { enablePush: false, initialWindowSize: 1 << 20 },
    // Unique keys under load put thousands of streams on this one session.
    maxSessionMemory: 512,
    ...tls,
    ...(tls && { ALPNProtocols: ["h2"] }),
    ...(address && { createConnection: () => connectTo(authority, address, tls) }),
  });
  const session: Session = { h2, open: 0, idleSince: performance.now(), settled: false, connected: false };
  let pingTimer: ReturnType<typeof setTimeout> | undefined;
  h2.on("error", (err) => log.debug("backend session error: {error}", { error: String(err) }));
  h2.once("remoteSettings", () => session.settled = true);
  h2.on("goaway", (errorCode: number, _lastStreamId: number, data?: Uint8Array) => {
    // Calls in flight finish on this session; new ones go to a new one.
    host.retire(session);
    if (
      errorCode === NGHTTP2_ENHANCE_YOUR_CALM && data && new TextDecoder().decode(data) === "too_many_pings"
    ) {
      // The backend's keepalive policy is stricter (grpc-go's default: one ping per 5 min): back off, as
      // grpc-js does.
      host.keepaliveMs = Math.min(host.keepaliveMs * 2, 2 ** 31 - 1);
      log.warn("backend asked for fewer keepalive pings; now every {ms} ms", { ms: host.keepaliveMs });
    }
  });
  h2.on("close", () => {
    host.forget(session);
    clearInterval(keepalive);
    clearTimeout(pingTimer);
    clearTimeout(idleTimer);
  });
  h2.on("connect", () => {
    session.connected = true;
    try {
      h2.setLocalWindowSize(8 << 20);
    } catch {
      // closed meanwhile
    }
  });
  const keepalive = setInterval(() => {
    // Only while calls are open, as grpc-js does: servers count pings on an idle connection as abuse.
    if (session.open === 0 || pingTimer !== undefined || h2.closed || h2.destroyed) return;
    if (!session.settled) {
      // No ping before the backend's SETTINGS: Deno 2.8.3 cancels a ping sent while the connection is being
      // set up, and the session (and its calls) with it. The same timeout bounds the wait for the SETTINGS,
      // so a peer that accepts TCP but never speaks HTTP/2 is still dropped.
      pingTimer = setTimeout(
        () => h2.destroy(new Error("keepalive: the backend did not speak HTTP/2 in time")),
        host.keepaliveTimeoutMs,
      );
      Deno.unrefTimer(pingTimer as unknown as number);
      h2.once("remoteSettings", () => {
        clearTimeout(pingTimer);
        pingTimer = undefined;
      });
      return;
    }
    // Destroyed with an error, so that the calls on it end UNAVAILABLE rather than CANCELLED.
    pingTimer = setTimeout(
      () => h2.destroy(new Error("keepalive ping not answered")),
      host.keepaliveTimeoutMs,
    );
    Deno.unrefTimer(pingTimer as unknown as number);
    try {
      h2.ping((err) => {
        clearTimeout(pingTimer);
        pingTimer = undefined;
        if (err) h2.destroy(err);
      });
    } catch (err) {
      clearTimeout(pingTimer);
      pingTimer = undefined;
      h2.destroy(err as Error);
    }
  }, host.keepaliveMs);
  Deno.unrefTimer(keepalive as unknown as number);
  // One timer per session, not one per call: when it fires early (a call was open, or one ended since it
  // was set) it is set again for the rest of the period.
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const idleCheck = () => {
    if (h2.closed || h2.destroyed) return;
    const idleMs = session.open === 0 ? performance.now() - session.idleSince : 0;
    if (idleMs >= host.idleTimeoutMs) {
      // Retired first, so that no call goes to it while its GOAWAY is on the way.
      host.retire(session);
      log.debug("closing the backend session, idle for {ms} ms", { ms: Math.round(idleMs) });
      h2.close();
      return;
    }
    idleTimer = setTimeout(idleCheck, Math.min(host.idleTimeoutMs - idleMs, 2 ** 31 - 1));
    Deno.unrefTimer(idleTimer as unknown as number);
  };
  if (host.idleTimeoutMs !== Infinity) idleCheck();
  return session;
}
