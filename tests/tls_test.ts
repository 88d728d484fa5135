/**
 * TLS on both sides of the proxy, in process over real loopback sockets: the listener (TLS, mTLS, the
 * client certificate in the collapse key, certificate reload) and the backend (CA, client certificate,
 * server-name override, reload), with grpc-js clients and backends, and one C-core client (Python grpcio).
 */

import { needs } from "./_needs.ts";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Proxy, type ProxyOptions } from "../src/server/proxy.ts";
import { type ClientTlsFiles, loadClientTls, loadServerTls } from "../src/wire/tls.ts";
import {
  bytes,
  gate,
  identity,
  newClient,
  parse,
  startTestBackend,
  type TestHandlers,
  unary,
  until,
} from "./_helpers.ts";
import {
  disposing,
  generateTlsFixture,
  servedFingerprint,
  startTlsBackend,
  type TlsCert,
  tlsClient as sharedTlsClient,
} from "./_tls.ts";

const fx = await generateTlsFixture();
globalThis.addEventListener("unload", () => Deno.removeSync(fx.dir, { recursive: true }));

const UNARY = "/test.Test/Unary";
/** Deadline of each call, so that a stuck call fails as an assertion. */
const CALL_LIMIT_MS = 10_000;
const tlsClient = (port: number, who?: TlsCert) => sharedTlsClient(port, fx.ca, who);
const call = (client: grpc.Client, request: unknown) =>
  unary(client, UNARY, request, { deadline: Date.now() + CALL_LIMIT_MS });

/** An open bidi call: `say` sends one message and resolves with the echo; `end` resolves with the status. */
function openBidi(client: grpc.Client) {
  const stream = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity, new grpc.Metadata(), {
    deadline: Date.now() + CALL_LIMIT_MS,
  });
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
  stream.on("error", () => {});
  return {
    say: (message: unknown): Promise<Record<string, unknown> | grpc.StatusObject> => {
      stream.write(bytes(message));
      return Promise.race([
        new Promise<Record<string, unknown>>((resolve) =>
          stream.once("data", (m: Buffer) => resolve(parse(m)))
        ),
        status,
      ]);
    },
    end: () => (stream.end(), status),
  };
}

/** The plaintext test backend and a proxy in front of it; dispose closes both. */
async function startProxy(options: Partial<ProxyOptions>, handlers?: TestHandlers) {
  const backend = await startTestBackend(handlers);
  const proxy = await Proxy.start({ backend: backend.address, host: "127.0.0.1", port: 0, ...options });
  return { backend, proxy, ...disposing(async () => (await proxy.close(), backend.close())) };
}

/** A unary handler that answers `{ echo, n }` once `hold(request)` resolves. */
function heldUnary(hold: (request: Record<string, unknown>) => Promise<void>): TestHandlers {
  let n = 0;
  return {
    Unary: (c, done) => {
      const request = parse(c.request);
      const answer = bytes({ echo: request, n: ++n });
      void hold(request).then(() => done(null, answer));
    },
  };
}

const serverTls = (clientCa?: boolean, cert = fx.server) =>
  loadServerTls({ cert: cert.cert, key: cert.key, clientCa: clientCa ? fx.ca.cert : undefined });

Deno.test("Proxy with tls serves TLS clients (collapsed unary, passed-through bidi) and no plaintext ones", async (t) => {
  await using stack = await startProxy({ tls: await serverTls(), cacheTtlMs: 60_000 });
  const client = tlsClient(stack.proxy.port);
  await using _ = disposing(() => client.close());
  await t.step("unary calls are collapsed: the repeat is a cache hit", async () => {
    const [first, second] = [await call(client, { q: 1 }), await call(client, { q: 1 })];
    assert.equal(first.status.code, grpc.status.OK);
    assert.deepEqual(parse(second.response), parse(first.response));
    assert.equal(stack.backend.calls.Unary, 1);
  });
  await t.step("a bidi stream is passed through", async () => {
    const chat = openBidi(client);
    assert.deepEqual(await chat.say({ m: 1 }), { echo: { m: 1 } });
    assert.deepEqual(await chat.say({ m: 2 }), { echo: { m: 2 } });
    assert.equal((await chat.end()).code, grpc.status.OK);
  });
  await t.step("a plaintext client gets no answer", async () => {
    const plain = newClient(stack.proxy.port);
    await using _ = disposing(() => plain.close());
    assert.equal((await call(plain, { q: 1 })).status.code, grpc.status.UNAVAILABLE);
    assert.equal(stack.backend.calls.Unary, 1);
  });
});

Deno.test("Proxy with a client CA (mTLS) refuses clients without a certificate it signed, at the handshake", async (t) => {
  await using stack = await startProxy({ tls: await serverTls(true) });
  const alice = tlsClient(stack.proxy.port, fx.alice);
  await using _ = disposing(() => alice.close());
  await t.step("alice's certificate is accepted", async () => {
    assert.equal((await call(alice, { q: 1 })).status.code, grpc.status.OK);
  });
  for (
    const [name, who] of [["no certificate", undefined], ["mallory's, from another CA", fx.mallory]] as const
  ) {
    await t.step(`${name}: UNAVAILABLE, and alice is still served`, async () => {
      const client = tlsClient(stack.proxy.port, who);
      await using _ = disposing(() => client.close());
      const result = await call(client, { q: name });
      assert.equal(result.status.code, grpc.status.UNAVAILABLE, result.status.details);
      assert.match(result.status.details, /No connection established/, "no connection, not a refused call");
      assert.equal((await call(alice, { q: name })).status.code, grpc.status.OK);
    });
  }
  assert.equal(stack.backend.calls.Unary, 3, "only alice's calls reached the backend");
});

Deno.test("Proxy with mTLS keys answers by client certificate: alice and bob never share, two alice connections do", async (t) => {
  let release = gate();
  await using stack = await startProxy(
    { tls: await serverTls(true), cacheTtlMs: 60_000 },
    heldUnary(() => release.promise),
  );
  const [alice, bob, alice2] = [fx.alice, fx.bob, fx.alice].map((who) => tlsClient(stack.proxy.port, who));
  await using _ = disposing(() => [alice, bob, alice2].forEach((c) => c.close()));
  const n = async (client: grpc.Client, request: unknown) => {
    const result = await call(client, request);
    assert.equal(result.status.code, grpc.status.OK, result.status.details);
    return parse(result.response).n;
  };
  /** Starts one identical call per client, opens the gate once all wait at the proxy; their `n`s. */
  const together = async (clients: grpc.Client[], request: unknown) => {
    release = gate();
    const calls = clients.map((client) => n(client, request));
    await until(() => stack.proxy.collapser.stats().waiting === clients.length, "every call at the proxy");
    release.open();
    return await Promise.all(calls);
  };

  const [fromAlice, fromBob] = await together([alice, bob], { same: "payload" });
  await t.step("concurrent identical calls, no authorization: one backend call each", () => {
    assert.equal(stack.backend.calls.Unary, 2);
    assert.notEqual(fromAlice, fromBob);
  });
  await t.step("within the TTL each gets their own cached answer", async () => {
    assert.equal(await n(bob, { same: "payload" }), fromBob);
    assert.equal(await n(alice, { same: "payload" }), fromAlice);
    assert.equal(stack.backend.calls.Unary, 2);
  });
  await t.step("two connections with alice's certificate share one backend call", async () => {
    const [first, second] = await together([alice, alice2], { other: "payload" });
    assert.equal(first, second);
    assert.equal(stack.backend.calls.Unary, 3);
  });
});

Deno.test("Proxy.reloadTls() adding a client CA to a listener started without one enforces it (or refuses)", async () => {
  await using stack = await startProxy({ tls: await serverTls(), cacheTtlMs: 60_000 });
  try {
    stack.proxy.reloadTls({ tls: await serverTls(true) });
  } catch {
    return; // refusing to turn mTLS on without a restart is an answer too; mTLS in name only is not
  }
  for (const who of [undefined, fx.mallory]) {
    const client = tlsClient(stack.proxy.port, who);
    await using _ = disposing(() => client.close());
    const result = await call(client, { q: "refused" });
    assert.equal(result.status.code, grpc.status.UNAVAILABLE, `${who?.cert ?? "no certificate"}: refused`);
  }
  const [alice, bob] = [fx.alice, fx.bob].map((who) => tlsClient(stack.proxy.port, who));
  await using _ = disposing(() => [alice, bob].forEach((c) => c.close()));
  const [fromAlice, fromBob] = [await call(alice, { same: 1 }), await call(bob, { same: 1 })];
  assert.notEqual(parse(fromBob.response).n, parse(fromAlice.response).n, "bob is not served alice's answer");
});

/** A proxy (plaintext downstream) in front of `backend` over backend TLS, and its client. */
async function backendTlsProxy(backend: string, files: ClientTlsFiles, backendClient: "h2" | "grpc-js") {
  const backendTls = await loadClientTls(files);
  const proxy = await Proxy.start({ backend, host: "127.0.0.1", port: 0, backendClient, backendTls });
  const client = newClient(proxy.port);
  return { proxy, client, ...disposing(async () => (client.close(), await proxy.close())) };
}

/** Whether the proxy reaches the backend: a collapsed unary call and a passed-through bidi stream. */
async function reach(client: grpc.Client, request: unknown) {
  const unary = await call(client, request);
  const chat = openBidi(client);
  const echo = await chat.say({ m: 1 });
  const end = await chat.end();
  return { unary, answer: parse(unary.response), echo, end };
}

const alicesCert = { cert: fx.alice.cert, key: fx.alice.key };

for (const backendClient of ["h2", "grpc-js"] as const) {
  Deno.test(`Proxy with backendTls reaches a TLS backend for collapsed and passthrough calls (${backendClient} client)`, async (t) => {
    const ca = fx.ca.cert, internal = "backend.internal", withAlice = { ca, ...alicesCert };
    const named = { ca, serverName: internal };
    const untrusted = { why: /self-signed certificate/, fix: { ca } };
    const noClientCert = { why: /CertificateRequired/, fix: withAlice };
    const misnamed = { why: /not in the cert's altnames/, fix: named };
    type Case = {
      name: string;
      cert: TlsCert;
      mtls?: boolean;
      host?: string;
      files: ClientTlsFiles;
      /** For a case that must fail: why, and the material that works. */
      fails?: { why: RegExp; fix: ClientTlsFiles };
    };
    const cases: Case[] = [
      { name: "trusting the backend's CA", cert: fx.server, files: { ca } },
      { name: "with the default roots, which do not trust it", cert: fx.server, files: {}, fails: untrusted },
      { name: "backend mTLS, with a client certificate", cert: fx.server, mtls: true, files: withAlice },
      { name: "backend mTLS, without one", cert: fx.server, mtls: true, files: { ca }, fails: noClientCert },
      {
        name: `serverName ${internal}, target 127.0.0.1`,
        cert: fx.backendInternal,
        host: "127.0.0.1",
        files: named,
      },
      {
        name: `a certificate for ${internal} only, no serverName`,
        cert: fx.backendInternal,
        files: { ca },
        fails: misnamed,
      },
    ];
    // Targets are localhost unless said otherwise: an IP target without serverName has a test of its own below.
    for (const { name, cert, mtls, host = "localhost", files, fails } of cases) {
      await t.step(`${name}: ${fails ? "UNAVAILABLE, and the proxy stays up" : "OK"}`, async () => {
        await using backend = await startTlsBackend(fx.ca, cert, { mtls });
        await using stack = await backendTlsProxy(`${host}:${backend.port}`, files, backendClient);
        const { unary, answer, echo, end } = await reach(stack.client, { q: name });
        if (fails === undefined) {
          assert.equal(unary.status.code, grpc.status.OK, unary.status.details);
          assert.deepEqual(answer, { echo: { q: name }, n: 1, peer: mtls ? fx.alice.fingerprint256 : null });
          assert.deepEqual(echo, { echo: { m: 1 } });
          assert.equal(end.code, grpc.status.OK, end.details);
          return;
        }
        assert.equal(unary.status.code, grpc.status.UNAVAILABLE, unary.status.details);
        assert.match(unary.status.details, fails.why);
        assert.equal(end.code, grpc.status.UNAVAILABLE, end.details);
        assert.match(end.details, fails.why);
        assert.deepEqual(backend.calls, { Unary: 0, Bidi: 0 });
        // Still up: given the right material, the same proxy reaches the backend.
        stack.proxy.reloadTls({ backendTls: await loadClientTls(fails.fix) });
        const fixed = await reach(stack.client, { q: name });
        assert.equal(fixed.unary.status.code, grpc.status.OK, fixed.unary.status.details);
        assert.deepEqual(fixed.echo, { echo: { m: 1 } });
        assert.equal(fixed.end.code, grpc.status.OK, fixed.end.details);
      });
    }
  });

  Deno.test(`Proxy with backendTls reaches a backend addressed by IP, 127.0.0.1, that its certificate names (${backendClient} client)`, async () => {
    await using backend = await startTlsBackend(fx.ca, fx.server);
    await using stack = await backendTlsProxy(`127.0.0.1:${backend.port}`, { ca: fx.ca.cert }, backendClient);
    const { unary, echo, end } = await reach(stack.client, { q: "by IP" });
    assert.equal(unary.status.code, grpc.status.OK, unary.status.details);
    assert.deepEqual(echo, { echo: { m: 1 } }, "a passthrough stream");
    assert.equal(end.code, grpc.status.OK, end.details);
    assert.ok(await stack.proxy.upstream.ready(5_000), "readiness (the grpc-js client) reaches the backend");
  });

  Deno.test(`Proxy.reloadTls() presents a new client certificate to the backend; calls in flight finish (${backendClient} client)`, async () => {
    const release = gate();
    await using backend = await startTlsBackend(fx.ca, fx.server, { mtls: true, hold: release.promise });
    const target = `localhost:${backend.port}`;
    await using stack = await backendTlsProxy(target, { ca: fx.ca.cert, ...alicesCert }, backendClient);
    const peer = async (request: unknown) => parse((await call(stack.client, request)).response).peer;
    assert.equal(await peer({ q: "before" }), fx.alice.fingerprint256);
    const held = call(stack.client, { q: "held", hold: true });
    const chat = openBidi(stack.client);
    assert.deepEqual(await chat.say({ m: 1 }), { echo: { m: 1 } });
    await until(() => backend.calls.Unary === 2, "the held call at the backend");

    const bob = { ca: fx.ca.cert, cert: fx.bob.cert, key: fx.bob.key };
    stack.proxy.reloadTls({ backendTls: await loadClientTls(bob) });
    assert.equal(
      await peer({ q: "after" }),
      fx.bob.fingerprint256,
      "a later call presents bob's certificate",
    );
    const later = openBidi(stack.client);
    assert.deepEqual(await later.say({ m: "later" }), { echo: { m: "later" } }, "a later stream");
    assert.equal((await later.end()).code, grpc.status.OK);
    release.open();
    const answer = await held;
    assert.equal(answer.status.code, grpc.status.OK, answer.status.details);
    assert.equal(parse(answer.response).peer, fx.alice.fingerprint256);
    assert.deepEqual(await chat.say({ m: 2 }), { echo: { m: 2 } }, "the stream open at the reload goes on");
    assert.equal((await chat.end()).code, grpc.status.OK);
  });
}

/** A call, and the certificate the proxy presented on the connection it went over. */
async function callSeeing(client: grpc.Client, request: unknown) {
  let served: string | undefined;
  const result = await unary(client, UNARY, request, {
    deadline: Date.now() + CALL_LIMIT_MS,
    onCall: (c) => c.on("status", () => served = c.getAuthContext()?.sslPeerCertificate?.fingerprint256),
  });
  return { code: result.status.code, answer: parse(result.response), served };
}

Deno.test("Proxy.reloadTls() serves new connections the new certificate; open connections and held calls go on", async () => {
  const release = gate();
  await using stack = await startProxy(
    { tls: await serverTls(true), cacheTtlMs: 0 },
    heldUnary((request) => request.hold ? release.promise : Promise.resolve()),
  );
  const [A, B] = [fx.server.fingerprint256, fx.serverB.fingerprint256];
  const old = tlsClient(stack.proxy.port, fx.alice);
  await using _old = disposing(() => old.close());
  assert.deepEqual(await callSeeing(old, { q: 1 }), {
    code: grpc.status.OK,
    answer: { echo: { q: 1 }, n: 1 },
    served: A,
  });
  const held = callSeeing(old, { hold: true });
  await until(() => stack.backend.calls.Unary === 2, "the held call at the backend");

  stack.proxy.reloadTls({ tls: await serverTls(true, fx.serverB) });
  assert.equal(await servedFingerprint(stack.proxy.port, fx.ca, fx.alice), B);
  const fresh = tlsClient(stack.proxy.port, fx.alice);
  await using _fresh = disposing(() => fresh.close());
  assert.deepEqual(await callSeeing(fresh, { q: 3 }), {
    code: grpc.status.OK,
    answer: { echo: { q: 3 }, n: 3 },
    served: B,
  });
  const anonymous = tlsClient(stack.proxy.port);
  await using _anonymous = disposing(() => anonymous.close());
  const refused = await call(anonymous, { q: "no certificate" });
  assert.equal(refused.status.code, grpc.status.UNAVAILABLE, "the reloaded listener still requires mTLS");

  release.open();
  assert.deepEqual(await held, { code: grpc.status.OK, answer: { echo: { hold: true }, n: 2 }, served: A });
  const later = await callSeeing(old, { q: 4 });
  assert.deepEqual(
    later,
    { code: grpc.status.OK, answer: { echo: { q: 4 }, n: 4 }, served: A },
    "old connection",
  );
});

const PYTHON = "/usr/bin/python3";
const PYTHON_CLIENT = `
import json, sys, grpc
port, ca, cert, key = sys.argv[1:5]
read = lambda path: open(path, "rb").read()
credentials = grpc.ssl_channel_credentials(
    root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
with grpc.secure_channel("localhost:" + port, credentials) as channel:
    print(channel.unary_unary("/test.Test/Unary")(json.dumps({"from": "python"}).encode(), timeout=10).decode())
`;

/** Runs `/usr/bin/python3 args`, killed after 30 s. */
async function python(args: string[]): Promise<Deno.CommandOutput> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), 30_000);
  try {
    return await new Deno.Command(PYTHON, { args, stdout: "piped", stderr: "piped", signal: timeout.signal })
      .output();
  } finally {
    clearTimeout(timer);
  }
}

/** `Deno.test`, ignored where python3-grpcio is missing; the other tests here need no system package (see _needs.ts). */
const test = needs("python3-grpcio").test;

test("Proxy with mTLS answers a C-core client (Python grpcio) presenting alice's certificate", async () => {
  const probe = await python(["-c", "import grpc"]).catch((err) => ({ success: false, stderr: String(err) }));
  assert.ok(
    probe.success,
    `this test needs ${PYTHON} with grpc (Debian package python3-grpcio): ${
      typeof probe.stderr === "string" ? probe.stderr : new TextDecoder().decode(probe.stderr)
    }`,
  );
  await using stack = await startProxy({ tls: await serverTls(true) });
  const output = await python([
    "-c",
    PYTHON_CLIENT,
    String(stack.proxy.port),
    fx.ca.cert,
    fx.alice.cert,
    fx.alice.key,
  ]);
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  assert.ok(output.success, `python client failed:\n${text(output.stderr)}`);
  assert.deepEqual(JSON.parse(text(output.stdout)), { echo: { from: "python" }, n: 1 });
});
