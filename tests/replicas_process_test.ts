/**
 * The real `main.ts` process in front of real replicas: the example backend as three processes (spread,
 * SIGKILL of one mid-load, SIGTERM of one mid-load), and test backends behind a DNS name served by a DNS
 * server on loopback whose answers change.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { DEMO_SERVICE } from "../examples/backend.ts";
import {
  admin,
  type CollapserProcess,
  identity,
  newClient,
  parse,
  startCollapserProcess,
  unary,
  until,
} from "./_helpers.ts";
import { type ReplicaProcess, startReplicaProcess, startReplicasOnOnePort } from "./_replicas.ts";
import { startTestDns } from "./_dns_server.ts";

const GET = DEMO_SERVICE.Get.path;
/** Deadline of each call, so that a stuck call fails as an assertion. */
const CALL_LIMIT_MS = 10_000;

/** One Get through `client`; resolves with its status (never rejects). */
function get(client: grpc.Client, key: string): Promise<grpc.StatusObject> {
  return new Promise((resolve) => {
    const call = client.makeUnaryRequest(
      GET,
      identity,
      identity,
      Buffer.from(JSON.stringify({ key })),
      { deadline: Date.now() + CALL_LIMIT_MS },
      () => {},
    );
    call.on("status", resolve);
  });
}

interface Load {
  /** Each call: when it started (ms since the load began) and its status code. */
  results: { startedAt: number; code: number; details: string }[];
  /** Resolves when every call has ended. */
  done: Promise<void>;
  /** Calls ended so far. */
  ended(): number;
  /** A `performance.now()` time as ms since the load began. */
  at(time: number): number;
}

/** `count` unique-key Gets, `concurrency` at a time. */
function load(client: grpc.Client, count: number, concurrency: number, prefix: string): Load {
  const results: Load["results"] = [];
  const began = performance.now();
  let next = 0;
  let ended = 0;
  const done = Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      const startedAt = performance.now() - began;
      const status = await get(client, `${prefix}-${i}`);
      results[i] = { startedAt, code: status.code, details: status.details };
      ended++;
    }
  })).then(() => {});
  return { results, done, ended: () => ended, at: (time) => time - began };
}

/** Three replica processes and the proxy process in front of them (a comma list). */
async function threeReplicas(args: string[] = [], delay = "0") {
  const replicas: ReplicaProcess[] = [];
  for (let i = 0; i < 3; i++) replicas.push(await startReplicaProcess({ delay }));
  const proc = await startCollapserProcess(["--backend", replicas.map((r) => r.address).join(","), ...args]);
  const client = newClient(proc.port);
  return {
    replicas,
    proc,
    client,
    async [Symbol.asyncDispose]() {
      client.close();
      await proc.stop();
      for (const r of replicas) await r[Symbol.asyncDispose]();
    },
  };
}

/** A metric's value for one label set, from the proxy's /metrics. */
async function metric(proc: CollapserProcess, series: string): Promise<number | undefined> {
  const { body } = await admin(proc.metricsPort, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("collapser spreads 3,000 unique calls over 3 replica processes within ±10%, and shows each address", async () => {
  await using stack = await threeReplicas();
  const addresses = stack.replicas.map((r) => r.address);
  const startup = stack.proc.logs.find((l) => typeof (l.properties as { port?: number })?.port === "number")!;
  assert.deepEqual((startup.properties as { addresses: string[] }).addresses, addresses, "start-up log");
  const run = load(stack.client, 3000, 30, "spread");
  await run.done;
  assert.deepEqual(run.results.filter((r) => r.code !== 0), []);
  const counts = await Promise.all(stack.replicas.map((r) => r.calls()));
  assert.equal(counts.reduce((a, b) => a + b), 3000);
  for (const n of counts) assert.ok(Math.abs(n - 1000) <= 100, `spread ${counts.join(" / ")}`);
  for (const [i, address] of addresses.entries()) {
    assert.equal(
      await metric(stack.proc, `collapser_backend_address_calls_total{address="${address}"}`),
      counts[i],
    );
    assert.equal(await metric(stack.proc, `collapser_backend_address_ejected{address="${address}"}`), 0);
  }
  const status = JSON.parse((await admin(stack.proc.metricsPort, "/status.json")).body);
  assert.deepEqual(
    status.backend.addresses.map((
      a: { address: string; state: string; calls: number },
    ) => [a.address, a.state, a.calls]),
    addresses.map((a, i) => [a, "active", counts[i]]),
  );
});

for (const retry of [false, true]) {
  Deno.test(`collapser: SIGKILL of one replica mid-load fails at most the calls in flight on it${retry ? " (none with retry: true)" : ""}, and no later one`, async () => {
    const args: string[] = [];
    if (retry) {
      const file = await Deno.makeTempFile({ suffix: ".yaml" });
      await Deno.writeTextFile(file, `rules:\n  - method: ${GET}\n    retry: true\n`);
      args.push("--policy", file);
    }
    await using stack = await threeReplicas(args, "5ms");
    const run = load(stack.client, 900, 30, "kill");
    await until(() => run.ended() >= 300, "a third of the calls");
    const killedAt = performance.now();
    const status = await stack.replicas[1].stop("SIGKILL");
    assert.equal(status.signal, "SIGKILL");
    await run.done;
    const failed = run.results.filter((r) => r.code !== 0);
    // At most the calls in flight at the kill: at most the load's concurrency, spread over three replicas.
    assert.ok(failed.length <= 30, `${failed.length} failed: ${failed.map((f) => f.details).join("; ")}`);
    if (retry) assert.deepEqual(failed, [], "each was retried on another replica");
    for (const f of failed) assert.equal(f.code, grpc.status.UNAVAILABLE, f.details);
    const lateFailures = failed.filter((f) => f.startedAt > run.at(killedAt) + 1000);
    assert.deepEqual(lateFailures, [], "every call started a second after the kill succeeded");
    const [a, , c] = await Promise.all([stack.replicas[0].calls(), 0, stack.replicas[2].calls()]);
    assert.ok(a + c >= 600 - 30, `the others took the rest: ${a} + ${c}`);
    await until(
      async () => (await metric(stack.proc, `collapser_backend_ejections_total`) ?? 0) >= 1,
      "the killed replica's ejection",
    );
  });
}

Deno.test("collapser: SIGTERM of one replica mid-load (a graceful GOAWAY) fails no call", async () => {
  await using stack = await threeReplicas([], "5ms");
  const run = load(stack.client, 900, 30, "term");
  await until(() => run.ended() >= 300, "a third of the calls");
  const status = await stack.replicas[1].stop("SIGTERM");
  assert.equal(status.code, 0, "the replica drained and exited 0");
  await run.done;
  assert.deepEqual(run.results.filter((r) => r.code !== 0), []);
  const counts = [await stack.replicas[0].calls(), await stack.replicas[2].calls()];
  assert.ok(counts[0] + counts[1] >= 600, `the others took the rest: ${counts.join(" + ")}`);
});

Deno.test("collapser follows a DNS name's answers (dns://127.0.0.1:PORT/) within the resolve interval", async () => {
  await using dns = await startTestDns();
  const backends = await startReplicasOnOnePort(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
  const port = backends[0].port;
  dns.set("svc.test", ["127.0.0.2", "127.0.0.3"]);
  const proc = await startCollapserProcess([
    "--backend",
    `dns://127.0.0.1:${dns.port}/svc.test:${port}`,
    "--resolve-interval",
    "300ms",
  ]);
  const client = newClient(proc.port);
  try {
    const startup = proc.logs.find((l) => typeof (l.properties as { port?: number })?.port === "number")!;
    assert.deepEqual((startup.properties as { addresses: string[] }).addresses, [
      `127.0.0.2:${port}`,
      `127.0.0.3:${port}`,
    ]);
    const calls = async (n: number, tag: string) => {
      for (let i = 0; i < n; i++) {
        const r = await unary(client, "/test.Test/Unary", { tag, i }, {
          deadline: Date.now() + CALL_LIMIT_MS,
        });
        assert.equal(r.status.code, grpc.status.OK, r.status.details);
        assert.equal(parse(r.response).echo !== undefined, true);
      }
    };
    await calls(60, "before");
    assert.ok(backends[0].calls.Unary > 0 && backends[1].calls.Unary > 0, "both first addresses");
    assert.equal(backends[2].calls.Unary, 0);

    const changedAt = Date.now();
    dns.set("svc.test", ["127.0.0.3", "127.0.0.4"]);
    await until(
      () =>
        proc.logs.some((l) =>
          (l.properties as { removed?: string[] })?.removed?.includes(`127.0.0.2:${port}`)
        ),
      "the proxy to see the new answer",
    );
    const tookMs = Date.now() - changedAt;
    assert.ok(tookMs < 300 + 2_000, `seen after ${tookMs} ms (interval 300 ms)`);
    const before = backends.map((b) => b.calls.Unary);
    await calls(60, "after");
    const after = backends.map((b, i) => b.calls.Unary - before[i]);
    assert.equal(after[0], 0, "the address that left gets nothing");
    assert.ok(after[1] > 0 && after[2] > 0, `the new set shares the calls: ${after.join(" / ")}`);
    const status = JSON.parse((await admin(proc.metricsPort, "/status.json")).body);
    assert.deepEqual(
      status.backend.addresses.map((a: { address: string; name: string }) => `${a.address} ${a.name}`),
      [`127.0.0.3:${port} svc.test`, `127.0.0.4:${port} svc.test`],
    );
  } finally {
    client.close();
    await proc.stop();
    for (const b of backends) b.close();
  }
});
