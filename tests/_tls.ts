/**
 * TLS test material, generated at test time in process with `@peculiar/x509` over Deno's WebCrypto (no
 * `openssl` command needed), written to a temporary directory removed on dispose, so that no private key is
 * checked in. EC P-256 keys keep it fast (tens of milliseconds for the set); still, generate it once per
 * test file, not per test.
 *
 * - `ca`, and `otherCa` (an unrelated CA);
 * - `server` (A) and `serverB` (a different key), both for DNS `localhost` and IP 127.0.0.1, signed by `ca`;
 * - `backendInternal`: a server certificate valid only for DNS `backend.internal`, signed by `ca`;
 * - `alice` and `bob` (clientAuth) signed by `ca`; `mallory` (clientAuth) signed by `otherCa`;
 * - bad files: `notPem` (a text file), and `wrongKey` (the key of `serverB`, which does not match `server`).
 *
 * Beside it: `servedFingerprint` (which certificate a new connection is served), `tlsClient`,
 * `startTlsBackend` (a grpc-js backend over TLS) and `disposing`.
 */

import "reflect-metadata"; // @peculiar/x509 (through tsyringe) needs the Reflect metadata polyfill
import * as x509 from "@peculiar/x509";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { connect } from "node:tls";
import { bytes, parse, TEST_SERVICE } from "./_helpers.ts";

/** One certificate: its files, and their contents. */
export interface TlsCert {
  /** Path of the PEM certificate. */
  readonly cert: string;
  /** Path of the PEM private key. */
  readonly key: string;
  /** The PEM certificate. */
  readonly certPem: string;
  /** The PEM private key. */
  readonly keyPem: string;
  /** SHA-256 fingerprint as `node:tls` reports it (`AB:CD:...`). */
  readonly fingerprint256: string;
}

/** Everything the TLS tests need; dispose removes the directory. */
export interface TlsFixture extends AsyncDisposable {
  /** The temporary directory holding every file. */
  readonly dir: string;
  readonly ca: TlsCert;
  readonly otherCa: TlsCert;
  readonly server: TlsCert;
  readonly serverB: TlsCert;
  readonly backendInternal: TlsCert;
  readonly alice: TlsCert;
  readonly bob: TlsCert;
  readonly mallory: TlsCert;
  /** A text file that holds no PEM at all. */
  readonly notPem: string;
  /** A private key that belongs to another certificate (`serverB`'s), not to `server`. */
  readonly wrongKey: string;
  /** A path inside `dir` (for files a test writes itself). */
  file(name: string): string;
}

/** ECDSA P-256 with SHA-256: small keys, fast to make, accepted by every TLS stack the tests use. */
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
/** Certificates are valid from an hour ago (clock skew) for two days. */
const VALID_FROM_MS = -3_600_000;
const VALID_FOR_MS = 2 * 86_400_000;

/** Serial numbers must differ among certificates of one CA; random positive ones do. */
function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  bytes[0] &= 0x7f; // positive
  bytes[0] |= 0x01; // no leading zero byte
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function pemOf(tag: string, der: ArrayBuffer): string {
  const base64 = Buffer.from(der).toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${tag}-----\n${base64}-----END ${tag}-----\n`;
}

/** A key pair and its certificate, before they are written out. */
interface Issued {
  readonly keys: CryptoKeyPair;
  readonly cert: x509.X509Certificate;
}

/** A self-signed CA (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign, both critical). */
async function issueCa(name: string): Promise<Issued> {
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=collapser test ${name}`,
    notBefore: new Date(now + VALID_FROM_MS),
    notAfter: new Date(now + VALID_FOR_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keys, cert };
}

/** A leaf certificate for `usage` (and `names` as subjectAltName) signed by `issuer`. */
async function issueLeaf(
  name: string,
  issuer: Issued,
  usage: "serverAuth" | "clientAuth",
  names: x509.JsonGeneralName[] = [],
): Promise<Issued> {
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      [usage === "serverAuth" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${name}`,
    issuer: issuer.cert.subject,
    notBefore: new Date(now + VALID_FROM_MS),
    notAfter: new Date(now + VALID_FOR_MS),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    extensions,
  });
  return { keys, cert };
}

/** Generates the whole set (a few tens of milliseconds, in process). */
export async function generateTlsFixture(): Promise<TlsFixture> {
  const dir = await Deno.makeTempDir({ prefix: "collapser_tls_" });
  const file = (name: string) => `${dir}/${name}`;
  try {
    const write = async (name: string, issued: Issued): Promise<TlsCert> => {
      const certPem = issued.cert.toString("pem") + "\n";
      const keyPem = pemOf("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", issued.keys.privateKey));
      await Deno.writeTextFile(file(`${name}.pem`), certPem);
      await Deno.writeTextFile(file(`${name}.key`), keyPem, { mode: 0o600 });
      return {
        cert: file(`${name}.pem`),
        key: file(`${name}.key`),
        certPem,
        keyPem,
        fingerprint256: new X509Certificate(certPem).fingerprint256,
      };
    };
    const [ca, otherCa] = await Promise.all([issueCa("ca"), issueCa("other-ca")]);
    const serverNames: x509.JsonGeneralName[] = [{ type: "dns", value: "localhost" }, {
      type: "ip",
      value: "127.0.0.1",
    }];
    const issued: [string, Issued][] = [
      ["ca", ca],
      ["other-ca", otherCa],
      ["server", await issueLeaf("server", ca, "serverAuth", serverNames)],
      ["server-b", await issueLeaf("server-b", ca, "serverAuth", serverNames)],
      [
        "backend-internal",
        await issueLeaf("backend-internal", ca, "serverAuth", [{ type: "dns", value: "backend.internal" }]),
      ],
      ["alice", await issueLeaf("alice", ca, "clientAuth")],
      ["bob", await issueLeaf("bob", ca, "clientAuth")],
      ["mallory", await issueLeaf("mallory", otherCa, "clientAuth")],
    ];
    const [caCert, otherCaCert, server, serverB, backendInternal, alice, bob, mallory] = await Promise.all(
      issued.map(([name, it]) => write(name, it)),
    );
    await Deno.writeTextFile(file("not-pem.txt"), "this is not a certificate, nor any PEM at all\n");
    await Deno.copyFile(file("server-b.key"), file("wrong.key"));
    return {
      dir,
      ca: caCert,
      otherCa: otherCaCert,
      server,
      serverB,
      backendInternal,
      alice,
      bob,
      mallory,
      notPem: file("not-pem.txt"),
      wrongKey: file("wrong.key"),
      file,
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    };
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
}

/**
 * Opens a new TLS connection to `127.0.0.1:port` (SNI `localhost`, ALPN h2) trusting `ca`, presenting
 * `client` if given, and resolves with the SHA-256 fingerprint of the certificate the server presented.
 */
export async function servedFingerprint(port: number, ca: TlsCert, client?: TlsCert): Promise<string> {
  const socket = connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: ca.certPem,
    cert: client?.certPem,
    key: client?.keyPem,
    ALPNProtocols: ["h2"],
  });
  try {
    await once(socket, "secureConnect");
    return socket.getPeerCertificate().fingerprint256;
  } finally {
    socket.destroy();
  }
}

const pem = (text: string | undefined) => text === undefined ? null : Buffer.from(text);

/** Runs `fn` on dispose (`await using`), whatever an assertion does. */
export const disposing = (fn: () => unknown): AsyncDisposable => ({
  [Symbol.asyncDispose]: async () => void await fn(),
});

/**
 * A grpc-js backend over TLS with `cert` on `localhost`, requiring client certificates from `ca` when
 * `mtls`. Unary answers `{ echo, n, peer }` (`peer`: the client certificate's fingerprint, or null); a
 * request with `hold: true` is answered once `options.hold` resolves. Bidi echoes each message.
 *
 * Its trusted roots are `ca` even without mTLS: with grpc-js's default (every public root), Deno's TLS
 * server appends them all to the chain it presents, and clients refuse the oversized handshake.
 */
export async function startTlsBackend(
  ca: TlsCert,
  cert: TlsCert,
  options: { mtls?: boolean; hold?: Promise<void> } = {},
) {
  const calls = { Unary: 0, Bidi: 0 };
  const server = new grpc.Server();
  server.addService({ Unary: TEST_SERVICE.Unary, Bidi: TEST_SERVICE.Bidi }, {
    Unary(c: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) {
      const n = ++calls.Unary;
      // Which client certificate the proxy presented, if any.
      const peer = c.getAuthContext()?.sslPeerCertificate?.fingerprint256 ?? null;
      const request = parse(c.request);
      const answer = () => done(null, bytes({ echo: request, n, peer }));
      if (request.hold && options.hold) void options.hold.then(answer);
      else answer();
    },
    Bidi(c: grpc.ServerDuplexStream<Buffer, Buffer>) {
      calls.Bidi++;
      c.on("data", (m: Buffer) => c.write(bytes({ echo: parse(m) })));
      c.on("end", () => c.end());
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    pem(ca.certPem),
    [{ private_key: pem(cert.keyPem)!, cert_chain: pem(cert.certPem)! }],
    options.mtls ?? false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("localhost:0", credentials, (err, p) => err ? reject(err) : resolve(p))
  );
  return { port, calls, ...disposing(() => server.forceShutdown()) };
}

/**
 * A grpc-js client of `localhost:port` over TLS trusting `ca`, presenting `who`'s certificate if given; on a
 * connection of its own (no subchannel shared with other clients).
 */
export function tlsClient(port: number, ca: TlsCert, who?: TlsCert): grpc.Client {
  const credentials = grpc.credentials.createSsl(pem(ca.certPem), pem(who?.keyPem), pem(who?.certPem));
  return new grpc.Client(`localhost:${port}`, credentials, { "grpc.use_local_subchannel_pool": 1 });
}
