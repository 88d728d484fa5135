/**
 * Edge cases found by review: each test kills a mutation the rest of the suite let survive, or reproduces a
 * bug that was then fixed.
 */

import * as grpc from "@grpc/grpc-js";
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";
import { Proxy } from "../src/server/proxy.ts";
import {
  bytes,
  frame,
  gate,
  identity,
  listenLoopback,
  metadata,
  newClient,
  parse,
  rawCall,
  startStack,
  startTestBackend,
  TEST_SERVICE,
  unary,
  until,
} from "./_helpers.ts";

const UNARY = "/test.Test/Unary";
const SERVER_STREAM = "/test.Test/ServerStream";

/** Collects a server-streaming call through the proxy. */
function serverStream(client: grpc.Client, request: unknown) {
  const call = client.makeServerStreamRequest(SERVER_STREAM, identity, identity, bytes(request));
  const messages: unknown[] = [];
  call.on("data", (m: Buffer) => messages.push(parse(m)));
  call.on("error", () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  return { call, messages, status };
}

/** A grpc-js backend with only a Bidi method; records whether its calls were cancelled. */
async function startBidiBackend() {
  const server = new grpc.Server();
  const state = { calls: 0, cancelled: 0 };
  server.addService({ Bidi: TEST_SERVICE.Bidi }, {
    Bidi(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      state.calls++;
      call.on("cancelled", () => state.cancelled++);
      call.on("data", (m: Buffer) => call.write(bytes({ echo: parse(m) })));
      call.on("end", () => call.end());
    },
  });
  const port = await listenLoopback(server);
  return { port, state, close: () => server.forceShutdown() };
}

// Kills c1 (a departed sole caller cancels the backend call): the README says the call goes on and its
// answer is cached "even if every caller left"; the existing test always keeps followers on the flight.
Deno.test("Proxy: a sole caller that cancels leaves the backend call running, and its answer is cached", async () => {
  const release = gate();
  await using stack = await startStack({
    proxy: { cacheTtlMs: 60_000 },
    handlers: {
      Unary(call, callback) {
        release.promise.then(() => callback(null, bytes({ n: 1, echo: parse(call.request) })));
      },
    },
  });
  let only: grpc.ClientUnaryCall | undefined;
  const result = unary(stack.client, UNARY, { q: "alone" }, { onCall: (c) => only = c });
  await until(() => stack.backend.calls.Unary === 1, "the backend call");
  only!.cancel();
  assert.equal((await result).status.code, grpc.status.CANCELLED);
  await until(() => stack.proxy.collapser.stats().waiting === 0, "the caller to leave");
  assert.equal(stack.proxy.stats().backendInflight, 1, "the backend call is still running");
  release.open();
  await until(() => stack.proxy.stats().backendInflight === 0, "the backend call to finish");
  const later = await unary(stack.client, UNARY, { q: "alone" });
  assert.equal(later.status.code, grpc.status.OK);
  assert.equal(parse(later.response).n, 1);
  assert.equal(stack.backend.calls.Unary, 1);
  assert.equal(stack.proxy.collapser.stats().cacheHits, 1);
});

// Kills c3 (the leader's grpc-timeout bounds the shared backend call) and m8 (grpc-timeout forwarded as
// metadata, so the backend enforces the leader's deadline): the existing deadline test has the patient
// caller lead.
Deno.test("Proxy: a leader's own short deadline does not bound the backend call its followers share", async () => {
  const release = gate();
  await using stack = await startStack({
    handlers: {
      Unary(call, callback) {
        release.promise.then(() => callback(null, bytes({ n: 1, echo: parse(call.request) })));
      },
    },
  });
  // The leader: a raw client with no deadline of its own, so the DEADLINE_EXCEEDED comes from the proxy.
  const hurried = await rawCall(stack.proxy.port, UNARY, frame({ q: "lead" }), { "grpc-timeout": "50m" });
  assert.equal(hurried.grpcStatus, grpc.status.DEADLINE_EXCEEDED);
  assert.equal(stack.backend.calls.Unary, 1);
  const patient = unary(stack.client, UNARY, { q: "lead" });
  await until(() => stack.proxy.collapser.stats().waiting === 1, "the follower on the leader's flight");
  release.open();
  const result = await patient;
  assert.equal(result.status.code, grpc.status.OK);
  assert.equal(parse(result.response).n, 1);
  assert.equal(stack.backend.calls.Unary, 1, "the follower joined the leader's call");
  assert.equal(stack.backend.metadata[0].get("grpc-timeout").length, 0);
});

// Kills m1 (a trailers-only response keeps grpc-status/grpc-message but drops trailing metadata): the
// existing metadata test always sends response headers first, so its errors are never trailers-only.
Deno.test("Proxy: a trailers-only error keeps its trailing metadata", async () => {
  await using stack = await startStack({
    handlers: {
      Unary(_call, callback) {
        callback({
          code: grpc.status.PERMISSION_DENIED,
          details: "nope",
          metadata: metadata({ "x-reason": "quota", "x-reason-bin": Buffer.from([0, 255]) }),
        });
      },
    },
  });
  const raw = await rawCall(stack.proxy.port, UNARY, frame({ q: "trailers-only" }));
  assert.equal(raw.headers["grpc-status"], String(grpc.status.PERMISSION_DENIED), "trailers-only");
  const result = await unary(stack.client, UNARY, { q: "trailers-only" });
  assert.equal(result.status.code, grpc.status.PERMISSION_DENIED);
  assert.equal(result.status.details, "nope");
  assert.equal(result.status.metadata.get("x-reason")[0], "quota");
  assert.deepEqual(result.status.metadata.get("x-reason-bin")[0], Buffer.from([0, 255]));
});

// Kills m5 (the method left out of the key): no existing test sends the same bytes to two methods.
Deno.test("Proxy: the same request to another method is not served from the first method's answer", async () => {
  const clock = FakeTimers.createClock();
  await using stack = await startStack({ proxy: { cacheTtlMs: 100, now: () => clock.now } });
  const first = await unary(stack.client, UNARY, { count: 2 });
  assert.equal(first.status.code, grpc.status.OK);
  const other = await unary(stack.client, "/no.Such/Method", { count: 2 });
  assert.equal(other.status.code, grpc.status.UNIMPLEMENTED);
  const stream = serverStream(stack.client, { count: 2 });
  assert.equal((await stream.status).code, grpc.status.OK);
  assert.deepEqual(stream.messages, [{ seq: 0 }, { seq: 1 }]);
  assert.equal(stack.proxy.collapser.stats().cacheHits, 0);
});

// Kills m6 (a passed-through call that ends without OK does not cancel its backend call): nothing in the
// suite cancels a passthrough call.
Deno.test("Proxy: a passed-through stream the client cancels is cancelled at the backend", async () => {
  const backend = await startBidiBackend();
  const proxy = await Proxy.start({ backend: `127.0.0.1:${backend.port}`, host: "127.0.0.1", port: 0 });
  const client = newClient(proxy.port);
  try {
    const call = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
    call.on("error", () => {});
    const reply = new Promise<Buffer>((resolve) => call.once("data", resolve));
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.write(bytes({ ping: 1 }));
    assert.deepEqual(parse(await reply), { echo: { ping: 1 } });
    call.cancel();
    assert.equal((await status).code, grpc.status.CANCELLED);
    await until(() => backend.state.cancelled === 1, "the backend call to be cancelled");
    assert.equal(proxy.stats().backendInflight, 0);
  } finally {
    client.close();
    await proxy.close();
    backend.close();
  }
});

// Kills m15 (an unshared stream nobody listens to any more is not cancelled at the backend).
Deno.test("Proxy: a collapsed call that became a stream is cancelled when its last caller leaves", async () => {
  let cancelled = 0;
  await using stack = await startStack({
    handlers: {
      ServerStream(call) {
        call.on("cancelled", () => cancelled++);
        call.write(bytes({ seq: 0 }));
        call.write(bytes({ seq: 1 })); // a watch: never ends on its own
      },
    },
  });
  const { call, messages, status } = serverStream(stack.client, { watch: true });
  await until(() => messages.length === 2, "two messages");
  call.cancel();
  assert.equal((await status).code, grpc.status.CANCELLED);
  await until(() => cancelled === 1, "the backend stream to be cancelled");
  await until(() => stack.proxy.stats().backendInflight === 0, "no backend call left");
});

// Kills m14 (a flight that became a stream is cached, as an empty recording).
Deno.test("Proxy: a stream is not cached: a repeat gets every message from a new backend call", async () => {
  await using stack = await startStack({ proxy: { cacheTtlMs: 60_000 } });
  for (let i = 1; i <= 2; i++) {
    const stream = serverStream(stack.client, { count: 3 });
    assert.equal((await stream.status).code, grpc.status.OK);
    assert.deepEqual(stream.messages, [{ seq: 0 }, { seq: 1 }, { seq: 2 }]);
    assert.equal(stack.backend.calls.ServerStream, i);
  }
  assert.equal(stack.proxy.collapser.stats().cacheEntries, 0);
});

// Regression tests for bugs found in review.

// Bug 1: grpc-js's Metadata.add() throws on a header value outside printable ASCII (legal in HTTP/2) or a
// header name with characters such as '!'; requestMetadata() lets that escape from the http2 'end'/'data'
// listener: an uncaught exception that takes the whole process down. One request kills the proxy.
Deno.test({
  name: "Proxy: a request header grpc-js cannot carry is dropped; the call is served and the proxy stays up",
  async fn(t) {
    await using stack = await startStack({ proxy: { backendTimeoutMs: 500 } });
    const cases: [string, string, Record<string, string>][] = [
      ["collapsed, non-ASCII value", UNARY, { "x-name": "caf\u00e9" }],
      ["collapsed, '!' in a name", UNARY, { "x!name": "1" }],
      ["passed through, non-ASCII value", "/test.Test/Bidi", { "x-name": "caf\u00e9" }],
    ];
    for (const [name, path, headers] of cases) {
      await t.step(name, async () => {
        const body = path === UNARY ? frame({ q: name }) : Buffer.concat([frame({ a: 1 }), frame({ b: 2 })]);
        const result = await rawCall(stack.proxy.port, path, body, headers);
        // The entry grpc-js cannot carry is dropped (as grpc-js's own server does); the call is served.
        assert.equal(result.grpcStatus, grpc.status.OK);
      });
    }
    // A repeat is served too, and no flight is left behind.
    const again = await rawCall(stack.proxy.port, UNARY, frame({ q: cases[0][0] }), {
      "x-name": "caf\u00e9",
    });
    assert.equal(again.grpcStatus, grpc.status.OK);
    assert.equal(stack.proxy.collapser.stats().inflight, 0);
    const ok = await unary(stack.client, UNARY, { q: "still up" });
    assert.equal(ok.status.code, grpc.status.OK);
  },
});

// Bug 2: when every caller leaves a collapsed call while it is still shared (one message so far), onIdle
// lets it run on to fill the cache. If a second message then arrives, the call is unshared with nobody on
// it, its backend timer is cleared, and onIdle never fires again: a watch-style backend stream runs
// forever with no listener (a leaked backend call, counted in backendInflight for good).
Deno.test({
  name: "Proxy: a collapsed call that turns into a stream after its last caller left is cancelled",
  async fn() {
    const second = gate();
    let cancelled = 0;
    await using stack = await startStack({
      handlers: {
        ServerStream(call) {
          call.on("cancelled", () => cancelled++);
          call.write(bytes({ seq: 0 }));
          second.promise.then(() => call.write(bytes({ seq: 1 }))); // then never ends: a watch
        },
      },
    });
    const { call, messages, status } = serverStream(stack.client, { watch: true });
    await until(() => messages.length === 1, "the first message");
    call.cancel();
    assert.equal((await status).code, grpc.status.CANCELLED);
    await until(() => stack.proxy.collapser.stats().waiting === 0, "the caller to leave");
    second.open();
    await until(() => cancelled === 1, "the backend stream to be cancelled", 5_000);
    assert.equal(stack.proxy.stats().backendInflight, 0);
  },
});

// Bug 3: a cache hit is replayed synchronously inside collapser.join(), so #finish reports the call to
// the observer (the metrics seam) before #collapse had set the outcome: every cache hit counted "rejected".
Deno.test({
  name: "Proxy: the observer is told a cache hit is a 'cache' outcome",
  async fn() {
    const outcomes: string[] = [];
    await using stack = await startStack({
      proxy: { cacheTtlMs: 60_000, observer: { call: (c) => outcomes.push(c.outcome), backendCall() {} } },
    });
    await unary(stack.client, UNARY, { q: "hit" });
    await unary(stack.client, UNARY, { q: "hit" });
    await until(() => outcomes.length === 2, "two reports");
    assert.deepEqual(outcomes, ["leader", "cache"]);
  },
});

// setTimeout fires after 1 ms for a delay over 2^31 - 1 ms: a far-future deadline must not end a call at once.
Deno.test("Proxy: a deadline 30 days out, or grpc-timeout 99999999S, does not end the call at once", async () => {
  await using stack = await startStack();
  const result = await unary(stack.client, UNARY, { q: 1 }, { deadline: Date.now() + 30 * 86_400_000 });
  assert.equal(result.status.code, grpc.status.OK);
  const raw = await rawCall(stack.proxy.port, UNARY, frame({ q: 2 }), { "grpc-timeout": "99999999S" });
  assert.equal(raw.grpcStatus, grpc.status.OK);
});

// A backend call that throws on start must not leave a timer armed (it threw a ReferenceError later, which
// ended the process) nor count a backend call in flight. Deno's sanitizer fails this test if a timer is left.
Deno.test("Proxy: a backend call that cannot start gets INTERNAL, leaves nothing counted and no timer", async () => {
  const backend = await startTestBackend();
  const proxy = await Proxy.start({
    backend: backend.address,
    backendClient: "grpc-js",
    host: "127.0.0.1",
    port: 0,
    backendTimeoutMs: 100,
  });
  try {
    proxy.upstream.close(); // grpc-js now throws "Channel has been shut down" when a call starts
    const result = await rawCall(proxy.port, UNARY, frame({ q: 1 }));
    assert.equal(result.grpcStatus, grpc.status.INTERNAL);
    assert.equal(proxy.stats().backendInflight, 0);
    assert.equal(proxy.collapser.stats().inflight, 0);
  } finally {
    await proxy.close();
    backend.close();
  }
});

Deno.test("Proxy: a compressed message over the limit once inflated is RESOURCE_EXHAUSTED", async () => {
  await using stack = await startStack({ proxy: { maxMessageBytes: 1024 } });
  const compressed = gzipSync(Buffer.alloc(4096, 0x61));
  const body = Buffer.alloc(5 + compressed.length);
  body[0] = 1;
  body.writeUInt32BE(compressed.length, 1);
  compressed.copy(body, 5);
  const result = await rawCall(stack.proxy.port, UNARY, body, { "grpc-encoding": "gzip" });
  assert.equal(result.grpcStatus, grpc.status.RESOURCE_EXHAUSTED);
});

Deno.test("Proxy refreshes a hot answer in the background shortly before it expires", async () => {
  const clock = FakeTimers.createClock();
  let n = 0;
  await using stack = await startStack({
    proxy: { cacheTtlMs: 100, now: () => clock.now },
    handlers: {
      Unary(_call, callback) {
        clock.tick(20); // the backend takes 20 ms, on the proxy's clock
        callback(null, bytes({ n: ++n }));
      },
    },
  });
  const call = async () => parse((await unary(stack.client, UNARY, { q: "hot" })).response).n;
  assert.equal(await call(), 1); // cached at t=20 until t=120
  clock.tick(79); // 21 ms left: a plain hit
  assert.equal(await call(), 1);
  assert.equal(stack.backend.calls.Unary, 1);
  clock.tick(1); // 20 ms left: the hit is answered from the cache and starts one refresh
  assert.equal(await call(), 1);
  await until(() => stack.proxy.collapser.stats().inflight === 0, "the refresh to finish");
  assert.equal(stack.backend.calls.Unary, 2);
  assert.equal(stack.proxy.collapser.stats().refreshes, 1);
  clock.tick(25); // past the first answer's expiry: the refreshed one answers, no wait for the backend
  assert.equal(await call(), 2);
  assert.equal(stack.backend.calls.Unary, 2);
});
