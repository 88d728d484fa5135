/**
 * TLS test material, generated at test time with `openssl` (Debian package `openssl`) in a temporary
 * directory removed on dispose, so that no private key is checked in. EC P-256 keys keep it fast; still,
 * generate it once per test file, not per test.
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

async function openssl(dir: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", { args, cwd: dir, stdout: "piped", stderr: "piped" }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error("the TLS tests need the `openssl` command: apt-get install openssl", { cause: err });
    }
    throw err;
  }
  if (!output.success) {
    throw new Error(`openssl ${args.join(" ")} failed:\n${new TextDecoder().decode(output.stderr)}`);
  }
}

const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Serial numbers must differ among certificates of one CA; random ones do. */
function serial(): string {
  return "0x" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** Generates the whole set (about a second). */
export async function generateTlsFixture(): Promise<TlsFixture> {
  const dir = await Deno.makeTempDir({ prefix: "collapser_tls_" });
  const file = (name: string) => `${dir}/${name}`;
  try {
    const load = async (name: string): Promise<TlsCert> => {
      const certPem = await Deno.readTextFile(file(`${name}.pem`));
      return {
        cert: file(`${name}.pem`),
        key: file(`${name}.key`),
        certPem,
        keyPem: await Deno.readTextFile(file(`${name}.key`)),
        fingerprint256: new X509Certificate(certPem).fingerprint256,
      };
    };
    const ca = async (name: string) => {
      await openssl(dir, [
        "req",
        "-x509",
        ...P256,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        "2",
        "-subj",
        `/CN=collapser test ${name}`,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      ]);
    };
    const leaf = async (name: string, issuer: string, extensions: string) => {
      await Deno.writeTextFile(
        file(`${name}.ext`),
        `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n${extensions}\n`,
      );
      await openssl(dir, [
        "req",
        "-new",
        ...P256,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
        "-subj",
        `/CN=${name}`,
      ]);
      await openssl(dir, [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        `${issuer}.pem`,
        "-CAkey",
        `${issuer}.key`,
        "-set_serial",
        serial(),
        "-days",
        "2",
        "-extfile",
        `${name}.ext`,
        "-out",
        `${name}.pem`,
      ]);
    };
    const serverNames = "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1";
    const client = "extendedKeyUsage=clientAuth";
    await Promise.all([ca("ca"), ca("other-ca")]);
    await Promise.all([
      leaf("server", "ca", serverNames),
      leaf("server-b", "ca", serverNames),
      leaf("backend-internal", "ca", "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:backend.internal"),
      leaf("alice", "ca", client),
      leaf("bob", "ca", client),
      leaf("mallory", "other-ca", client),
    ]);
    await Deno.writeTextFile(file("not-pem.txt"), "this is not a certificate, nor any PEM at all\n");
    await Deno.copyFile(file("server-b.key"), file("wrong.key"));
    const [caCert, otherCa, server, serverB, backendInternal, alice, bob, mallory] = await Promise.all(
      ["ca", "other-ca", "server", "server-b", "backend-internal", "alice", "bob", "mallory"].map(load),
    );
    return {
      dir,
      ca: caCert,
      otherCa,
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
