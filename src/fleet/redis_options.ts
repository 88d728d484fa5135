/**
 * What every connection of the tier's Redis clients shares — one server, a Sentinel's master, Cluster
 * nodes: the connect timeout, the reconnect backoff, TLS (a private CA and a client certificate when
 * given), and how an error reads in the one warning an outage logs.
 *
 * @module
 */

import { SocketClosedUnexpectedlyError } from "@redis/client";
import type { RedisConfig } from "./redis_config.ts";

/** Bound on opening one connection, in ms. */
export const CONNECT_TIMEOUT_MS = 1_000;

/** Reconnect after 50, 100, 200 ms ..., at most every second. */
export const backoff = (retries: number): number => Math.min(50 * 2 ** retries, 1_000);

/** node-redis socket options for a connection to `host` (TLS as the configuration says). */
export function socketOptions(config: RedisConfig, host: string) {
  if (config.tls) guardTlsAlerts();
  const pem = config.tlsPem;
  return {
    connectTimeout: CONNECT_TIMEOUT_MS,
    reconnectStrategy: backoff,
    ...(config.tls
      ? {
        tls: true as const,
        // SNI for names only (an IP address is checked against the certificate's IP entries).
        ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
        ...(pem?.ca !== undefined ? { ca: pem.ca } : {}),
        ...(pem?.cert !== undefined ? { cert: pem.cert, key: pem.key } : {}),
      }
      : {}),
  };
}

/** TLS errors that mean the server's certificate was refused (node:tls codes). */
const UNTRUSTED = new Set([
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Alerts a server sends when it refuses the client's certificate (or the lack of one). */
const REFUSED_CLIENT =
  /^received fatal alert: (CertificateRequired|BadCertificate|UnknownCA|CertificateUnknown|UnsupportedCertificate|CertificateExpired|CertificateRevoked|AccessDenied)/;

/**
 * An error as the outage warning says it: its message, and for a refused certificate what that means
 * (`--redis-ca`, or `--redis-cert` and `--redis-key`, are the usual fixes).
 */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && UNTRUSTED.has(code)) {
    return `TLS: Redis's certificate is not trusted (${err.message}; ${code}): is it signed by --redis-ca?`;
  }
  if (REFUSED_CLIENT.test(err.message)) {
    return `TLS: Redis refused this proxy's client certificate (${err.message}): check --redis-cert and --redis-key`;
  }
  return err.message || err.name;
}

/**
 * The reason an outage's one warning gives: the most telling of the errors seen lately. A connection the
 * server closes shows as "Socket closed unexpectedly", often in the same breath as the error that says why
 * (a refused certificate, a TLS alert); the why wins.
 */
export class Reason {
  #text = "no answer yet";
  #telling = false;

  /**
   * Notes an error; a closed socket does not replace a more telling reason, and stands for a TLS alert
   * received just before (whose own copy of the error may not reach the socket: see guardTlsAlerts).
   */
  note(err: unknown): void {
    const closed = err instanceof SocketClosedUnexpectedlyError;
    if (closed && this.#telling) return;
    const alert = closed && lastAlert !== undefined && performance.now() - lastAlert.at < ALERT_WINDOW_MS
      ? lastAlert.error
      : undefined;
    this.#text = describe(alert ?? err);
    this.#telling = !closed || alert !== undefined;
  }

  /** The reason now; the next error may replace it, whatever it is. */
  take(): string {
    this.#telling = false;
    return this.#text;
  }
}

/** How long errors are gathered before the first of an outage is reported, in ms. */
export const REASON_WINDOW_MS = 20;

let guarded = false;
/** The last TLS alert received (thrown from tls_wrap), and when. */
let lastAlert: { error: Error; at: number } | undefined;
/** How long a closed socket is taken to be that alert's doing, in ms. */
const ALERT_WINDOW_MS = 200;

/**
 * Works around Deno 2.8's node:tls: when the server sends a fatal alert after the TLS 1.3 handshake — a
 * Redis with `tls-auth-clients yes` refusing our client certificate, or the lack of one — the error reaches
 * the socket's 'error' listener (node-redis reports it and reconnects) and is also thrown, uncaught, from the
 * runtime's read callback (`tls_wrap.ts`), which would end the process. Only that second copy is stopped
 * here: an error whose message is a received fatal alert and that was thrown from tls_wrap. A Redis
 * misconfigured this way then costs one warning, as any other outage, not the proxy.
 */
function guardTlsAlerts(): void {
  if (guarded) return;
  guarded = true;
  globalThis.addEventListener("error", (event) => {
    const err = event.error;
    if (
      err instanceof Error && err.message.startsWith("received fatal alert:") &&
      String(err.stack).includes("tls_wrap")
    ) {
      event.preventDefault();
      lastAlert = { error: err, at: performance.now() };
    }
  });
}
