/**
 * The shared tier behind Redis Sentinel, on real processes: a master, its replica and three sentinels on
 * loopback (tests/_redis_cluster.ts), proxies in this process following the master the sentinels name. A
 * herd over the fleet is one backend call; the master SIGKILLed mid-load → no call fails, the sentinels
 * promote the replica, and the tier follows it by itself; sentinels that do not answer at start-up → calls
 * served locally.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { gate, parse, startTestBackend, unary, until } from "./_helpers.ts";
import { freePort, heldBackend, startFleet } from "./_redis.ts";
import { poll, sentinelConfig, startSentinels } from "./_redis_cluster.ts";
import { needs } from "./_needs.ts";

const test = needs("redis-server", "redis-cli").test;

const NO_LEAKS = { sanitizeResources: false, sanitizeOps: false };

test({
  name:
    "Redis Sentinel: a herd over three proxies is one backend call; the master SIGKILLed mid-load → 0 calls fail and the tier follows the promoted replica",
  ...NO_LEAKS,
  async fn() {
    await using sentinels = await startSentinels();
    const release = gate();
    const backend = await startTestBackend(heldBackend(release.promise));
    const config = sentinelConfig(sentinels.seeds, sentinels.name);
    try {
      await using fleet = await startFleet(backend, 3, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up");
      const herd = (item: string) =>
        Promise.all(
          fleet.clients.flatMap((client) =>
            Array.from({ length: 10 }, () => unary(client, "/test.Test/Unary", { item }))
          ),
        );
      const first = herd("hot");
      await until(
        () =>
          backend.calls.Unary === 1 &&
          fleet.proxies.filter((p) => p.tier!.stats.lookups.wait === 1).length === 2,
        "one backend call, and two proxies waiting on its lock",
      );
      release.open();
      for (const result of await first) {
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
        assert.deepEqual(parse(result.response).echo, { item: "hot" });
      }
      assert.equal(backend.calls.Unary, 1, "one backend call for the whole fleet");

      const [oldMaster] = sentinels.ports;
      assert.equal(await sentinels.master(), oldMaster);
      let stopped = false, made = 0;
      const failures: string[] = [];
      const load = Promise.all(fleet.clients.map(async (client, c) => {
        for (let i = 0; !stopped; i++) {
          const result = await unary(client, "/test.Test/Unary", { c, k: i % 100 });
          made++;
          if (result.status.code !== grpc.status.OK) failures.push(result.status.details);
        }
      }));
      try {
        await until(() => made >= 100, "load to be flowing");
        await sentinels.kill(oldMaster);
        const newMaster = await sentinels.failedOver(oldMaster);
        assert.notEqual(newMaster, oldMaster);
        await poll(() => fleet.proxies.every((p) => p.tier!.up), "every proxy to follow the new master");
        const after = made;
        await until(() => made >= after + 100, "load to go on on the new master");
      } finally {
        stopped = true;
      }
      await load;
      assert.deepEqual(failures, [], `0 of ${made} calls may fail`);
      assert.ok(fleet.proxies.every((p) => p.tier!.stats.outages >= 1), "each proxy noticed the master go");
      const before = backend.calls.Unary;
      for (const result of await herd("after-failover")) assert.equal(result.status.code, grpc.status.OK);
      assert.equal(backend.calls.Unary - before, 1, "one backend call for the fleet on the new master");
      const stored = await sentinels.cli(await sentinels.master(), "KEYS", `${config.prefix}*`);
      assert.ok(stored.includes(":a"), "answers stored on the new master");
    } finally {
      backend.close();
    }
  },
});

test({
  name: "Redis Sentinel: no sentinel answers at start-up → calls served locally, one outage",
  ...NO_LEAKS,
  async fn() {
    const backend = await startTestBackend();
    try {
      await using fleet = await startFleet(
        backend,
        2,
        sentinelConfig([`127.0.0.1:${freePort()}`], "nowhere"),
      );
      for (let i = 0; i < 10; i++) {
        const result = await unary(fleet.clients[i % 2], "/test.Test/Unary", { i });
        assert.equal(result.status.code, grpc.status.OK, result.status.details);
      }
      assert.equal(backend.calls.Unary, 10);
      for (const proxy of fleet.proxies) {
        assert.equal(proxy.tier!.up, false);
        assert.equal(proxy.tier!.stats.outages, 1, "one outage: not one per call or attempt");
      }
    } finally {
      backend.close();
    }
  },
});
