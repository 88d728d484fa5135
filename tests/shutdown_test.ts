import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  admin,
  bytes,
  frame,
  gate,
  identity,
  newClient,
  parse,
  startCollapserProcess,
  startStack,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";

const UNARY = "/test.Test/Unary";

/** A value from the proxy's /metrics. */
async function metric(port: number, name: string): Promise<number | undefined> {
  const { body } = await admin(port, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

Deno.test("collapser answers /health, /ready and the gRPC health check", async (t) => {
  const backend = await startTestBackend();
  await using proc = await startCollapserProcess([], { BACKEND_ADDRESS: backend.address });
  const client = newClient(proc.port);
  try {
    await t.step(
      "/health is 200",
      async () => assert.equal((await admin(proc.metricsPort, "/health")).status, 200),
    );
    await t.step("/ready is 200 with the backend up", async () => {
      assert.deepEqual(await admin(proc.metricsPort, "/ready"), { status: 200, body: "ready\n" });
    });
    await t.step("/metrics is Prometheus text", async () => {
      const { status, body } = await admin(proc.metricsPort, "/metrics");
      assert.equal(status, 200);
      assert.match(body, /# TYPE collapser_requests_total counter/);
    });
    await t.step(
      "an unknown path is 404",
      async () => assert.equal((await admin(proc.metricsPort, "/x")).status, 404),
    );
    await t.step("grpc.health.v1.Health/Check for the proxy itself is SERVING", async () => {
      const response = await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          identity,
          identity,
          Buffer.alloc(0),
          (err, value) => err ? reject(err) : resolve(value!),
        )
      );
      assert.deepEqual([...response], [0x08, 0x01]);
    });
    await t.step("a named service is the backend's to answer", async () => {
      // HealthCheckRequest{service: "test.Test"}; this backend has no health service.
      const request = Buffer.concat([Buffer.from([0x0a, 9]), Buffer.from("test.Test")]);
      const status = await new Promise<grpc.StatusObject>((resolve) => {
        const call = client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          identity,
          identity,
          request,
          () => {},
        );
        call.on("status", resolve);
      });
      assert.equal(status.code, grpc.status.UNIMPLEMENTED);
    });
    await t.step("/ready is 503 once the backend is gone", async () => {
      backend.close();
      await until(async () => (await admin(proc.metricsPort, "/ready")).status === 503, "/ready to turn 503");
      assert.match((await admin(proc.metricsPort, "/ready")).body, /backend unreachable/);
      assert.equal((await admin(proc.metricsPort, "/health")).status, 200, "alive all the same");
    });
  } finally {
    client.close();
    backend.close();
  }
});

Deno.test("collapser drains every in-flight call on SIGTERM, refuses new ones, and exits 0", async () => {
  const release = gate();
  const backend = await startTestBackend({
    Unary(call, callback) {
      release.promise.then(() => callback(null, bytes({ answer: parse(call.request) })));
    },
  });
  const proc = await startCollapserProcess([], { BACKEND_ADDRESS: backend.address });
  const client = newClient(proc.port);
  try {
    // 20 callers on one key (a leader and its followers) and 5 on keys of their own.
    const herd = Array.from({ length: 20 }, () => unary(client, UNARY, { key: "shared" }));
    const singles = Array.from({ length: 5 }, (_, i) => unary(client, UNARY, { key: i }));
    // And a bidi stream in the middle of a conversation.
    const chat = client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
    const replies: unknown[] = [];
    let replied = Promise.withResolvers<void>();
    chat.on("data", (m: Buffer) => {
      replies.push(parse(m));
      replied.resolve();
    });
    chat.on("error", () => {}); // a failure shows as the status asserted below
    const chatStatus = new Promise<grpc.StatusObject>((resolve) => chat.on("status", resolve));
    chat.write(bytes({ ping: 1 }));
    await replied.promise;
    await until(
      async () => await metric(proc.metricsPort, "collapser_waiting_callers") === 25,
      "25 waiting callers",
    );

    proc.signal("SIGTERM");
    await until(async () => (await admin(proc.metricsPort, "/ready")).status === 503, "/ready to turn 503");
    assert.match((await admin(proc.metricsPort, "/ready")).body, /draining/);

    // A new connection finds the listener closed.
    const late = newClient(proc.port);
    const refused = await unary(late, UNARY, { key: "late" });
    late.close();
    assert.equal(refused.status.code, grpc.status.UNAVAILABLE);

    replied = Promise.withResolvers<void>();
    chat.write(bytes({ ping: 2 }));
    await replied.promise;
    chat.end();
    release.open();

    for (const result of await Promise.all(herd)) {
      assert.deepEqual(parse(result.response), { answer: { key: "shared" } });
    }
    for (const [i, result] of (await Promise.all(singles)).entries()) {
      assert.deepEqual(parse(result.response), { answer: { key: i } });
    }
    assert.equal((await chatStatus).code, grpc.status.OK);
    assert.deepEqual(replies, [{ echo: { ping: 1 } }, { echo: { ping: 2 } }]);
    const status = await proc.stop();
    assert.equal(status.code, 0);
    assert.ok(proc.logs.some((l) => l.message === "drained; exiting"), "logged a clean drain");
    assert.equal(backend.calls.Unary, 6);
  } finally {
    release.open(); // on a failure above, do not leave the proxy draining held calls for 30 s
    client.close();
    await proc.stop();
    backend.close();
  }
});

Deno.test("collapser gives up draining after --shutdown-timeout and still exits 0", async () => {
  const never = gate();
  const backend = await startTestBackend({
    Unary(_call, callback) {
      never.promise.then(() => callback(null, bytes({})));
    },
  });
  const proc = await startCollapserProcess(["--shutdown-timeout", "300ms"], {
    BACKEND_ADDRESS: backend.address,
  });
  const client = newClient(proc.port);
  try {
    const stuck = unary(client, UNARY, { key: "stuck" });
    await until(
      async () => await metric(proc.metricsPort, "collapser_waiting_callers") === 1,
      "the stuck call",
    );
    const status = await proc.stop();
    assert.equal(status.code, 0);
    assert.notEqual((await stuck).status.code, grpc.status.OK);
    assert.ok(proc.logs.some((l) => String(l.message).startsWith("shutdown timeout")), "logged the timeout");
  } finally {
    client.close();
    never.open();
    backend.close();
  }
});

Deno.test("Proxy.drain() refuses a call that arrives on an already-open connection and finishes the one in flight", async () => {
  const release = gate();
  await using stack = await startStack({
    handlers: {
      Unary(_call, callback) {
        release.promise.then(() => callback(null, bytes({ done: true })));
      },
    },
  });
  const http2 = await import("node:http2");
  const session = http2.connect(`http://127.0.0.1:${stack.proxy.port}`);
  session.on("error", () => {});
  await new Promise((resolve) => session.once("connect", resolve));
  try {
    const held = unary(stack.client, "/test.Test/Unary", { q: "held" });
    await until(() => stack.proxy.collapser.stats().waiting === 1, "a call in flight");
    const drained = stack.proxy.drain(10_000);
    // Sent on the open session after the drain began: the GOAWAY refuses it at the HTTP/2 level
    // (REFUSED_STREAM, which gRPC clients report as UNAVAILABLE and may retry elsewhere); one that slipped
    // past the GOAWAY would get grpc-status 14 from the proxy. Either way it never reaches the backend.
    const late = await new Promise<string>((resolve) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/test.Test/Unary",
        "content-type": "application/grpc",
        te: "trailers",
      });
      let status: unknown;
      stream.on("response", (h) => status = h["grpc-status"]);
      stream.on("trailers", (t) => status = t["grpc-status"]);
      stream.on("error", (err: Error) => resolve(err.message));
      stream.on("close", () => resolve(`grpc-status ${status}`));
      stream.end(frame({ q: "late" }));
    });
    assert.match(late, /REFUSED_STREAM|grpc-status 14/);
    release.open();
    assert.equal((await held).status.code, grpc.status.OK);
    assert.equal(await drained, true);
    assert.equal(stack.backend.calls.Unary, 1, "the refused call never reached the backend");
  } finally {
    release.open();
    session.destroy();
  }
});
