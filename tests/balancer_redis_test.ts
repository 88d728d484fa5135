/**
 * The shared tier keys answers by the service a target names, not by the addresses it resolves to:
 * proxies that see different address sets for one DNS name share answers; a proxy of another name does not.
 * Needs redis-server.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { newClient, parse, unary, until } from "./_helpers.ts";
import { redisConfig, startRedis } from "./_redis.ts";
import { startReplicasOnOnePort } from "./_replicas.ts";
import { startTestDns } from "./_dns_server.ts";
import { Proxy } from "../src/server/proxy.ts";
import { Policy } from "../src/policy/policy.ts";
import { needs } from "./_needs.ts";

const test = needs("redis-server").test;

test("Redis tier: the namespace is the service's, whatever addresses its name resolves to", async () => {
  await using redis = await startRedis();
  await using dns = await startTestDns();
  const [two, three] = await startReplicasOnOnePort(["127.0.0.2", "127.0.0.3"]);
  const config = redisConfig(redis.url);
  const proxies: Proxy[] = [];
  const proxyOf = async (name: string) => {
    const proxy = await Proxy.start({
      backend: `dns://127.0.0.1:${dns.port}/${name}:${two.port}`,
      host: "127.0.0.1",
      port: 0,
      redis: config,
      policy: new Policy({ ttlMs: 10_000 }),
    });
    proxies.push(proxy);
    await until(() => proxy.tier!.up, "the tier to come up");
    return newClient(proxy.port);
  };
  const clients: grpc.Client[] = [];
  try {
    dns.set("svc.test", ["127.0.0.2"]);
    clients.push(await proxyOf("svc.test"));
    const first = await unary(clients[0], "/test.Test/Unary", { item: 1 });
    assert.equal(first.status.code, grpc.status.OK, first.status.details);
    assert.deepEqual([two.calls.Unary, three.calls.Unary], [1, 0]);

    // The name now resolves elsewhere: a new proxy sees only 127.0.0.3, and still shares the answer.
    dns.set("svc.test", ["127.0.0.3"]);
    clients.push(await proxyOf("svc.test"));
    assert.deepEqual(proxies[1].backend.balancer!.addresses, [`127.0.0.3:${two.port}`]);
    const second = await unary(clients[1], "/test.Test/Unary", { item: 1 });
    assert.equal(second.status.code, grpc.status.OK, second.status.details);
    assert.deepEqual(parse(second.response), parse(first.response), "the answer from Redis");
    assert.deepEqual([two.calls.Unary, three.calls.Unary], [1, 0], "no backend call");

    // Another service on the same addresses does not share it.
    dns.set("other.test", ["127.0.0.3"]);
    clients.push(await proxyOf("other.test"));
    const other = await unary(clients[2], "/test.Test/Unary", { item: 1 });
    assert.equal(other.status.code, grpc.status.OK, other.status.details);
    assert.deepEqual([two.calls.Unary, three.calls.Unary], [1, 1], "its own backend call");
  } finally {
    for (const client of clients) client.close();
    for (const proxy of proxies) await proxy.close();
    two.close();
    three.close();
  }
});
