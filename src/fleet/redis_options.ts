/**
 * What every connection of the tier's Redis clients shares — one server, a Sentinel's master, Cluster
 * nodes: the connect timeout, the reconnect backoff, TLS (a private CA and a client certificate when
 * given), and how an error reads in the one warning an outage logs.
 *
 * @module
 */

import type { RedisConfig } from "./redis_config.ts";

/** Bound on opening one connection, in ms. */
export const CONNECT_TIMEOUT_MS = 1_000;

/** Reconnect after 50, 100, 200 ms ..., at most every second. */
export const backoff = (retries: number): number => Math.min(50 * 2 ** retries, 1_000);

/** node-redis socket options for a connection to `host` (TLS as the configuration says). */
export function socketOptions(config: RedisConfig, host: string) {
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

/**
 * An error as the outage warning says it: its message, and for a refused server certificate what that
 * means (`--redis-ca` is the usual fix).
 */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && UNTRUSTED.has(code)) {
    return `TLS: Redis's certificate is not trusted (${err.message}; ${code}): is it signed by --redis-ca?`;
  }
  return err.message || err.name;
}
