/**
 * TLS through the real `main.ts` process: SIGHUP reloads the listener's certificate files (and keeps the
 * ones in use when a file is bad), the backend TLS flags, and start-up refusals of bad TLS input.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  admin,
  collapserCommand,
  type CollapserProcess,
  parse,
  startCollapserProcess,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";
import { disposing, generateTlsFixture, servedFingerprint, startTlsBackend, tlsClient } from "./_tls.ts";

const fx = await generateTlsFixture();
globalThis.addEventListener("unload", () => Deno.removeSync(fx.dir, { recursive: true }));

const UNARY = "/test.Test/Unary";
/** Bound on a start-up that must fail: a hang fails as an assertion, not a hung suite. */
const EXIT_LIMIT_MS = 20_000;
/** Deadline of each call, so that a stuck call fails as an assertion. */
const CALL_LIMIT_MS = 10_000;
const call = (client: grpc.Client, request: unknown) =>
  unary(client, UNARY, request, { deadline: Date.now() + CALL_LIMIT_MS });

/** Log lines whose message starts with `prefix`. */
const lines = (proc: CollapserProcess, prefix: string) =>
  proc.logs.filter((l) => String(l.message).startsWith(prefix));

Deno.test("collapser reloads its certificate files on SIGHUP, and keeps the ones in use when the new key is bad", async (t) => {
  const backend = await startTestBackend();
  await using _backend = disposing(() => backend.close());
  const cert = fx.file("live-cert.pem"), key = fx.file("live-key.pem");
  await Deno.writeTextFile(cert, fx.server.certPem);
  await Deno.writeTextFile(key, fx.server.keyPem);
  await using proc = await startCollapserProcess([
    "--backend",
    backend.address,
    "--tls-cert",
    cert,
    "--tls-key",
    key,
    "--tls-client-ca",
    fx.ca.cert,
  ]);
  /** A call from alice on a new connection, and the certificate a new connection is served. */
  const served = async (q: string) => {
    const alice = tlsClient(proc.port, fx.ca, fx.alice);
    await using _ = disposing(() => alice.close());
    const result = await call(alice, { q });
    assert.equal(result.status.code, grpc.status.OK, result.status.details);
    assert.deepEqual(parse(result.response).echo, { q });
    return await servedFingerprint(proc.port, fx.ca, fx.alice);
  };
  const refusesStrangers = async () => {
    for (const who of [undefined, fx.mallory]) {
      const client = tlsClient(proc.port, fx.ca, who);
      await using _ = disposing(() => client.close());
      const result = await call(client, { q: "stranger" });
      assert.equal(result.status.code, grpc.status.UNAVAILABLE, `${who?.cert ?? "no certificate"}: refused`);
    }
  };

  await t.step("serves alice over mTLS with certificate A", async () => {
    assert.equal(await served("A"), fx.server.fingerprint256);
    await refusesStrangers();
  });
  await t.step("SIGHUP after the files were replaced: new connections get certificate B", async () => {
    await Deno.writeTextFile(cert, fx.serverB.certPem);
    await Deno.writeTextFile(key, fx.serverB.keyPem);
    proc.signal("SIGHUP");
    await until(() => lines(proc, "certificates reloaded").length === 1, "the certificates reloaded line");
    assert.equal(lines(proc, "certificates reloaded")[0].level, "INFO");
    assert.equal(await served("B"), fx.serverB.fingerprint256);
    await refusesStrangers();
  });
  await t.step(
    "SIGHUP with a key that does not match: an error naming the file, certificate B stays",
    async () => {
      await Deno.writeTextFile(key, fx.server.keyPem); // A's key beside B's certificate
      proc.signal("SIGHUP");
      await until(() => lines(proc, "certificate reload:").length === 1, "the certificate reload error line");
      const error = lines(proc, "certificate reload:")[0];
      assert.equal(error.level, "ERROR");
      assert.ok(String(error.message).includes(key), `names ${key}: ${error.message}`);
      assert.match(String(error.message), /does not match.*keeping the certificates in use/);
      assert.equal(lines(proc, "certificates reloaded").length, 1);
      assert.equal(await served("still B"), fx.serverB.fingerprint256);
      await refusesStrangers();
    },
  );
  assert.deepEqual(proc.otherOutput, [], "no crash output");
  const status = await proc.stop();
  assert.equal(status.code, 0, "the process was up until SIGTERM and drained cleanly");
});

Deno.test("collapser --backend-ca/--backend-cert/--backend-key/--backend-server-name reach a TLS backend", async () => {
  // A backend requiring client certificates, whose certificate names only backend.internal.
  await using backend = await startTlsBackend(fx.ca, fx.backendInternal, { mtls: true });
  await using proc = await startCollapserProcess([
    "--backend",
    `127.0.0.1:${backend.port}`,
    "--backend-ca",
    fx.ca.cert,
    "--backend-cert",
    fx.alice.cert,
    "--backend-key",
    fx.alice.key,
    "--backend-server-name",
    "backend.internal",
  ]);
  const client = new grpc.Client(`127.0.0.1:${proc.port}`, grpc.credentials.createInsecure());
  await using _ = disposing(() => client.close());
  const result = await call(client, { q: "over TLS" });
  assert.equal(result.status.code, grpc.status.OK, result.status.details);
  assert.deepEqual(parse(result.response), { echo: { q: "over TLS" }, n: 1, peer: fx.alice.fingerprint256 });
  assert.equal((await admin(proc.metricsPort, "/ready")).status, 200, "readiness (grpc-js) reaches it too");
  assert.equal((await proc.stop()).code, 0);
});

Deno.test("collapser exits 1 with one line naming the problem on bad TLS input at start-up", async (t) => {
  const up = ["--backend", "127.0.0.1:1", "--port", "0", "--metrics-port", "0", "--host", "127.0.0.1"];
  const missing = fx.file("missing.pem");
  const serving = ["--tls-cert", fx.server.cert, "--tls-key", fx.server.key];
  const cases: { name: string; args: string[]; message: RegExp; names: string }[] = [
    {
      name: "--tls-cert: a missing file",
      args: ["--tls-cert", missing, "--tls-key", fx.server.key],
      message: /cannot read the certificate/,
      names: missing,
    },
    {
      name: "--tls-key: a key that does not match the certificate",
      args: ["--tls-cert", fx.server.cert, "--tls-key", fx.wrongKey],
      message: /does not match the certificate/,
      names: fx.wrongKey,
    },
    {
      name: "--tls-client-ca: not PEM",
      args: [...serving, "--tls-client-ca", fx.notPem],
      message: /holds no PEM certificate/,
      names: fx.notPem,
    },
    {
      name: "--backend-ca: not PEM",
      args: ["--backend-ca", fx.notPem],
      message: /holds no PEM certificate/,
      names: fx.notPem,
    },
    {
      name: "--tls-cert without --tls-key",
      args: ["--tls-cert", fx.server.cert],
      message: /--tls-cert and --tls-key go together/,
      names: "--tls-key",
    },
  ];
  for (const { name, args, message, names } of cases) {
    await t.step(name, async () => {
      const child = collapserCommand([...up, ...args]).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_LIMIT_MS);
      const { code, signal, stderr } = await child.output().finally(() => clearTimeout(timer));
      assert.equal(signal, null, `exited by itself within ${EXIT_LIMIT_MS} ms`);
      const output = new TextDecoder().decode(stderr);
      const first = output.split("\n")[0];
      assert.equal(code, 1, output);
      assert.ok(first.startsWith("collapser: "), first);
      assert.match(first, message);
      assert.ok(first.includes(names), `names ${names}: ${first}`);
      assert.match(output, /Usage: collapser/, "the usage follows");
    });
  }
});
