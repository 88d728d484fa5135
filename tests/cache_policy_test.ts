/**
 * What is kept, and for how long, per method: stale-if-error, cached error statuses, refresh-ahead that
 * does not cost a one-off herd a second call, and shadow mode's would-be roles.
 */

import * as grpc from "@grpc/grpc-js";
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Policy } from "../src/policy/policy.ts";
import { parsePolicy } from "../src/policy/policy_file.ts";
import type { CallReport } from "../src/server/observer.ts";
import { bytes, gate, metadata, parse, startStack, unary, until } from "./_helpers.ts";

const UNARY = "/test.Test/Unary";

/** A backend whose Unary answers as `mode` says at the time of the call. */
function switchableBackend() {
  const state = { mode: "ok" as "ok" | "unavailable" | "exhausted" | "not-found" | "hang", version: 0 };
  const handlers = {
    Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      switch (state.mode) {
        case "ok":
          return callback(
            null,
            bytes({ version: ++state.version, auth: call.metadata.get("authorization")[0] }),
          );
        case "unavailable":
          return callback({ code: grpc.status.UNAVAILABLE, details: "down for maintenance" });
        case "exhausted":
          return callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: "over quota" });
        case "not-found":
          return callback({ code: grpc.status.NOT_FOUND, details: "no such item" });
        case "hang":
          return; // never answers: the backend timeout ends it
      }
    },
  };
  return { state, handlers };
}

Deno.test("Proxy with stale-if-error answers a failed backend call with the key's last good answer", async (t) => {
  const clock = FakeTimers.createClock();
  const { state, handlers } = switchableBackend();
  const reports: CallReport[] = [];
  await using stack = await startStack({
    handlers,
    proxy: {
      now: () => clock.now,
      backendTimeoutMs: 200,
      policy: new Policy({ ttlMs: 100, staleIfErrorMs: 10_000 }),
      observer: { call: (r) => reports.push(r), backendCall: () => {} },
    },
  });
  const alice = () => metadata({ authorization: "Bearer alice" });
  const call = () => unary(stack.client, UNARY, { item: 1 }, { metadata: alice() });

  await t.step("a good answer is cached", async () => {
    assert.equal(parse((await call()).response).version, 1);
  });
  for (
    const [mode, code] of [["unavailable", "UNAVAILABLE"], ["exhausted", "RESOURCE_EXHAUSTED"], [
      "hang",
      "DEADLINE_EXCEEDED (backend timeout)",
    ]] as const
  ) {
    await t.step(
      `past its TTL, the backend fails with ${code}: the caller gets the stale answer, marked`,
      async () => {
        clock.tick(150);
        state.mode = mode;
        const result = await call();
        assert.equal(result.status.code, grpc.status.OK);
        assert.equal(parse(result.response).version, 1);
        assert.deepEqual(result.headers?.get("x-collapser-stale"), ["1"]);
        assert.equal(reports.at(-1)?.stale, true);
      },
    );
  }
  await t.step("an answer that is not an availability failure passes through", async () => {
    state.mode = "not-found";
    const result = await call();
    assert.equal(result.status.code, grpc.status.NOT_FOUND);
  });
  await t.step("never across keys: another caller's credentials get the error", async () => {
    state.mode = "unavailable";
    const bob = await unary(stack.client, UNARY, { item: 1 }, {
      metadata: metadata({ authorization: "Bearer bob" }),
    });
    assert.equal(bob.status.code, grpc.status.UNAVAILABLE);
  });
  await t.step("a fresh answer replaces the stale one, unmarked", async () => {
    state.mode = "ok";
    const result = await call();
    assert.equal(parse(result.response).version, 2);
    assert.deepEqual(result.headers?.get("x-collapser-stale"), []);
  });
  await t.step("past the grace the error reaches the caller", async () => {
    clock.tick(100 + 10_000);
    state.mode = "unavailable";
    assert.equal((await call()).status.code, grpc.status.UNAVAILABLE);
  });
  await t.step("with stale-if-error off (the default) a failure is never masked", async () => {
    stack.proxy.policy = new Policy({ ttlMs: 100 });
    state.mode = "ok";
    await call();
    clock.tick(150);
    state.mode = "unavailable";
    assert.equal((await call()).status.code, grpc.status.UNAVAILABLE);
  });
});

Deno.test("Proxy caches the error statuses a rule names, for its errorTtl, and no others", async () => {
  const clock = FakeTimers.createClock();
  const { state, handlers } = switchableBackend();
  await using stack = await startStack({
    handlers,
    proxy: {
      now: () => clock.now,
      policy: new Policy({ ttlMs: 100 }, {
        rules: parsePolicy(`rules: [{method: "${UNARY}", cacheErrors: [NOT_FOUND], errorTtl: 1s}]`, "test"),
      }),
    },
  });
  const call = () => unary(stack.client, UNARY, { item: 404 });
  state.mode = "not-found";
  assert.equal((await call()).status.code, grpc.status.NOT_FOUND);
  clock.tick(999);
  const cached = await call();
  assert.equal(cached.status.code, grpc.status.NOT_FOUND);
  assert.equal(cached.status.details, "no such item");
  assert.equal(stack.backend.calls.Unary, 1, "NOT_FOUND answered from the cache for errorTtl");
  clock.tick(1);
  state.mode = "unavailable";
  assert.equal((await call()).status.code, grpc.status.UNAVAILABLE);
  assert.equal((await call()).status.code, grpc.status.UNAVAILABLE);
  assert.equal(stack.backend.calls.Unary, 3, "UNAVAILABLE is never cached");
});

Deno.test("Proxy refresh-ahead: a herd whose leader took longer than the TTL costs one backend call", async () => {
  // The measured case: 10,000 calls, a 50 ms backend, --cache-ttl 200ms; while the proxy took in the herd
  // the leader's call took 313 ms, and the first cache hit started a refresh. The clock is the cache's.
  const clock = FakeTimers.createClock();
  const release = gate();
  await using stack = await startStack({
    proxy: { now: () => clock.now, cacheTtlMs: 200 },
    handlers: {
      Unary(call, callback) {
        release.promise.then(() =>
          callback(null, bytes({ n: stack.backend.calls.Unary, echo: parse(call.request) }))
        );
      },
    },
  });
  const N = 2_000;
  const followers = Array.from({ length: N }, () => unary(stack.client, UNARY, { herd: 1 }));
  await until(
    () => stack.proxy.collapser.stats().waiting === N && stack.backend.calls.Unary === 1,
    "the herd on one flight",
  );
  clock.tick(313);
  release.open();
  await Promise.all(followers);
  // The tail of the herd: cache hits over the next 99 ms of the answer's 200 ms life.
  for (let ms = 0; ms < 99; ms += 11) {
    const tail = await Promise.all(Array.from({ length: 50 }, () => unary(stack.client, UNARY, { herd: 1 })));
    assert.ok(tail.every((r) => parse(r.response).n === 1));
    clock.tick(11);
  }
  assert.equal(stack.backend.calls.Unary, 1);
  assert.equal(stack.proxy.collapser.stats().refreshes, 0);
  // A key still asked for at half-life is hot: refreshed once, in the background.
  clock.tick(2);
  await unary(stack.client, UNARY, { herd: 1 });
  await until(() => stack.backend.calls.Unary === 2, "one refresh of a key that stayed hot");
  assert.equal(stack.proxy.collapser.stats().refreshes, 1);
});

Deno.test("Proxy with refreshAhead off in a rule never refreshes that method's answers", async () => {
  const clock = FakeTimers.createClock();
  await using stack = await startStack({
    proxy: {
      now: () => clock.now,
      policy: new Policy({ ttlMs: 100 }, {
        rules: parsePolicy(`rules: [{method: "*", refreshAhead: false}]`, "t"),
      }),
    },
  });
  await unary(stack.client, UNARY, { q: 1 });
  clock.tick(99);
  await unary(stack.client, UNARY, { q: 1 });
  assert.equal(stack.proxy.collapser.stats().refreshes, 0);
  assert.equal(stack.backend.calls.Unary, 1);
});

Deno.test("Proxy in shadow mode passes every call through and reports what each would have been", async () => {
  const clock = FakeTimers.createClock();
  const release = gate();
  const reports: CallReport[] = [];
  await using stack = await startStack({
    proxy: {
      shadow: true,
      now: () => clock.now,
      cacheTtlMs: 1_000,
      observer: { call: (r) => reports.push(r), backendCall: () => {} },
    },
    handlers: {
      Unary(_call, callback) {
        const n = stack.backend.calls.Unary;
        release.promise.then(() => callback(null, bytes({ n })));
      },
    },
  });
  const herd = Array.from({ length: 3 }, () => unary(stack.client, UNARY, { q: "shadow" }));
  await until(() => stack.backend.calls.Unary === 3, "every call at the backend, none collapsed");
  release.open();
  const answers = await Promise.all(herd);
  assert.equal(new Set(answers.map((r) => parse(r.response).n)).size, 3, "each its own answer");
  const hit = await unary(stack.client, UNARY, { q: "shadow" });
  assert.equal(parse(hit.response).n, 4, "a would-be cache hit still reaches the backend");
  clock.tick(1_000);
  await unary(stack.client, UNARY, { q: "shadow" });
  const would = reports.map((r) => r.wouldBe);
  assert.deepEqual(would.slice(0, 3).sort(), ["follower", "follower", "leader"]);
  assert.deepEqual(would.slice(3), ["cache", "leader"]);
  assert.ok(reports.every((r) => r.outcome === "passthrough"));
  assert.equal(stack.proxy.collapser.stats().cacheEntries, 0, "nothing is recorded");
  assert.equal(stack.proxy.shadow?.flights, 0);
});
