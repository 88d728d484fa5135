/**
 * The TLS flags: serving clients over TLS (and mTLS), and calling the backend over TLS. Files are named
 * here; tls.ts loads and checks them.
 *
 * @module
 */

import type { ClientTlsFiles, ServerTlsFiles } from "../wire/tls.ts";
import { ConfigError, type FlagTable, type Reader } from "./reader.ts";

/** The TLS flags. */
export const TLS_FLAGS = {
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-client-ca": { type: "string" },
  "backend-tls": { type: "boolean" },
  "backend-ca": { type: "string" },
  "backend-cert": { type: "string" },
  "backend-key": { type: "string" },
  "backend-server-name": { type: "string" },
} as const satisfies FlagTable;

/** TLS towards clients; undefined = plaintext h2c. */
export function serverTls(read: Reader): ServerTlsFiles | undefined {
  const cert = read.pick("tls-cert", "COLLAPSER_TLS_CERT");
  const key = read.pick("tls-key", "COLLAPSER_TLS_KEY");
  const clientCa = read.pick("tls-client-ca", "COLLAPSER_TLS_CLIENT_CA");
  if (cert === undefined && key === undefined) {
    if (clientCa !== undefined) throw new ConfigError(`${clientCa.source} needs --tls-cert and --tls-key`);
    return undefined;
  }
  if (cert === undefined || key === undefined) {
    throw new ConfigError("--tls-cert and --tls-key go together: give both (or neither, for plaintext)");
  }
  return { cert: cert.value, key: key.value, clientCa: clientCa?.value };
}

/** TLS towards the backend (implied by any of its files); undefined = plaintext h2c. */
export function backendTls(read: Reader): ClientTlsFiles | undefined {
  const files = {
    ca: read.string("backend-ca", "COLLAPSER_BACKEND_CA"),
    cert: read.string("backend-cert", "COLLAPSER_BACKEND_CERT"),
    key: read.string("backend-key", "COLLAPSER_BACKEND_KEY"),
    serverName: read.string("backend-server-name", "COLLAPSER_BACKEND_SERVER_NAME"),
  };
  const implied = Object.values(files).some((v) => v !== undefined);
  if (!read.bool("backend-tls", "COLLAPSER_BACKEND_TLS", false) && !implied) return undefined;
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new ConfigError("--backend-cert and --backend-key go together: give both or neither");
  }
  return files;
}
