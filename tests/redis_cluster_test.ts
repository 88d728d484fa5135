/**
 * The shared tier on a real Redis Cluster: 3 masters and 3 replicas on loopback (redis-server
 * `--cluster-enabled yes`, joined by `redis-cli --cluster create … --cluster-replicas 1`), real proxies (in
 * this process, each with its own cluster client) in front of one grpc-js backend, and grpc-js clients.
 * Failures (a master killed mid-load, resharding, a slot with no master, seeds down at start-up) are in
 * tests/redis_cluster_faults_test.ts.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  admin,
  gate,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  unary,
  until,
} from "./_helpers.ts";
import { heldBackend, startFleet } from "./_redis.ts";
import { clusterConfig, keysOn, type RedisCluster, startCluster } from "./_redis_cluster.ts";
import { bucketTags, CLUSTER_BUCKETS, keySlot } from "../src/fleet/slots.ts";
import { needs } from "./_needs.ts";

const test = needs("redis-server", "redis-cli").test;

/** One cluster for this file's tests (each uses a prefix of its own). */
let shared: Promise<RedisCluster> | undefined;
const cluster = () => shared ??= startCluster();

test({
  name:
    "Redis Cluster: a herd spread over three proxies makes exactly one backend call, and every caller gets its answer",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { seeds } = await cluster();
    const release = gate();
    const backend = await startTestBackend(heldBackend(release.promise));
    try {
      // Each proxy knows a different seed only: the client learns the rest of the cluster from it.
      await using fleet = await startFleet(backend, 3, clusterConfig([seeds[0]]));
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      const perProxy = 20;
      const calls = fleet.clients.flatMap((client) =>
        Array.from({ length: perProxy }, () => unary(client, "/test.Test/Unary", { item: "hot" }))
      );
      await until(
        () =>
          backend.calls.Unary === 1 &&
          fleet.proxies.filter((p) => p.tier!.stats.lookups.wait === 1).length === 2,
        "one backend call, and two proxies waiting on its lock",
      );
      release.open();
      const results = await Promise.all(calls);
      for (const result of results) {
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
        assert.deepEqual(parse(result.response), { echo: { item: "hot" } });
      }
      assert.equal(backend.calls.Unary, 1, "one backend call for the whole fleet");
      const waits = fleet.proxies.map((p) => p.tier!.stats.waits.answer).sort();
      assert.deepEqual(waits, [0, 1, 1], "two proxies were answered by the published (SPUBLISH) answer");
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis Cluster: many keys → each master holds a share, one slot per collapse key, shard channels on every master",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const c = await cluster();
    const backend = await startTestBackend();
    const config = clusterConfig(c.seeds);
    try {
      await using fleet = await startFleet(backend, 2, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      const n = 600;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => unary(fleet.clients[i % 2], "/test.Test/Unary", { i })),
      );
      assert.ok(results.every((r) => r.status.code === grpc.status.OK));
      // The same keys through the other proxy: every answer comes from the cluster.
      await Promise.all(
        Array.from({ length: n }, (_, i) => unary(fleet.clients[(i + 1) % 2], "/test.Test/Unary", { i })),
      );
      assert.equal(backend.calls.Unary, n, "the second round was served from the cluster");

      const masters = (await c.nodes()).filter((node) => node.role === "master");
      assert.equal(masters.length, 3);
      const answers: number[] = [];
      for (const master of masters) {
        const keys = await keysOn(c, master.port, config.prefix);
        answers.push(keys.filter((k) => k.endsWith(":a")).length);
        for (const key of keys.slice(0, 20)) {
          // The key's bucket tag puts it on this master's slots (CLUSTER KEYSLOT agrees with ours).
          assert.equal(Number(await c.cli(master.port, "CLUSTER", "KEYSLOT", key)), keySlot(key));
        }
      }
      assert.equal(answers.reduce((a, b) => a + b, 0), n, `every answer stored once: ${answers}`);
      for (const count of answers) {
        assert.ok(count > n * 0.2, `each master holds a share (expected a third): ${answers.join(" / ")}`);
      }
      // Each proxy subscribed to the 1,024 bucket channels, spread over the masters (a third each).
      const channels = await Promise.all(
        masters.map(async (m) =>
          (await c.cli(m.port, "PUBSUB", "SHARDCHANNELS", `${config.prefix}*`)).split("\n").length
        ),
      );
      assert.equal(channels.reduce((a, b) => a + b, 0), CLUSTER_BUCKETS, `shard channels: ${channels}`);
      for (const count of channels) assert.ok(count > 300 && count < 380, `channels per master: ${channels}`);
    } finally {
      backend.close();
    }
  },
});

test({
  name: "Redis Cluster: each bucket tag lands on its own slot, evenly spaced (CLUSTER KEYSLOT agrees)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const c = await cluster();
    const tags = bucketTags();
    for (const b of [0, 1, 2, 341, 512, 1023]) {
      assert.equal(Number(await c.cli(c.ports[0], "CLUSTER", "KEYSLOT", `x{${tags[b]}}y`)), b * 16);
    }
  },
});

test({
  name:
    "Redis Cluster (process): --redis-cluster from the command line (one seed) → in use, metrics and status say so; two processes share",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const c = await cluster();
    const release = gate();
    const backend = await startTestBackend(heldBackend(release.promise));
    try {
      const args = ["--backend", backend.address, "--redis-cluster", c.seeds[1], "--redis-prefix", "proc:"];
      await using a = await startCollapserProcess(args);
      await using b = await startCollapserProcess(args);
      const metrics = async (port: number) => (await admin(port, "/metrics")).body;
      for (const proc of [a, b]) {
        await until(
          async () => /^collapser_redis_up 1$/m.test(await metrics(proc.metricsPort)),
          "the tier in use",
        );
        const text = await metrics(proc.metricsPort);
        assert.match(text, /^collapser_redis_shards_down 0$/m);
        assert.match(text, /^collapser_redis_shard_outages_total 0$/m);
        assert.deepEqual(proc.logs.filter((l) => !["INFO", "DEBUG"].includes(String(l.level))), []);
        const status = JSON.parse((await admin(proc.metricsPort, "/status.json")).body);
        assert.equal(status.config.redis, `cluster ${c.seeds[1]}`);
      }
      const clients = [newClient(a.port), newClient(b.port)];
      try {
        const calls = clients.flatMap((client) =>
          Array.from({ length: 5 }, () => unary(client, "/test.Test/Unary", { item: "process" }))
        );
        await until(() => backend.calls.Unary === 1, "the first backend call");
        // The other process waits on the lock (its lookup said so) before the answer is released.
        await until(async () =>
          /collapser_redis_lookups_total\{result="wait"\} 1/.test(
            (await metrics(a.metricsPort)) + (await metrics(b.metricsPort)),
          ), "one process waiting on the other's lock");
        release.open();
        for (const result of await Promise.all(calls)) assert.equal(result.status.code, grpc.status.OK);
        assert.equal(backend.calls.Unary, 1, "one backend call for both processes");
      } finally {
        for (const client of clients) client.close();
      }
    } finally {
      backend.close();
    }
  },
});

test({
  name: "Redis Cluster: (teardown)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    if (shared) await (await shared)[Symbol.asyncDispose]();
  },
});
