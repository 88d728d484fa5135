/**
 * The shared tier on a real Redis Cluster when the cluster changes under load: a master killed (SIGKILL)
 * and its replica taking over, slots resharded from one master to another (MOVED, ASK, TRYAGAIN), slots
 * left without any master, and seeds that do not answer at start-up. In every case no client call fails;
 * where a slot has no usable master only its keys are served locally, and the tier follows the cluster's
 * new shape by itself. Every wait polls the cluster (cluster_state:ok, roles, slot owners), never sleeps.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  admin,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  type TestBackend,
  unary,
  until,
} from "./_helpers.ts";
import { startFleet } from "./_redis.ts";
import {
  clusterConfig,
  keysOn,
  payloadsOn,
  poll,
  type RedisCluster,
  serves,
  startCluster,
} from "./_redis_cluster.ts";
import { freePort, freePorts } from "./_redis.ts";
import { keySlot } from "../src/fleet/slots.ts";
import { needs } from "./_needs.ts";

const test = needs("redis-server", "redis-cli").test;

const NO_LEAKS = { sanitizeResources: false, sanitizeOps: false };

/**
 * Calls from every client at once, `perClient` in flight each, over `keys` payloads, until `stop()` says so;
 * resolves with how many were made and every failure's details.
 */
function loadUntil(clients: grpc.Client[], stop: () => boolean, keys = 300, perClient = 4) {
  let made = 0;
  const failures: string[] = [];
  const worker = async (client: grpc.Client, w: number) => {
    for (let i = w; !stop(); i += perClient) {
      try {
        const result = await unary(client, "/test.Test/Unary", { k: i % keys });
        if (result.status.code !== grpc.status.OK) failures.push(result.status.details);
      } catch (err) {
        // The client was closed under us (the test failed and is cleaning up).
        failures.push(String(err));
        return;
      }
      made++;
    }
  };
  const running = Promise.all(
    clients.flatMap((client) => Array.from({ length: perClient }, (_, w) => worker(client, w))),
  );
  return running.then(() => ({ made, failures }));
}

/** A herd for one payload over every proxy: resolves with the backend calls it cost. */
async function herd(backend: TestBackend, clients: grpc.Client[], payload: unknown): Promise<number> {
  const before = backend.calls.Unary;
  const results = await Promise.all(
    clients.flatMap((client) => Array.from({ length: 10 }, () => unary(client, "/test.Test/Unary", payload))),
  );
  for (const result of results) assert.equal(result.status.code, grpc.status.OK, result.status.details);
  return backend.calls.Unary - before;
}

/** The node id and port of the master serving `slot`, and of its replica. */
async function shardOf(cluster: RedisCluster, slot: number) {
  const master = await cluster.masterOf(slot);
  const replica = (await cluster.nodes()).find((n) => n.masterId === master.id);
  assert.ok(replica, `a replica of :${master.port}`);
  return { master, replica };
}

test({
  name:
    "Redis Cluster: a master killed (SIGKILL) mid-load → its replica takes over, 0 calls fail, and the tier uses the new master",
  ...NO_LEAKS,
  async fn() {
    await using cluster = await startCluster();
    const backend = await startTestBackend();
    const config = clusterConfig(cluster.seeds);
    try {
      await using fleet = await startFleet(backend, 3, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      const { master, replica } = await shardOf(cluster, 0);

      let stopped = false;
      const load = loadUntil(fleet.clients, () => stopped);
      try {
        await until(() => backend.calls.Unary >= 100, "load to be flowing");
        await cluster.kill(master.port);
        await poll(
          async () => (await cluster.masterOf(0)).id === replica.id,
          "the replica to take over slot 0",
        );
        await cluster.settled();
        // The proxies move to the new master by themselves: its keys are shared again.
        await until(
          () => fleet.proxies.every((p) => p.tier!.up && p.tier!.stats.shards.down.length === 0),
          "every proxy to use the new master",
        );
        const afterFailover = backend.calls.Unary;
        await until(() => backend.calls.Unary >= afterFailover + 50, "load to go on after the failover");
      } finally {
        stopped = true;
      }
      const { made, failures } = await load;
      assert.deepEqual(failures, [], `0 of ${made} calls may fail`);
      const stats = fleet.proxies.map((p) => p.tier!.stats);
      assert.ok(stats.some((s) => s.shards.outages > 0), "the killed master's shard was noticed");
      assert.ok(stats.every((s) => s.outages === 0), "the tier as a whole never went down");

      // Keys of the failed-over slots: one backend call for the fleet, stored on the new master.
      const [payload] = payloadsOn({ ...master, slots: ["0-0"] }, "after-failover", 1);
      assert.equal(await herd(backend, fleet.clients, payload), 1);
      assert.ok((await keysOn(cluster, replica.port, config.prefix)).length > 0, "keys on the new master");
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis Cluster: slots resharded mid-load (MOVED, ASK) → 0 calls fail; keys follow their slots; a herd is still one call",
  ...NO_LEAKS,
  async fn() {
    await using cluster = await startCluster({ replicas: 0 });
    const backend = await startTestBackend();
    const config = clusterConfig(cluster.seeds);
    try {
      await using fleet = await startFleet(backend, 3, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      const from = await cluster.masterOf(0);
      const to = await cluster.masterOf(16_383);

      let stopped = false;
      const load = loadUntil(fleet.clients, () => stopped);
      try {
        await until(() => backend.calls.Unary >= 100, "load to be flowing");
        assert.ok(
          (await keysOn(cluster, from.port, config.prefix)).length > 0,
          "answers on the source master",
        );
        // 500 slots and the answers in them move (MIGRATE) while the load runs: ASK for keys already gone,
        // MOVED once a slot is done, TRYAGAIN when a collapse key's keys are split for a moment.
        await cluster.cli(
          from.port,
          ...[
            "--cluster",
            "reshard",
            `127.0.0.1:${from.port}`,
            "--cluster-from",
            from.id,
            "--cluster-to",
            to.id,
          ],
          ...["--cluster-slots", "500", "--cluster-yes", "--cluster-pipeline", "5"],
        );
        await cluster.settled();
        assert.equal((await cluster.masterOf(0)).id, to.id, "slot 0 moved");
        const afterMove = backend.calls.Unary;
        await until(() => backend.calls.Unary >= afterMove + 50, "load to go on after the move");
      } finally {
        stopped = true;
      }
      const { made, failures } = await load;
      assert.deepEqual(failures, [], `0 of ${made} calls may fail`);
      assert.ok(fleet.proxies.every((p) => p.tier!.up && p.tier!.stats.outages === 0), "the tier stayed up");
      assert.ok(
        (await keysOn(cluster, to.port, config.prefix)).some((k) => keySlot(k) < 500),
        "answers of the moved slots live on the new master",
      );
      const [payload] = payloadsOn({ ...to, slots: ["0-499"] }, "after-reshard", 1);
      assert.equal(await herd(backend, fleet.clients, payload), 1);
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis Cluster: slots with no master at all → only their keys are served locally; the other masters' keys are still shared",
  ...NO_LEAKS,
  async fn() {
    await using cluster = await startCluster({ replicas: 0 });
    const backend = await startTestBackend();
    const config = clusterConfig(cluster.seeds);
    try {
      await using fleet = await startFleet(backend, 2, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      const lost = await cluster.masterOf(0);
      const kept = (await cluster.nodes()).find((n) => n.role === "master" && !serves(n, 0))!;
      // A master without a replica gone: its slots have no master, and none will come.
      await cluster.kill(lost.port);
      const shard = `master 127.0.0.1:${lost.port}`;
      const noticing = payloadsOn(lost, "noticing", 40);
      await until(async () => {
        const payload = noticing.shift();
        if (payload === undefined) return true;
        for (const client of fleet.clients) await unary(client, "/test.Test/Unary", payload);
        return fleet.proxies.every((p) => p.tier!.stats.shards.down.includes(shard));
      }, "both proxies to see that master down");
      for (const proxy of fleet.proxies) assert.deepEqual(proxy.tier!.stats.shards.down, [shard]);

      // Its keys: each proxy calls the backend itself, and no call fails.
      for (const payload of payloadsOn(lost, "lost", 5)) {
        const before = backend.calls.Unary;
        for (const client of fleet.clients) {
          const result = await unary(client, "/test.Test/Unary", payload);
          assert.equal(result.status.code, grpc.status.OK, result.status.details);
          assert.deepEqual(parse(result.response).echo, payload);
        }
        assert.equal(backend.calls.Unary - before, 2, "served locally on each proxy");
      }
      // The other masters' keys: still one backend call for the fleet.
      for (const payload of payloadsOn(kept, "kept", 5)) {
        assert.equal(await herd(backend, fleet.clients, payload), 1);
      }
      for (const proxy of fleet.proxies) {
        assert.equal(proxy.tier!.up, true, "the tier as a whole stays up");
        assert.equal(proxy.tier!.stats.outages, 0);
        assert.equal(proxy.tier!.stats.shards.outages, 1, "one outage of that master (one warning)");
      }
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis Cluster: no seed answers at start-up → calls served locally (one warning); when the cluster comes, the tier comes up by itself",
  ...NO_LEAKS,
  async fn() {
    const ports = freePorts(3);
    const backend = await startTestBackend();
    try {
      await using fleet = await startFleet(
        backend,
        2,
        clusterConfig(ports.slice(0, 3).map((p) => `127.0.0.1:${p}`)),
      );
      for (const proxy of fleet.proxies) {
        assert.equal(proxy.tier!.up, false);
        assert.equal(proxy.tier!.stats.outages, 1, "one outage, from start-up");
      }
      for (let i = 0; i < 20; i++) {
        const result = await unary(fleet.clients[i % 2], "/test.Test/Unary", { i });
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
      }
      assert.equal(backend.calls.Unary, 20, "served locally");
      assert.equal(fleet.proxies[0].tier!.stats.outages, 1, "still one outage: not one per call or attempt");
      await using cluster = await startCluster({ ports, replicas: 0 });
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up by itself");
      // Every master's keys are shared, whatever the proxies saw while the cluster was forming. "Up" comes with
      // the first master reached; a proxy whose slot map was read mid-formation serves a slot without a master
      // locally until it reads the map again (redis_cluster_link.ts): wait until a herd on each master is
      // shared (each try a new key), then check on keys of their own.
      for (const master of (await cluster.nodes()).filter((n) => n.role === "master")) {
        let tries = 0;
        await until(
          async () => await herd(backend, fleet.clients, payloadsOn(master, `settle-${tries++}`, 1)[0]) === 1,
          `a herd on :${master.port} to be shared`,
        );
        for (const payload of payloadsOn(master, "after-start", 2)) {
          assert.equal(await herd(backend, fleet.clients, payload), 1, `a key on :${master.port}`);
        }
      }
      for (const proxy of fleet.proxies) assert.deepEqual(proxy.tier!.stats.shards.down, []);
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis Cluster: with a password (REDIS_PASSWORD / --redis-password) the tier is in use; a wrong one → served locally, one outage",
  ...NO_LEAKS,
  async fn() {
    await using cluster = await startCluster({ replicas: 0, password: "s3cret-7d1" });
    const backend = await startTestBackend();
    try {
      await using right = await startFleet(
        backend,
        2,
        clusterConfig(cluster.seeds, { password: "s3cret-7d1" }),
      );
      for (const proxy of right.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      assert.equal(await herd(backend, right.clients, { item: "authenticated" }), 1);
      await using wrong = await startFleet(backend, 1, clusterConfig(cluster.seeds, { password: "not-it" }));
      const [proxy] = wrong.proxies;
      const before = backend.calls.Unary;
      for (let i = 0; i < 10; i++) {
        const result = await unary(wrong.clients[0], "/test.Test/Unary", { wrong: i });
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
      }
      assert.equal(backend.calls.Unary - before, 10, "served locally");
      assert.equal(proxy.tier!.up, false);
      assert.equal(proxy.tier!.stats.outages, 1, "one outage (one warning), not one per attempt");
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis Cluster (process): no seed answers → one warning that says so, every call served, /ready ready",
  ...NO_LEAKS,
  async fn() {
    const backend = await startTestBackend();
    try {
      const seeds = `127.0.0.1:${freePort()},127.0.0.1:${freePort()}`;
      await using proc = await startCollapserProcess([
        "--backend",
        backend.address,
        "--redis-cluster",
        seeds,
      ]);
      const client = newClient(proc.port);
      try {
        for (let i = 0; i < 50; i++) {
          const result = await unary(client, "/test.Test/Unary", { i });
          assert.equal(result.status.code, grpc.status.OK, result.status.details);
        }
      } finally {
        client.close();
      }
      assert.equal(backend.calls.Unary, 50);
      assert.equal((await admin(proc.metricsPort, "/ready")).status, 200, "ready: Redis is not the backend");
      const warnings = proc.logs.filter((l) => !["INFO", "DEBUG"].includes(String(l.level)));
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.match(
        String(warnings[0].message),
        /^redis unavailable \(no cluster node answers \(.*ECONNREFUSED/,
      );
    } finally {
      backend.close();
    }
  },
});
