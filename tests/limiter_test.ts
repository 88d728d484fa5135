import * as grpc from "@grpc/grpc-js";
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Limiter } from "../src/backend/limiter.ts";
import { Policy } from "../src/policy/policy.ts";
import { bytes, gate, identity, metadata, parse, startStack, unary, until } from "./_helpers.ts";

Deno.test("Limiter grants N slots, queues the rest in arrival order, and sheds past the queue", () => {
  const limiter = new Limiter({ maxConcurrent: 2, maxQueue: 2, queueTimeoutMs: 60_000 });
  const log: string[] = [];
  const tickets = ["a", "b", "c", "d", "e"].map((name) =>
    limiter.acquire(() => log.push(`grant ${name}`), (reason) => log.push(`shed ${name} ${reason}`))
  );
  assert.deepEqual(log, ["grant a", "grant b", "shed e queue_full"]);
  assert.equal(limiter.active, 2);
  assert.equal(limiter.queued, 2);
  tickets[0].release();
  assert.deepEqual(log.slice(3), ["grant c"]);
  tickets[0].release(); // idempotent: no second slot freed
  assert.equal(limiter.active, 2);
  tickets[3].release(); // d leaves the queue before its turn
  assert.equal(limiter.queued, 0);
  tickets[1].release();
  assert.equal(limiter.active, 1, "d left, so nobody took b's slot");
  const f = limiter.acquire(() => log.push("grant f"), () => log.push("shed f"));
  assert.equal(log.at(-1), "grant f");
  tickets[2].release();
  f.release();
  assert.equal(limiter.active, 0);
  assert.deepEqual(limiter.shed, { queue_full: 1, queue_timeout: 0 });
});

Deno.test("Limiter sheds a call that waited past the queue timeout", () => {
  const clock = FakeTimers.install();
  try {
    const limiter = new Limiter({ maxConcurrent: 1, maxQueue: 10, queueTimeoutMs: 500 });
    const log: string[] = [];
    const first = limiter.acquire(() => log.push("grant 1"), () => log.push("shed 1"));
    limiter.acquire(() => log.push("grant 2"), (reason) => log.push(`shed 2 ${reason}`));
    clock.tick(499);
    assert.deepEqual(log, ["grant 1"]);
    clock.tick(1);
    assert.deepEqual(log, ["grant 1", "shed 2 queue_timeout"]);
    assert.equal(limiter.queued, 0);
    first.release();
    assert.equal(limiter.active, 0, "the timed-out call does not take the slot");
    assert.equal(clock.countTimers(), 0);
  } finally {
    clock.uninstall();
  }
});

Deno.test("Limiter with no queue sheds at once; a grant that throws gives its slot back", () => {
  const limiter = new Limiter({ maxConcurrent: 1, maxQueue: 0 });
  assert.throws(() =>
    limiter.acquire(() => {
      throw new Error("cannot start");
    }, () => {}), /cannot start/);
  assert.equal(limiter.active, 0);
  const held = limiter.acquire(() => {}, () => {});
  let shed = "";
  limiter.acquire(() => {}, (reason) => shed = reason);
  assert.equal(shed, "queue_full");
  held.release();
  assert.throws(() => new Limiter({ maxConcurrent: 0 }), /maxConcurrent must be an integer >= 1: received 0/);
});

Deno.test("Proxy with --max-backend-concurrency: the backend never sees more than N calls at once", async (t) => {
  const N = 4;
  let release = gate();
  let active = 0;
  let peak = 0;
  const track = async (work: () => Promise<void>) => {
    active++;
    peak = Math.max(peak, active);
    try {
      await work();
    } finally {
      active--;
    }
  };
  await using stack = await startStack({
    proxy: { backendLimit: { maxConcurrent: N, maxQueue: 20, queueTimeoutMs: 30_000 } },
    handlers: {
      Unary(call, callback) {
        const held = release.promise;
        track(async () => {
          await held;
          callback(null, bytes({ echo: parse(call.request) }));
        });
      },
      Bidi(call) {
        track(() =>
          new Promise<void>((resolve) => {
            call.on("data", (m: Buffer) => call.write(bytes({ echo: parse(m) })));
            call.on("end", () => {
              call.end();
              resolve();
            });
          })
        );
      },
    },
  });
  const UNIQUE = 30;
  await t.step(
    "unique keys past N + queue are shed at once with RESOURCE_EXHAUSTED; the rest wait",
    async () => {
      const calls = Array.from({ length: UNIQUE }, (_, i) => unary(stack.client, "/test.Test/Unary", { i }));
      await until(
        () => stack.backend.calls.Unary === N && stack.proxy.stats().queued === 20,
        "N at the backend, 20 queued",
      );
      assert.equal(stack.proxy.stats().shedQueueFull, UNIQUE - N - 20);
      release.open();
      const codes = (await Promise.all(calls)).map((r) => r.status.code);
      assert.equal(codes.filter((c) => c === grpc.status.OK).length, N + 20);
      assert.equal(codes.filter((c) => c === grpc.status.RESOURCE_EXHAUSTED).length, UNIQUE - N - 20);
      assert.equal(peak, N);
    },
  );
  await t.step(
    "a collapsed herd takes one slot; a passthrough stream waits for one, its message with it",
    async () => {
      release = gate();
      const before = stack.backend.calls.Unary;
      const herd = Array.from({ length: 50 }, () => unary(stack.client, "/test.Test/Unary", { hot: 1 }));
      const others = Array.from(
        { length: N - 1 },
        (_, i) => unary(stack.client, "/test.Test/Unary", { other: i }),
      );
      await until(() => stack.backend.calls.Unary === before + N, "the herd's one call and three others");
      const bidi = stack.client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
      bidi.on("error", () => {});
      const reply = new Promise<Buffer>((resolve) => bidi.once("data", resolve));
      bidi.write(bytes({ ping: 1 }));
      await until(() => stack.proxy.stats().queued === 1, "the stream waiting for a slot");
      assert.equal(stack.backend.calls.Bidi, 0);
      release.open();
      assert.deepEqual(parse(await reply), { echo: { ping: 1 } });
      bidi.end();
      await new Promise((resolve) => bidi.on("status", resolve));
      const results = await Promise.all([...herd, ...others]);
      assert.ok(results.every((r) => r.status.code === grpc.status.OK));
      assert.equal(stack.backend.calls.Unary, before + N, "the herd was one backend call");
      assert.equal(peak, N, "never more than N at once");
      assert.equal(stack.proxy.stats().queued, 0);
      assert.equal(stack.proxy.stats().backendInflight, 0);
    },
  );
});

Deno.test("Proxy with --max-backend-concurrency and stale-if-error answers a shed call with the stale answer", async () => {
  const clock = FakeTimers.createClock();
  const hold = gate();
  let holding = false;
  await using stack = await startStack({
    proxy: {
      now: () => clock.now,
      policy: new Policy({ ttlMs: 100, staleIfErrorMs: 60_000 }),
      backendLimit: { maxConcurrent: 1, maxQueue: 0, queueTimeoutMs: 1_000 },
    },
    handlers: {
      Unary(call, callback) {
        const answer = () =>
          callback(null, bytes({ echo: parse(call.request), n: stack.backend.calls.Unary }));
        if (holding) hold.promise.then(answer);
        else answer();
      },
    },
  });
  const alice = () => metadata({ authorization: "Bearer alice" });
  const first = await unary(stack.client, "/test.Test/Unary", { item: 1 }, { metadata: alice() });
  assert.equal(parse(first.response).n, 1);
  clock.tick(150);
  holding = true;
  const blocker = unary(stack.client, "/test.Test/Unary", { other: 1 });
  await until(() => stack.backend.calls.Unary === 2, "the one slot taken");
  const shed = await unary(stack.client, "/test.Test/Unary", { item: 1 }, { metadata: alice() });
  assert.equal(shed.status.code, grpc.status.OK);
  assert.equal(parse(shed.response).n, 1, "the key's last good answer");
  assert.deepEqual(shed.headers?.get("x-collapser-stale"), ["1"]);
  hold.open();
  await blocker;
});
