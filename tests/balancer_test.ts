/**
 * The proxy in front of several real backends (grpc-js servers on loopback): calls spread on the collapsed
 * path and on passthrough, a dead address routed around, retries (transparent, idempotent, once per
 * flight, within the budget), readiness, and a graceful shutdown of one backend mid-load.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import * as net from "node:net";
import {
  gate,
  identity,
  newClient,
  parse,
  startTestBackend,
  type TestBackend,
  type TestHandlers,
  unary,
} from "./_helpers.ts";
import { Proxy, type ProxyOptions } from "../src/server/proxy.ts";
import { methodPatterns, Policy } from "../src/policy/policy.ts";
import type { LbPolicy } from "../src/backend/picker.ts";
import { startTestDns } from "./_dns_server.ts";
import { startReplicasOnOnePort } from "./_replicas.ts";

const UNARY = "/test.Test/Unary";
/** Deadline of each call, so that a stuck call fails as an assertion. */
const CALL_LIMIT_MS = 10_000;

/** `count` calls of `one(i)`, `concurrency` at a time; resolves with their results in order. */
async function inParallel<T>(
  count: number,
  concurrency: number,
  one: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      results[i] = await one(i);
    }
  }));
  return results;
}

/** A loopback port that refuses connections (bound, then closed). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Backends, the proxy in front of all of them (a comma list), and a client; dispose closes them. */
async function replicas(
  count: number,
  options: { handlers?: (i: number) => TestHandlers; proxy?: Partial<ProxyOptions>; extra?: string[] } = {},
) {
  const backends: TestBackend[] = [];
  for (let i = 0; i < count; i++) backends.push(await startTestBackend(options.handlers?.(i)));
  const target = [...backends.map((b) => b.address), ...(options.extra ?? [])].join(",");
  const proxy = await Proxy.start({ backend: target, host: "127.0.0.1", port: 0, ...options.proxy });
  const client = newClient(proxy.port);
  return {
    backends,
    proxy,
    client,
    async [Symbol.asyncDispose]() {
      client.close();
      await proxy.close();
      for (const b of backends) b.close();
    },
  };
}

const call = (client: grpc.Client, request: unknown) =>
  unary(client, UNARY, request, { deadline: Date.now() + CALL_LIMIT_MS });

/** Whether every count is within `tolerance` (a fraction) of their mean. */
function within(counts: number[], tolerance: number): boolean {
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  return counts.every((n) => Math.abs(n - mean) <= tolerance * mean);
}

// Least request (the default) over 3,000 calls, as the issue asks; round robin is exactly even by design.
for (const [lbPolicy, calls] of [["least_request", 3000], ["round_robin", 1200]] as [LbPolicy, number][]) {
  Deno.test(`Proxy spreads ${calls} unique calls over 3 backends within ±10% (${lbPolicy}, collapsed path)`, async () => {
    await using stack = await replicas(3, { proxy: { balancing: { lbPolicy } } });
    const results = await inParallel(calls, 50, (i) => call(stack.client, { unique: i }));
    assert.equal(results.filter((r) => r.status.code !== grpc.status.OK).length, 0);
    const counts = stack.backends.map((b) => b.calls.Unary);
    assert.equal(counts.reduce((a, b) => a + b), calls, "one backend call per unique call");
    assert.ok(within(counts, 0.1), `spread ${counts.join(" / ")}`);
    const stats = stack.proxy.backend.balancer!.stats();
    assert.deepEqual(stats.addresses.map((a) => a.calls), counts, "per-address counters agree");
    assert.deepEqual(stats.addresses.map((a) => a.state), ["active", "active", "active"]);
  });
}

Deno.test("Proxy spreads passed-through calls and streams over the backends too", async (t) => {
  const noCollapse = methodPatterns("*", { allowDeclared: false });
  await using stack = await replicas(3, { proxy: { policy: new Policy({ noCollapse }) } });
  await t.step("1,500 unary calls passed through: within ±15%", async () => {
    const results = await inParallel(1500, 50, (i) => call(stack.client, { unique: i }));
    assert.equal(results.filter((r) => r.status.code !== grpc.status.OK).length, 0);
    const counts = stack.backends.map((b) => b.calls.Unary);
    assert.ok(within(counts, 0.15), `spread ${counts.join(" / ")}`);
  });
  await t.step("600 bidi streams: every backend gets a share (within ±25%)", async () => {
    await inParallel(600, 20, async (i) => {
      const chat = stack.client.makeBidiStreamRequest("/test.Test/Bidi", identity, identity);
      const reply = new Promise<Record<string, unknown>>((resolve) =>
        chat.once("data", (m) => resolve(parse(m)))
      );
      const status = new Promise<grpc.StatusObject>((resolve) => chat.on("status", resolve));
      chat.on("error", () => {});
      chat.write(Buffer.from(JSON.stringify({ i })));
      assert.deepEqual(await reply, { echo: { i } });
      chat.end();
      assert.equal((await status).code, grpc.status.OK);
    });
    const counts = stack.backends.map((b) => b.calls.Bidi);
    assert.equal(counts.reduce((a, b) => a + b), 600);
    assert.ok(within(counts, 0.25), `spread ${counts.join(" / ")}`);
  });
});

Deno.test("Proxy routes around an address that refuses connections: no call fails, it is ejected, /ready holds", async () => {
  const dead = `127.0.0.1:${await deadPort()}`;
  await using stack = await replicas(2, { extra: [dead], proxy: { balancing: { lbPolicy: "round_robin" } } });
  const results = await inParallel(300, 10, (i) => call(stack.client, { unique: i }));
  assert.deepEqual(results.filter((r) => r.status.code !== grpc.status.OK).map((r) => r.status.details), []);
  const stats = stack.proxy.backend.balancer!.stats();
  const gone = stats.addresses.find((a) => a.address === dead)!;
  assert.equal(gone.state, "ejected");
  assert.equal(gone.ejections, 1);
  assert.ok(gone.errors >= 1 && gone.errors <= 10, `errors on the dead address: ${gone.errors}`);
  assert.equal(stats.retries.transparent, gone.errors, "each refused call went again, elsewhere");
  assert.equal(stack.backends[0].calls.Unary + stack.backends[1].calls.Unary, 300);
  assert.equal(await stack.proxy.backendReady(2_000), true, "ready: two addresses are usable");
});

Deno.test("Proxy is not ready when no address can be reached", async () => {
  const target = `127.0.0.1:${await deadPort()},127.0.0.1:${await deadPort()}`;
  const proxy = await Proxy.start({ backend: target, host: "127.0.0.1", port: 0 });
  try {
    assert.equal(await proxy.backendReady(2_000), false);
    const client = newClient(proxy.port);
    const result = await call(client, { q: 1 });
    client.close();
    assert.equal(result.status.code, grpc.status.UNAVAILABLE);
  } finally {
    await proxy.close();
  }
});

/** Handlers of a backend that answers every Unary call UNAVAILABLE (it reached the backend). */
const failing: TestHandlers = {
  Unary: (_call, callback) => callback({ code: grpc.status.UNAVAILABLE, details: "overloaded" }),
};

Deno.test("Proxy retries a call that reached a backend only for methods that may be retried, once per flight", async (t) => {
  // Round robin: the first call of each pair goes to the failing backend, the second to the good one.
  const balancing = { lbPolicy: "round_robin" as const, outlier: { consecutiveFailures: 0 } };
  await t.step("not retryable (no declaration, no rule): the failure reaches the caller", async () => {
    await using stack = await replicas(2, { handlers: (i) => i === 0 ? failing : {}, proxy: { balancing } });
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await call(stack.client, { unique: i }));
    assert.equal(results.filter((r) => r.status.code === grpc.status.UNAVAILABLE).length, 5);
    assert.deepEqual(stack.backends.map((b) => b.calls.Unary), [5, 5]);
    assert.deepEqual(stack.proxy.backend.balancer!.stats().retries, { transparent: 0, idempotent: 0 });
  });
  await t.step("a rule says retry: every caller gets the other backend's answer", async () => {
    const policy = new Policy({}, { rules: [{ method: "/test.Test/*", matches: () => true, retry: true }] });
    await using stack = await replicas(2, {
      handlers: (i) => i === 0 ? failing : {},
      proxy: { balancing, policy },
    });
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await call(stack.client, { unique: i }));
    assert.deepEqual(results.map((r) => r.status.code), Array(10).fill(grpc.status.OK));
    assert.deepEqual(stack.backends.map((b) => b.calls.Unary), [5, 10]);
    assert.equal(stack.proxy.backend.balancer!.stats().retries.idempotent, 5);
  });
  await t.step("a flight of 50 callers is retried once for all of them", async () => {
    const release = gate();
    const held: TestHandlers = {
      Unary: (c, callback) =>
        void release.promise.then(() =>
          callback(null, Buffer.from(JSON.stringify({ ok: parse(c.request) })))
        ),
    };
    const policy = new Policy({}, { rules: [{ method: "/test.Test/*", matches: () => true, retry: true }] });
    await using stack = await replicas(2, {
      handlers: (i) => i === 0 ? failing : held,
      proxy: { balancing, policy },
    });
    const herd = Array.from({ length: 50 }, () => call(stack.client, { same: "key" }));
    while (stack.backends[1].calls.Unary === 0) await new Promise((r) => setTimeout(r, 1));
    release.open();
    const results = await Promise.all(herd);
    assert.deepEqual(new Set(results.map((r) => r.status.code)), new Set([grpc.status.OK]));
    assert.deepEqual(stack.backends.map((b) => b.calls.Unary), [1, 1], "one failed call, one retry");
  });
});

Deno.test("Proxy retries nothing with --retry-budget 0: a refused call fails", async () => {
  const dead = `127.0.0.1:${await deadPort()}`;
  // Round robin, the dead address first: the first call goes there.
  const stack = await (async () => {
    const backend = await startTestBackend();
    const proxy = await Proxy.start({
      backend: `${dead},${backend.address}`,
      host: "127.0.0.1",
      port: 0,
      balancing: { lbPolicy: "round_robin", retryBudget: 0 },
    });
    return { backend, proxy, client: newClient(proxy.port) };
  })();
  try {
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await call(stack.client, { unique: i }));
    assert.equal(results[0].status.code, grpc.status.UNAVAILABLE, "the refused one, not retried");
    assert.deepEqual(
      results.slice(1).map((r) => r.status.code),
      Array(5).fill(grpc.status.OK),
      "then ejected",
    );
    const stats = stack.proxy.backend.balancer!.stats();
    assert.equal(stats.retriesExhausted, 1);
    assert.deepEqual(stats.retries, { transparent: 0, idempotent: 0 });
  } finally {
    stack.client.close();
    await stack.proxy.close();
    stack.backend.close();
  }
});

Deno.test("Proxy drains an address that leaves the name's answer: its call in flight finishes, then it closes", async () => {
  await using dns = await startTestDns();
  const release = gate();
  const backends = await startReplicasOnOnePort(["127.0.0.2", "127.0.0.3"]);
  const port = backends[0].port;
  dns.set("svc.test", ["127.0.0.2"]);
  const proxy = await Proxy.start({
    backend: `dns://127.0.0.1:${dns.port}/svc.test:${port}`,
    host: "127.0.0.1",
    port: 0,
    balancing: { resolveIntervalMs: 50 },
    // Held calls: a method that does not collapse, so that the second call is a call of its own.
    policy: new Policy({ noCollapse: methodPatterns("/test.Test/ServerStream", { allowDeclared: false }) }),
  });
  const client = newClient(proxy.port);
  try {
    // A held stream on 127.0.0.2 (the test backend's ServerStream handler is replaced below).
    backends[0].close();
    const held = await startTestBackend(
      {
        ServerStream: (c) => void release.promise.then(() => (c.write(Buffer.from("{}")), c.end())),
      },
      "127.0.0.2",
      port,
    );
    const stream = client.makeServerStreamRequest(
      "/test.Test/ServerStream",
      identity,
      identity,
      Buffer.from("{}"),
    );
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
    stream.on("data", () => {});
    stream.on("error", () => {});
    while (held.calls.ServerStream === 0) await new Promise((r) => setTimeout(r, 1));
    dns.set("svc.test", ["127.0.0.3"]);
    const balancer = proxy.backend.balancer!;
    while (balancer.addresses[0] !== `127.0.0.3:${port}`) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(
      balancer.stats().addresses.map((a) => [a.address, a.state, a.inflight]),
      [[`127.0.0.3:${port}`, "active", 0], [`127.0.0.2:${port}`, "draining", 1]],
    );
    const next = await call(client, { after: true });
    assert.equal(next.status.code, grpc.status.OK);
    assert.equal(backends[1].calls.Unary, 1, "new calls go to the new address");
    release.open();
    assert.equal((await ended).code, grpc.status.OK, "the draining address finished its call");
    assert.deepEqual(
      balancer.stats().addresses.map((a) => a.address),
      [`127.0.0.3:${port}`],
      "then it closed",
    );
    held.close();
  } finally {
    client.close();
    await proxy.close();
    for (const b of backends) b.close();
  }
});
