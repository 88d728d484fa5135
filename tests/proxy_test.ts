import * as grpc from "@grpc/grpc-js";
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { fanOutStats, TURN_EVENTS } from "../src/server/fan_out.ts";
import { Proxy } from "../src/server/proxy.ts";
import {
  bytes,
  frame,
  gate,
  identity,
  metadata,
  newClient,
  parse,
  rawCall,
  startStack,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";

const UNARY = "/test.Test/Unary";

for (const backendClient of ["h2", "grpc-js"] as const) {
  Deno.test(`Proxy passes request and response metadata, -bin keys, status message and trailers through (${backendClient} client)`, async (t) => {
    await using stack = await startStack({
      proxy: { backendClient },
      handlers: {
        Unary(call, callback) {
          const fail = parse(call.request).fail === true;
          const headers = metadata({
            "x-seen": String(call.metadata.get("x-request")[0]),
            "x-seen-bin": call.metadata.get("x-request-bin")[0] as Buffer,
          });
          call.sendMetadata(headers);
          const trailers = metadata({ "x-trailer": "t", "x-trailer-bin": Buffer.from([0, 1, 2, 255]) });
          if (fail) {
            callback({
              code: grpc.status.NOT_FOUND,
              details: "nö such thing: 100% gone",
              metadata: trailers,
            });
          } else callback(null, bytes({ ok: true }), trailers);
        },
      },
    });
    const requestMetadata = () =>
      metadata({ "x-request": "hello", "x-request-bin": Buffer.from([9, 8, 0, 7]) });

    for (const fail of [false, true]) {
      await t.step(fail ? "on an error status" : "on OK", async () => {
        const result = await unary(stack.client, UNARY, { fail }, { metadata: requestMetadata() });
        assert.equal(result.headers?.get("x-seen")[0], "hello");
        assert.deepEqual(result.headers?.get("x-seen-bin")[0], Buffer.from([9, 8, 0, 7]));
        assert.equal(result.status.metadata.get("x-trailer")[0], "t");
        assert.deepEqual(result.status.metadata.get("x-trailer-bin")[0], Buffer.from([0, 1, 2, 255]));
        if (fail) {
          assert.equal(result.status.code, grpc.status.NOT_FOUND);
          assert.equal(result.status.details, "nö such thing: 100% gone");
        } else {
          assert.equal(result.status.code, grpc.status.OK);
          assert.deepEqual(parse(result.response), { ok: true });
        }
      });
    }
    // Per-hop headers are not forwarded as metadata.
    const seen = stack.backend.metadata[0];
    assert.equal(seen.get("grpc-timeout").length, 0);
    assert.equal(seen.get("te").length, 0);
  });
}

Deno.test("Proxy collapses 10,000 concurrent identical unary calls into one backend call", async () => {
  const release = gate();
  await using stack = await startStack({
    handlers: {
      Unary(call, callback) {
        release.promise.then(() => callback(null, bytes({ echo: parse(call.request), at: Date.now() })));
      },
    },
  });
  const N = 10_000;
  const calls = Array.from({ length: N }, () => unary(stack.client, UNARY, { q: "herd" }));
  await until(
    () => stack.proxy.collapser.stats().waiting === N && stack.backend.calls.Unary > 0,
    `${N} callers waiting on one flight, and its call at the backend`,
    60_000,
  );
  assert.equal(stack.backend.calls.Unary, 1);
  const waitedBefore = fanOutStats().waited;
  release.open();
  const results = await Promise.all(calls);
  assert.equal(stack.backend.calls.Unary, 1);
  assert.ok(results.every((r) => r.status.code === grpc.status.OK));
  assert.equal(
    new Set(results.map((r) => r.response?.toString())).size,
    1,
    "every caller gets the same answer",
  );
  const stats = stack.proxy.collapser.stats();
  assert.equal(stats.leaders, 1);
  assert.equal(stats.followers, N - 1);
  // The answer's headers reach the 10,000 in one loop: all but one slice of them waited for a later turn.
  assert.ok(fanOutStats().waited - waitedBefore >= N - TURN_EVENTS, "the fan-out was paced");
  assert.equal(fanOutStats().waiting, 0);
});

Deno.test("Proxy answers repeats from the cache within the TTL and calls the backend after it", async (t) => {
  const clock = FakeTimers.createClock();
  await using stack = await startStack({ proxy: { cacheTtlMs: 100, now: () => clock.now } });
  const call = async () => parse((await unary(stack.client, UNARY, { q: "ttl" })).response).n;

  await t.step("first call reaches the backend", async () => assert.equal(await call(), 1));
  await t.step("a repeat 99 ms later is a cache hit", async () => {
    clock.tick(99);
    assert.equal(await call(), 1);
    assert.equal(stack.backend.calls.Unary, 1);
    assert.equal(stack.proxy.collapser.stats().cacheHits, 1);
  });
  await t.step("at 100 ms the entry has expired", async () => {
    clock.tick(1);
    assert.equal(await call(), 2);
    assert.equal(stack.backend.calls.Unary, 2);
  });
  await t.step("a different request is a different entry", async () => {
    assert.equal(parse((await unary(stack.client, UNARY, { q: "other" })).response).n, 3);
  });
});

Deno.test("Proxy with TTL 0 collapses concurrent calls but caches nothing", async () => {
  const release = gate();
  await using stack = await startStack({
    proxy: { cacheTtlMs: 0 },
    handlers: {
      Unary(call, callback) {
        release.promise.then(() => callback(null, bytes({ echo: parse(call.request) })));
      },
    },
  });
  const concurrent = Array.from({ length: 20 }, () => unary(stack.client, UNARY, { q: 0 }));
  await until(() => stack.proxy.collapser.stats().waiting === 20, "20 waiting callers");
  release.open();
  await Promise.all(concurrent);
  assert.equal(stack.backend.calls.Unary, 1);
  await unary(stack.client, UNARY, { q: 0 });
  await unary(stack.client, UNARY, { q: 0 });
  assert.equal(stack.backend.calls.Unary, 3);
  assert.equal(stack.proxy.collapser.stats().cacheEntries, 0);
});

Deno.test("Proxy never shares an answer between callers with different credentials", async (t) => {
  const release = gate();
  const handlers = {
    Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      const who = {
        auth: call.metadata.get("authorization")[0] ?? null,
        tenant: call.metadata.get("x-tenant")[0] ?? null,
      };
      release.promise.then(() => callback(null, bytes(who)));
    },
  };
  await using stack = await startStack({ handlers, proxy: { keyHeaders: ["authorization", "x-tenant"] } });
  const groups: Record<string, string>[] = [
    { authorization: "Bearer alice" },
    { authorization: "Bearer bob" },
    {},
    { authorization: "Bearer alice", "x-tenant": "acme" },
    { authorization: "Bearer alice", "x-tenant": "globex" },
  ];
  const PER_GROUP = 25;
  const calls = groups.map((group) =>
    Array.from(
      { length: PER_GROUP },
      () => unary(stack.client, UNARY, { same: "payload" }, { metadata: metadata(group) }),
    )
  );
  await until(
    () => stack.proxy.collapser.stats().waiting === groups.length * PER_GROUP,
    "all callers waiting",
  );
  release.open();
  for (const [i, group] of groups.entries()) {
    await t.step(`group ${JSON.stringify(group)} gets its own answer`, async () => {
      for (const result of await Promise.all(calls[i])) {
        assert.deepEqual(parse(result.response), {
          auth: group.authorization ?? null,
          tenant: group["x-tenant"] ?? null,
        });
      }
    });
  }
  assert.equal(stack.backend.calls.Unary, groups.length);
  await t.step("a cached answer is not served to other credentials either", async () => {
    const eve = await unary(stack.client, UNARY, { same: "payload" }, {
      metadata: metadata({ authorization: "Bearer eve" }),
    });
    assert.equal(parse(eve.response).auth, "Bearer eve");
    assert.equal(stack.backend.calls.Unary, groups.length + 1);
  });
});

Deno.test("Proxy keeps the backend call going when the leader cancels, and caches its answer", async () => {
  const release = gate();
  await using stack = await startStack({
    handlers: {
      Unary(call, callback) {
        release.promise.then(() => callback(null, bytes({ n: 1, echo: parse(call.request) })));
      },
    },
  });
  let leaderCall: grpc.ClientUnaryCall | undefined;
  const leader = unary(stack.client, UNARY, { q: "detach" }, { onCall: (c) => leaderCall = c });
  await until(() => stack.backend.calls.Unary === 1, "the leader's backend call");
  const followers = Array.from({ length: 10 }, () => unary(stack.client, UNARY, { q: "detach" }));
  await until(() => stack.proxy.collapser.stats().waiting === 11, "10 followers");
  leaderCall!.cancel();
  assert.equal((await leader).status.code, grpc.status.CANCELLED);
  await until(() => stack.proxy.collapser.stats().waiting === 10, "the leader to leave the flight");
  release.open();
  for (const result of await Promise.all(followers)) {
    assert.equal(result.status.code, grpc.status.OK);
    assert.equal(parse(result.response).n, 1);
  }
  const later = await unary(stack.client, UNARY, { q: "detach" });
  assert.equal(parse(later.response).n, 1);
  assert.equal(stack.backend.calls.Unary, 1);
  assert.equal(stack.proxy.collapser.stats().cacheHits, 1);
});

Deno.test("Proxy ends only the waiting of a caller whose own grpc-timeout expires", async () => {
  const release = gate();
  await using stack = await startStack({
    handlers: {
      Unary(_call, callback) {
        release.promise.then(() => callback(null, bytes({ done: true })));
      },
    },
  });
  const patient = unary(stack.client, UNARY, { q: "deadline" });
  await until(() => stack.backend.calls.Unary === 1, "the backend call");
  // A raw client with no deadline of its own: the DEADLINE_EXCEEDED must come from the proxy.
  const hurried = await rawCall(stack.proxy.port, UNARY, frame({ q: "deadline" }), { "grpc-timeout": "50m" });
  assert.equal(hurried.grpcStatus, grpc.status.DEADLINE_EXCEEDED);
  assert.equal(stack.proxy.collapser.stats().waiting, 1);
  release.open();
  const result = await patient;
  assert.equal(result.status.code, grpc.status.OK);
  assert.deepEqual(parse(result.response), { done: true });
  assert.equal(stack.backend.calls.Unary, 1);
});

Deno.test("Proxy bounds a backend call by the backend timeout: DEADLINE_EXCEEDED to all, not cached", async () => {
  const release = gate();
  await using stack = await startStack({
    proxy: { backendTimeoutMs: 200 },
    handlers: {
      Unary(call, callback) {
        if (parse(call.request).hang) release.promise.then(() => callback(null, bytes({ late: true })));
        else callback(null, bytes({ fast: true }));
      },
    },
  });
  const results = await Promise.all(
    Array.from({ length: 5 }, () => unary(stack.client, UNARY, { hang: true })),
  );
  for (const result of results) {
    assert.equal(result.status.code, grpc.status.DEADLINE_EXCEEDED);
    assert.match(result.status.details, /backend timeout/);
  }
  assert.equal(stack.backend.calls.Unary, 1);
  release.open();
  await unary(stack.client, UNARY, { hang: true });
  assert.equal(stack.backend.calls.Unary, 2, "a timed-out answer is not cached");
});

Deno.test("Proxy fans a backend error out to every waiter and does not cache it", async () => {
  const release = gate();
  let n = 0;
  await using stack = await startStack({
    handlers: {
      Unary(_call, callback) {
        if (++n === 1) {
          release.promise.then(() => callback({ code: grpc.status.ABORTED, details: "try again" }));
        } else callback(null, bytes({ ok: n }));
      },
    },
  });
  const calls = Array.from({ length: 50 }, () => unary(stack.client, UNARY, { q: "err" }));
  await until(() => stack.proxy.collapser.stats().waiting === 50, "50 waiters");
  release.open();
  for (const result of await Promise.all(calls)) {
    assert.equal(result.status.code, grpc.status.ABORTED);
    assert.equal(result.status.details, "try again");
  }
  const next = await unary(stack.client, UNARY, { q: "err" });
  assert.equal(next.status.code, grpc.status.OK);
  assert.equal(stack.backend.calls.Unary, 2);
});

Deno.test("Proxy answers UNAVAILABLE when the backend is unreachable, and stays up", async () => {
  const gone = await startTestBackend();
  gone.close();
  const proxy = await Proxy.start({
    backend: gone.address,
    host: "127.0.0.1",
    port: 0,
    backendTimeoutMs: 5_000,
  });
  const client = newClient(proxy.port);
  try {
    for (let i = 0; i < 2; i++) {
      const result = await unary(client, UNARY, { q: i });
      assert.equal(result.status.code, grpc.status.UNAVAILABLE);
    }
    const stream = await rawCall(proxy.port, "/test.Test/Bidi", frame({ q: 1 }));
    assert.equal(stream.grpcStatus, grpc.status.UNAVAILABLE);
  } finally {
    client.close();
    await proxy.close();
  }
});

Deno.test("Proxy carries all four RPC kinds", async (t) => {
  await using stack = await startStack();
  const { client } = stack;

  await t.step("server streaming: every message in order", async () => {
    const call = client.makeServerStreamRequest(
      "/test.Test/ServerStream",
      identity,
      identity,
      bytes({ count: 5 }),
    );
    const got: unknown[] = [];
    call.on("data", (m: Buffer) => got.push(parse(m)));
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(got, [0, 1, 2, 3, 4].map((seq) => ({ seq })));
  });

  await t.step("client streaming: many requests, one response, passed through", async () => {
    const before = stack.proxy.stats().passthrough;
    const response = await new Promise<Buffer>((resolve, reject) => {
      const call = client.makeClientStreamRequest(
        "/test.Test/ClientStream",
        identity,
        identity,
        (err, value) => err ? reject(err) : resolve(value!),
      );
      for (let i = 0; i < 3; i++) call.write(bytes({ i }));
      call.end();
    });
    assert.deepEqual(parse(response), { received: [{ i: 0 }, { i: 1 }, { i: 2 }] });
    assert.equal(stack.proxy.stats().passthrough, before + 1);
  });

  await t.step("bidi ping-pong: the client waits for each reply before sending the next", async () => {
    const call = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
    const replies: Buffer[] = [];
    const waiting: ((m: Buffer) => void)[] = [];
    call.on("data", (m: Buffer) => (waiting.shift() ?? ((x) => replies.push(x)))(m));
    for (let i = 0; i < 5; i++) {
      const reply = new Promise<Buffer>((resolve) => waiting.push(resolve));
      call.write(bytes({ ping: i }));
      assert.deepEqual(parse(await reply), { echo: { ping: i } });
    }
    call.end();
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    assert.equal(status.code, grpc.status.OK);
  });

  await t.step("bidi with one message then half-close works too", async () => {
    const call = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
    const got: unknown[] = [];
    call.on("data", (m: Buffer) => got.push(parse(m)));
    call.write(bytes({ only: 1 }));
    call.end();
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(got, [{ echo: { only: 1 } }]);
  });

  await t.step("an unknown method gets the backend's UNIMPLEMENTED", async () => {
    const result = await unary(client, "/no.Such/Method", {});
    assert.equal(result.status.code, grpc.status.UNIMPLEMENTED);
    assert.match(result.status.details, /no\.Such\/Method/);
  });
});

Deno.test("Proxy keeps a server stream open past the backend timeout once it is streaming", async () => {
  const release = gate();
  await using stack = await startStack({
    proxy: { backendTimeoutMs: 300 },
    handlers: {
      ServerStream(call) {
        call.write(bytes({ seq: 0 }));
        call.write(bytes({ seq: 1 }));
        release.promise.then(() => {
          call.write(bytes({ seq: 2 }));
          call.end();
        });
      },
    },
  });
  const started = Date.now();
  const call = stack.client.makeServerStreamRequest("/test.Test/ServerStream", identity, identity, bytes({}));
  const got: unknown[] = [];
  call.on("data", (m: Buffer) => got.push(parse(m)));
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  await until(() => got.length === 2, "two messages");
  // Not a sleep for correctness' sake: the backend timeout must have passed before the stream goes on.
  await until(() => Date.now() - started > 500, "the backend timeout to pass");
  release.open();
  assert.equal((await status).code, grpc.status.OK);
  assert.deepEqual(got, [{ seq: 0 }, { seq: 1 }, { seq: 2 }]);
});

Deno.test("Proxy collapses a gzip-compressed request with the same uncompressed one", async () => {
  const release = gate();
  await using stack = await startStack({
    handlers: {
      Unary(call, callback) {
        release.promise.then(() => callback(null, bytes({ echo: parse(call.request) })));
      },
    },
  });
  const gzipClient = new grpc.Client(`127.0.0.1:${stack.proxy.port}`, grpc.credentials.createInsecure(), {
    "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip,
  });
  try {
    const payload = { text: "x".repeat(2000) };
    const calls = [unary(stack.client, UNARY, payload), unary(gzipClient, UNARY, payload)];
    await until(() => stack.proxy.collapser.stats().waiting === 2, "both callers waiting");
    release.open();
    for (const result of await Promise.all(calls)) {
      assert.deepEqual(parse(result.response), { echo: payload });
    }
    assert.equal(stack.backend.calls.Unary, 1);
  } finally {
    gzipClient.close();
  }
});

Deno.test("Proxy answers malformed requests with a gRPC status and stays up", async (t) => {
  await using stack = await startStack({ proxy: { maxMessageBytes: 1024 } });
  const port = stack.proxy.port;
  const good = frame({ q: 1 });
  const cases: { name: string; body: Uint8Array; headers?: Record<string, string>; status: number }[] = [
    { name: "a request that ends inside a message", body: good.subarray(0, good.length - 2), status: 13 },
    { name: "a message flag that is neither 0 nor 1", body: Uint8Array.of(7, 0, 0, 0, 0), status: 13 },
    { name: "a compressed message without grpc-encoding", body: Uint8Array.of(1, 0, 0, 0, 1, 0), status: 13 },
    { name: "a message over the size limit", body: frame({ big: "y".repeat(2048) }), status: 8 },
    { name: "an invalid grpc-timeout", body: good, headers: { "grpc-timeout": "soon" }, status: 13 },
    { name: "an unsupported grpc-encoding", body: good, headers: { "grpc-encoding": "br" }, status: 12 },
    {
      name: "gzip that is not gzip",
      body: Uint8Array.of(1, 0, 0, 0, 2, 1, 2),
      headers: { "grpc-encoding": "gzip" },
      status: 13,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const result = await rawCall(port, UNARY, c.body, c.headers);
      assert.equal(result.grpcStatus, c.status);
    });
  }
  await t.step("a request that is not gRPC gets HTTP 415", async () => {
    const result = await rawCall(port, UNARY, good, { "content-type": "application/json" });
    assert.equal(result.headers[":status"], 415);
  });
  await t.step("the proxy still serves after all that", async () => {
    const result = await unary(stack.client, UNARY, { q: "still" });
    assert.equal(result.status.code, grpc.status.OK);
  });
  assert.equal(stack.backend.calls.Unary, 1, "no malformed request reached the backend");
});
