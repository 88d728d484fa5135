/**
 * TLS material for both sides: the proxy's own certificate (and the CA its clients' certificates must chain
 * to, for mTLS), and what the proxy presents to and trusts of the backend. Files are read and checked
 * before use — each certificate parses, the key matches its certificate, a CA file holds at least one PEM
 * certificate — so a mistake is one line naming the file at start-up, and a failed reload keeps what was
 * loaded before.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { log } from "../util/log.ts";

/** A certificate or key file that cannot be used; the message names the file and says why. */
export class TlsError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsError";
  }
}

/** Files of the proxy's own TLS listener. */
export interface ServerTlsFiles {
  /** PEM certificate chain the proxy presents. */
  cert: string;
  /** PEM private key of that certificate. */
  key: string;
  /** PEM CA bundle client certificates must chain to; given, clients must present one (mTLS). */
  clientCa?: string;
}

/** Files and names for calling the backend over TLS. */
export interface ClientTlsFiles {
  /** PEM CA bundle the backend's certificate must chain to. @default {the runtime's root store} */
  ca?: string;
  /** PEM certificate chain presented to the backend (mTLS). */
  cert?: string;
  /** PEM private key of `cert`. */
  key?: string;
  /** Name sent as SNI and checked against the backend's certificate. @default {the target's host} */
  serverName?: string;
}

/** Options for `http2.createSecureServer` / `setSecureContext`. */
export interface ServerTls {
  cert: string;
  key: string;
  ca?: string;
  requestCert: boolean;
  rejectUnauthorized: boolean;
  /** When the proxy's certificate expires (for logs). */
  validTo: string;
}

/** Options for `http2.connect` / grpc-js SSL credentials. */
export interface ClientTls {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

async function read(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new TlsError(`${path}: cannot read the ${what}: ${(err as Error).message}`, { cause: err });
  }
}

/** The certificates in a PEM file, parsed; at least one. */
function certificates(pem: string, path: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new TlsError(`${path}: the ${what} holds no PEM certificate`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TlsError(`${path}: the ${what} is not a valid PEM certificate: ${(err as Error).message}`, {
        cause: err,
      });
    }
  });
}

/** Reads a certificate and its key, and checks that they belong together. */
async function certAndKey(
  certPath: string,
  keyPath: string,
): Promise<{ cert: string; key: string; leaf: X509Certificate }> {
  const [cert, key] = await Promise.all([read(certPath, "certificate"), read(keyPath, "private key")]);
  const [leaf] = certificates(cert, certPath, "certificate");
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsError(`${keyPath}: not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsError(`${keyPath}: this private key does not match the certificate in ${certPath}`);
  }
  return { cert, key, leaf };
}

/** Reads and checks the listener's files. @throws {TlsError} */
export async function loadServerTls(files: ServerTlsFiles): Promise<ServerTls> {
  const { cert, key, leaf } = await certAndKey(files.cert, files.key);
  let ca: string | undefined;
  if (files.clientCa !== undefined) {
    ca = await read(files.clientCa, "client CA file");
    certificates(ca, files.clientCa, "client CA file");
  }
  return {
    cert,
    key,
    ca,
    requestCert: ca !== undefined,
    rejectUnauthorized: ca !== undefined,
    validTo: leaf.validTo,
  };
}

/**
 * Reads and checks the files for calling the backend (or, with `peer`, another server: messages name
 * `--<peer>-cert`). @throws {TlsError}
 */
export async function loadClientTls(files: ClientTlsFiles, peer = "backend"): Promise<ClientTls> {
  const out: ClientTls = { servername: files.serverName };
  if (files.ca !== undefined) {
    out.ca = await read(files.ca, `${peer} CA file`);
    certificates(out.ca, files.ca, `${peer} CA file`);
  }
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TlsError(`--${peer}-cert and --${peer}-key go together: give both or neither`);
  }
  if (files.cert !== undefined && files.key !== undefined) {
    const { cert, key } = await certAndKey(files.cert, files.key);
    out.cert = cert;
    out.key = key;
  }
  return out;
}

/**
 * The verified client certificate's identity for the collapse key: the SHA-256 fingerprint of the leaf
 * certificate, so two different certificates never share, whatever their subjects say. Undefined without
 * one (no mTLS).
 */
export function peerIdentity(socket: unknown): string | undefined {
  const tls = socket as { authorized?: boolean; getPeerCertificate?: () => { fingerprint256?: string } };
  if (tls.authorized !== true || typeof tls.getPeerCertificate !== "function") return undefined;
  return tls.getPeerCertificate()?.fingerprint256 || undefined;
}

/** The TLS files the proxy was started with, loaded at start-up and again on SIGHUP. */
export class TlsMaterial {
  readonly #files: { tls?: ServerTlsFiles; backendTls?: ClientTlsFiles };

  constructor(files: { tls?: ServerTlsFiles; backendTls?: ClientTlsFiles }) {
    this.#files = files;
  }

  /** Reads and checks every file. @throws {TlsError} naming the first bad file */
  async load(): Promise<{ tls?: ServerTls; backendTls?: ClientTls }> {
    const { tls, backendTls } = this.#files;
    return {
      tls: tls && await loadServerTls(tls),
      backendTls: backendTls && await loadClientTls(backendTls),
    };
  }

  /**
   * A reloader for `onSighup`: reads the files again and hands them to `apply`; when any is bad, nothing
   * changes and the error is logged (the old certificates stay in use).
   */
  reloader(apply: (material: { tls?: ServerTls; backendTls?: ClientTls }) => void): () => Promise<void> {
    return async () => {
      if (this.#files.tls === undefined && this.#files.backendTls === undefined) return;
      let material;
      try {
        material = await this.load();
      } catch (err) {
        log.error("certificate reload: {error}; keeping the certificates in use", {
          error: (err as Error).message,
        });
        return;
      }
      try {
        apply(material);
      } catch (err) {
        log.error("certificate reload: {error}; keeping the certificates in use", {
          error: (err as Error).message,
        });
        return;
      }
      log.info("certificates reloaded", {
        tlsValidTo: material.tls?.validTo,
        backendTls: material.backendTls !== undefined,
      });
    };
  }
}

/** The TLS options node:http2's server takes from loaded material. */
export function serverSecureContext(tls: ServerTls) {
  const { cert, key, ca, requestCert, rejectUnauthorized } = tls;
  return { cert, key, ca, requestCert, rejectUnauthorized };
}
