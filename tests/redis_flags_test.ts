/**
 * The shared tier's flags: one Redis, a Cluster's seeds or Sentinels (exactly one), credentials, TLS files,
 * and what each bad combination says; how the configuration is shown; and the TLS files checked at
 * start-up (main.ts's one line naming the file, the usage, exit 1).
 */

import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import { effectiveConfig } from "../src/config/config_view.ts";
import { describeRedis, loadRedisTls, parseRedisNodes } from "../src/fleet/redis_config.ts";
import { Policy } from "../src/policy/policy.ts";
import { TlsError } from "../src/wire/tls.ts";
import { collapserCommand } from "./_helpers.ts";
import { generateTlsFixture } from "./_tls.ts";

const redisOf = (args: string[], env: Record<string, string> = {}) => {
  const parsed = parseConfig(["--backend", "b:1", ...args], env);
  assert.ok(!parsed.help);
  return parsed.config.redis;
};

Deno.test("--redis-cluster reads seed nodes (flag or REDIS_CLUSTER_NODES), credentials and TLS from their own flags", () => {
  const redis = redisOf(
    ["--redis-cluster", "10.0.0.1:7000, 10.0.0.2 ,[::1]:7002", "--redis-username", "app", "--redis-tls"],
    { REDIS_PASSWORD: "s3cret" },
  );
  assert.deepEqual(redis?.cluster, [
    { host: "10.0.0.1", port: 7000 },
    { host: "10.0.0.2", port: 6379 },
    { host: "::1", port: 7002 },
  ]);
  assert.equal(redis?.sentinel, undefined);
  assert.deepEqual([redis?.username, redis?.password, redis?.tls, redis?.db], ["app", "s3cret", true, 0]);
  assert.equal(describeRedis(redis!), "cluster 10.0.0.1:7000,10.0.0.2:6379,[::1]:7002 (TLS)");
  const fromEnv = redisOf([], { REDIS_CLUSTER_NODES: "c1:7000,c2:7000" });
  assert.deepEqual(fromEnv?.cluster, [{ host: "c1", port: 7000 }, { host: "c2", port: 7000 }]);
  assert.equal(fromEnv?.tls, false);
  assert.equal(fromEnv?.prefix, "collapser:");
});

Deno.test("--redis-sentinel reads sentinels (port 26379 by default) and the master's name; the sentinels' password apart", () => {
  const redis = redisOf([
    ...["--redis-sentinel", "s1,s2:26380", "--redis-sentinel-master", "cache"],
    ...["--redis-sentinel-password", "sp", "--redis-password", "mp", "--redis-ca", "/ca.pem"],
  ]);
  assert.deepEqual(redis?.sentinel, {
    nodes: [{ host: "s1", port: 26379 }, { host: "s2", port: 26380 }],
    master: "cache",
    password: "sp",
  });
  assert.equal(redis?.password, "mp");
  assert.equal(redis?.tls, true, "a CA file means TLS");
  assert.deepEqual(redis?.tlsFiles, { ca: "/ca.pem", cert: undefined, key: undefined });
  assert.equal(describeRedis(redis!), "sentinel cache at s1:26379,s2:26380 (TLS)");
  const view = effectiveConfig(
    parseConfigOk(["--redis-sentinel", "s1", "--redis-sentinel-master", "m"]),
    new Policy(),
  );
  assert.equal(view.redis, "sentinel m at s1:26379");
  assert.ok(!JSON.stringify(view).includes("mp"), "no password shown");
});

Deno.test("--redis rediss:// takes a private CA and a client certificate; the view masks credentials and names the files", () => {
  const config = parseConfigOk([
    ...["--redis", "rediss://app:pw@cache:6380/1", "--redis-ca", "/ca.pem"],
    ...["--redis-cert", "/c.pem", "--redis-key", "/c.key"],
  ]);
  assert.deepEqual(config.redis?.tlsFiles, { ca: "/ca.pem", cert: "/c.pem", key: "/c.key" });
  const view = effectiveConfig(config, new Policy());
  assert.deepEqual([view.redis, view.redisCa, view.redisCert], [
    "rediss://***@cache:6380/1",
    "/ca.pem",
    "/c.pem",
  ]);
  const plain = effectiveConfig(parseConfigOk(["--redis", "rediss://cache"]), new Policy());
  assert.equal(plain.redisCa, "system roots");
});

function parseConfigOk(args: string[]) {
  const parsed = parseConfig(["--backend", "b:1", ...args], {});
  assert.ok(!parsed.help);
  return parsed.config;
}

Deno.test("Redis flags that do not go together: one line that says why", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--redis", "redis://h", "--redis-cluster", "h:7000"], {}, /^--redis and --redis-cluster: give one/],
    [["--redis-cluster", "h:7000"], { REDIS_URL: "redis://h" }, /^REDIS_URL and --redis-cluster: give one/],
    [
      ["--redis-cluster", "h:1", "--redis-sentinel", "s:1"],
      {},
      /--redis-cluster and --redis-sentinel: give one/,
    ],
    [["--redis-sentinel", "s:1"], {}, /--redis-sentinel needs --redis-sentinel-master NAME/],
    [["--redis-sentinel-master", "m"], {}, /--redis-sentinel-master needs --redis URL, --redis-cluster or/],
    [["--redis-ca", "/ca.pem"], {}, /--redis-ca needs --redis URL/],
    [["--redis-tls"], {}, /--redis-tls needs/],
    [
      ["--redis-cluster", "h:1", "--redis-sentinel-master", "m"],
      {},
      /is for --redis-sentinel, not --redis-cluster/,
    ],
    [["--redis", "redis://h", "--redis-password", "x"], {}, /--redis-password is for --redis-cluster or/],
    [["--redis", "redis://h"], { REDIS_PASSWORD: "x" }, /REDIS_PASSWORD is for --redis-cluster or/],
    [["--redis", "redis://h", "--redis-tls"], {}, /give --redis a rediss:\/\/ URL/],
    [["--redis", "redis://h", "--redis-ca", "/ca.pem"], {}, /need TLS: give --redis a rediss:\/\/ URL/],
    [["--redis-cluster", "h:1", "--redis-cert", "/c.pem"], {}, /--redis-cert and --redis-key go together/],
    [["--redis-cluster", "h:99999"], {}, /--redis-cluster: "h:99999": expected HOST:PORT/],
    [["--redis-cluster", "redis://h:1"], {}, /--redis-cluster: "redis:\/\/h:1": expected HOST:PORT/],
    [["--redis-cluster", " , "], {}, /--redis-cluster: no node given/],
    [["--redis-cluster", "h:1", "--redis-prefix", "a{b}:"], {}, /--redis-prefix: .* hash tag/],
  ];
  for (const [args, env, message] of cases) {
    await t.step(`${args.join(" ")} ${JSON.stringify(env)}`, () => {
      assert.throws(
        () => parseConfig(["--backend", "b:1", ...args], env),
        (err: unknown) =>
          err instanceof ConfigError && message.test(err.message) && !err.message.includes("\n"),
      );
    });
  }
});

Deno.test("parseRedisNodes() keeps the order, drops repeats, and names a bad node", () => {
  assert.deepEqual(parseRedisNodes("a:1,b,a:1", 7), [{ host: "a", port: 1 }, { host: "b", port: 7 }]);
  assert.throws(() => parseRedisNodes("a:0", 7), /"a:0": expected HOST:PORT/);
  assert.throws(() => parseRedisNodes("a b:1", 7), /"a b:1"/);
});

Deno.test("loadRedisTls() reads and checks the files: a missing or bad one is a TlsError naming it", async () => {
  await using fx = await generateTlsFixture();
  const base = parseConfigOk(["--redis", "rediss://localhost"]).redis!;
  assert.equal(await loadRedisTls(base), base, "nothing to load without files");
  const loaded = await loadRedisTls({
    ...base,
    tlsFiles: { ca: fx.ca.cert, cert: fx.alice.cert, key: fx.alice.key },
  });
  assert.deepEqual(loaded?.tlsPem, { ca: fx.ca.certPem, cert: fx.alice.certPem, key: fx.alice.keyPem });
  const bad: [RedisTlsFilesLike, RegExp][] = [
    [{ ca: fx.file("missing.pem") }, /missing\.pem: cannot read the redis CA file/],
    [{ ca: fx.notPem }, /not-pem\.txt: the redis CA file holds no PEM certificate/],
    [{ cert: fx.alice.cert, key: fx.wrongKey }, /wrong\.key: this private key does not match/],
  ];
  for (const [tlsFiles, message] of bad) {
    await assert.rejects(
      loadRedisTls({ ...base, tlsFiles }),
      (err: unknown) => err instanceof TlsError && message.test(err.message),
    );
  }
});

type RedisTlsFilesLike = { ca?: string; cert?: string; key?: string };

Deno.test("collapser exits 1 with one line and the usage for conflicting Redis flags or a bad Redis TLS file", async (t) => {
  await using fx = await generateTlsFixture();
  const cases: [string[], RegExp][] = [
    [
      ["--redis", "redis://127.0.0.1:1", "--redis-cluster", "127.0.0.1:2"],
      /^collapser: --redis and --redis-cluster: give one/,
    ],
    [
      ["--redis-cluster", "127.0.0.1:2", "--redis-ca", fx.notPem],
      /^collapser: .*not-pem\.txt: the redis CA file holds no PEM/,
    ],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stderr } = await collapserCommand(["--backend", "127.0.0.1:1", ...args]).output();
      const text = new TextDecoder().decode(stderr);
      assert.equal(code, 1);
      assert.match(text.split("\n")[0], message);
      assert.equal(text.split("\n")[1], "", "one line, then the usage");
      assert.match(text, /Usage: collapser --backend/);
    });
  }
});
