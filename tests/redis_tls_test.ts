/**
 * The shared tier over TLS against real TLS-only Redis servers (`redis-server --tls-port … --port 0`,
 * `tls-auth-clients yes`), with certificates made at test time (tests/_tls.ts): a private CA and a client
 * certificate for `rediss://`, for a Redis Cluster (cluster bus and replication over TLS too) and for
 * Sentinel; and a server certificate the CA did not sign → the tier stays down with one clear warning
 * while calls are served locally.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import {
  gate,
  newClient,
  parse,
  startCollapserProcess,
  startTestBackend,
  type TestBackend,
  unary,
  until,
} from "./_helpers.ts";
import { heldBackend, redisConfig, startFleet } from "./_redis.ts";
import {
  clusterConfig,
  type RedisTlsFiles,
  sentinelConfig,
  startCluster,
  startSentinels,
  startTlsRedis,
} from "./_redis_cluster.ts";
import { generateTlsFixture, type TlsFixture } from "./_tls.ts";
import { loadRedisTls, type RedisConfig } from "../src/fleet/redis_config.ts";
import { needs } from "./_needs.ts";

const test = needs("redis-server", "redis-cli").test;

const NO_LEAKS = { sanitizeResources: false, sanitizeOps: false };

let fixture: Promise<TlsFixture> | undefined;
const tls = () => fixture ??= generateTlsFixture();

/** Redis's side: `server`'s certificate, clients must present one `ca` signed (nodes present alice's). */
async function redisSide(): Promise<RedisTlsFiles> {
  const fx = await tls();
  return { ca: fx.ca, server: fx.server, client: fx.alice };
}

/** The proxy's side: trusts `ca`, presents bob's certificate (signed by `ca`). */
async function withClientTls(config: RedisConfig): Promise<RedisConfig> {
  const fx = await tls();
  return (await loadRedisTls({
    ...config,
    tls: true,
    tlsFiles: { ca: fx.ca.cert, cert: fx.bob.cert, key: fx.bob.key },
  }))!;
}

/** A herd of 10 callers per proxy on one payload, held at the backend until all proxies have asked. */
async function herdIsOneCall(
  fleet: { proxies: { tier?: { stats: { lookups: { wait: number } } } }[]; clients: grpc.Client[] },
  backend: TestBackend,
  release: () => void,
) {
  const calls = fleet.clients.flatMap((client) =>
    Array.from({ length: 10 }, () => unary(client, "/test.Test/Unary", { item: "hot" }))
  );
  await until(
    () =>
      backend.calls.Unary === 1 &&
      fleet.proxies.filter((p) => p.tier!.stats.lookups.wait === 1).length === fleet.proxies.length - 1,
    "one backend call, and the other proxies waiting on its lock",
  );
  release();
  for (const result of await Promise.all(calls)) {
    assert.equal(result.status.code, grpc.status.OK, result.status.details);
    assert.deepEqual(parse(result.response).echo, { item: "hot" });
  }
  assert.equal(backend.calls.Unary, 1, "one backend call for the whole fleet");
}

test({
  name: "Redis TLS: rediss:// with a private CA and a client certificate → the fleet shares over TLS",
  ...NO_LEAKS,
  async fn() {
    await using redis = await startTlsRedis(await redisSide());
    const release = gate();
    const backend = await startTestBackend(heldBackend(release.promise));
    try {
      const config = await withClientTls(redisConfig(`rediss://localhost:${redis.port}`));
      // The server requires a client certificate: without one the tier does not come up.
      const { tlsPem, ...noCert } = config;
      await using alone = await startFleet(backend, 1, { ...noCert, tlsPem: { ca: tlsPem!.ca } });
      assert.equal(alone.proxies[0].tier!.up, false, "no client certificate, no tier");
      await using fleet = await startFleet(backend, 2, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up over TLS");
      await herdIsOneCall(fleet, backend, release.open);
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis TLS: a Redis Cluster over TLS (bus and replication too) with a private CA and a client certificate",
  ...NO_LEAKS,
  async fn() {
    await using cluster = await startCluster({ replicas: 0, tls: await redisSide() });
    const release = gate();
    const backend = await startTestBackend(heldBackend(release.promise));
    try {
      await using fleet = await startFleet(backend, 2, await withClientTls(clusterConfig(cluster.seeds)));
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up over TLS");
      await herdIsOneCall(fleet, backend, release.open);
    } finally {
      backend.close();
    }
  },
});

test({
  name: "Redis TLS: Sentinel over TLS (sentinels and master) with a private CA and a client certificate",
  ...NO_LEAKS,
  async fn() {
    await using sentinels = await startSentinels({ tls: await redisSide() });
    const release = gate();
    const backend = await startTestBackend(heldBackend(release.promise));
    try {
      const config = await withClientTls(sentinelConfig(sentinels.seeds, sentinels.name));
      await using fleet = await startFleet(backend, 2, config);
      for (const proxy of fleet.proxies) await until(() => proxy.tier!.up, "the tier to come up over TLS");
      await herdIsOneCall(fleet, backend, release.open);
    } finally {
      backend.close();
    }
  },
});

test({
  name:
    "Redis TLS (process): a certificate refused either way → the tier stays down with one clear warning, calls served locally",
  ...NO_LEAKS,
  async fn(t) {
    const fx = await tls();
    const cases: { name: string; authClients: boolean; args: string[]; warning: RegExp }[] = [
      {
        name: "a server certificate the CA did not sign",
        authClients: false,
        // The proxy trusts another CA than the one that signed the server's certificate.
        args: ["--redis-ca", fx.otherCa.cert],
        warning: /TLS: Redis's certificate is not trusted .*is it signed by --redis-ca\?/,
      },
      {
        name: "no client certificate for a server that requires one (Deno's node:tls throws its alert too)",
        authClients: true,
        args: ["--redis-ca", fx.ca.cert],
        warning: /TLS: Redis refused this proxy's client certificate .*CertificateRequired.*--redis-cert/,
      },
    ];
    for (const { name, authClients, args, warning } of cases) {
      await t.step(name, async () => {
        await using redis = await startTlsRedis({ ...await redisSide(), authClients });
        const backend = await startTestBackend();
        try {
          await using proxy = await startCollapserProcess([
            ...["--backend", backend.address, "--redis", `rediss://localhost:${redis.port}`, ...args],
          ]);
          const client = newClient(proxy.port);
          try {
            for (let i = 0; i < 100; i++) {
              const result = await unary(client, "/test.Test/Unary", { i });
              assert.equal(result.status.code, grpc.status.OK, result.status.details);
            }
          } finally {
            client.close();
          }
          assert.equal(backend.calls.Unary, 100, "every call served locally");
          // The client retried the handshake in the background meanwhile: still one warning.
          const warnings = proxy.logs.filter((l) => !["INFO", "DEBUG"].includes(String(l.level)));
          assert.equal(warnings.length, 1, JSON.stringify(warnings));
          assert.match(String(warnings[0].message), warning);
          assert.deepEqual(proxy.otherOutput, [], "nothing but JSON log lines");
          assert.equal((await proxy.stop()).code, 0, "the proxy ran to the end and drained");
        } finally {
          backend.close();
        }
      });
    }
  },
});

test({
  name: "Redis TLS: (teardown)",
  ...NO_LEAKS,
  async fn() {
    if (fixture) await (await fixture)[Symbol.asyncDispose]();
  },
});
