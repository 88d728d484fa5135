import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import { effectiveConfig, redactCredentials } from "../src/config/config_view.ts";
import { Policy } from "../src/policy/policy.ts";
import { maskedRedisUrl } from "../src/fleet/redis_config.ts";
import { readCgroupLimit } from "../src/config/memory_flags.ts";

function config(args: string[], env: Record<string, string> = {}) {
  const parsed = parseConfig(args, env);
  assert.equal(parsed.help, false);
  return (parsed as Extract<typeof parsed, { help: false }>).config;
}

Deno.test("parseConfig() applies the documented defaults", () => {
  // --memory-limit auto: this machine's cgroup limit, if it has one (tests/memory_flags_test.ts sizes it).
  const cgroup = readCgroupLimit();
  const parsed = config(["--backend", "127.0.0.1:50051"]);
  assert.deepEqual(
    parsed.memoryLimit,
    cgroup === undefined ? undefined : { bytes: cgroup, source: "cgroup" },
  );
  if (cgroup === undefined) assert.equal(parsed.cacheMaxBytes, 64 * 2 ** 20);
  const { memoryLimit: _limit, cacheMaxBytes: _bytes, memoryWarnings: _warnings, ...rest } = parsed;
  assert.deepEqual(rest, {
    backend: "127.0.0.1:50051",
    balancing: {
      lbPolicy: "least_request",
      resolveIntervalMs: 30_000,
      outlier: { consecutiveFailures: 5, baseEjectionMs: 30_000, maxEjectedPercent: 50 },
      retryBudget: 0.2,
    },
    host: "0.0.0.0",
    port: 50052,
    metricsPort: 2112,
    cacheTtlMs: 100,
    backendTimeoutMs: 10_000,
    keyHeaders: ["authorization"],
    ignoreHeaders: [],
    collapse: undefined,
    noCollapse: undefined,
    policyFile: undefined,
    descriptorSet: undefined,
    reflection: false,
    shadow: false,
    staleIfErrorMs: 0,
    refreshAhead: true,
    hotKeys: 1000,
    backendLimit: undefined,
    tls: undefined,
    backendTls: undefined,
    redis: undefined,
    maxTtlMs: 60_000,
    cacheControl: true,
    allowClientNoCache: false,
    cacheStatus: true,
    adminToken: undefined,
    adminHost: undefined,
    reusePort: false,
    workers: 0,
    recycleConnections: 0,
    recycleRssBytes: 0,
    cacheMaxEntries: 10_000,
    maxMessageBytes: 4 * 1024 * 1024,
    logLevel: "info",
    shutdownTimeoutMs: 30_000,
  });
});

Deno.test("parseConfig() reads the environment, and flags override it", () => {
  const env = {
    BACKEND_ADDRESS: "env:1",
    GRPC_PORT: "6000",
    METRICS_PORT: "6001",
    BACKEND_TIMEOUT: "2s",
    COLLAPSER_CACHE_DURATION: "250ms",
    LOG_LEVEL: "debug",
    COLLAPSER_KEY_HEADERS: "X-Tenant",
  };
  const fromEnv = config([], env);
  assert.equal(fromEnv.backend, "env:1");
  assert.equal(fromEnv.port, 6000);
  assert.equal(fromEnv.metricsPort, 6001);
  assert.equal(fromEnv.backendTimeoutMs, 2000);
  assert.equal(fromEnv.cacheTtlMs, 250);
  assert.equal(fromEnv.logLevel, "debug");
  assert.deepEqual(fromEnv.keyHeaders, ["authorization", "x-tenant"]);

  const fromFlags = config([
    "--backend=flag:2",
    "--port",
    "7000",
    "--metrics-port",
    "7001",
    "--backend-timeout",
    "1m",
    "--cache-ttl",
    "0",
    "--log-level",
    "warn",
    "--key-headers",
    "x-a, x-b",
  ], env);
  assert.equal(fromFlags.backend, "flag:2");
  assert.equal(fromFlags.port, 7000);
  assert.equal(fromFlags.metricsPort, 7001);
  assert.equal(fromFlags.backendTimeoutMs, 60_000);
  assert.equal(fromFlags.cacheTtlMs, 0);
  assert.equal(fromFlags.logLevel, "warn");
  assert.deepEqual(fromFlags.keyHeaders, ["authorization", "x-a", "x-b"]);
});

Deno.test("parseConfig() says exactly what is wrong", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [[], {}, /no backend/],
    [["--backend", "b:1", "--port", "70000"], {}, /--port: invalid port "70000"/],
    [["--backend", "b:1"], { GRPC_PORT: "http" }, /GRPC_PORT: invalid port "http"/],
    [["--backend", "b:1", "--cache-ttl", "5x"], {}, /--cache-ttl: invalid duration "5x"/],
    [["--backend", "b:1"], { BACKEND_TIMEOUT: "0" }, /BACKEND_TIMEOUT: must be greater than 0/],
    [["--backend", "b:1", "--log-level", "loud"], {}, /--log-level: invalid log level "loud"/],
    [
      ["--backend", "b:1", "--key-headers", "bad header"],
      {},
      /--key-headers: invalid metadata name "bad header"/,
    ],
    [["--backend", "b:1", "--max-message-size", "0"], {}, /--max-message-size: invalid size/],
    [["--bogus"], {}, /Unknown option '--bogus'/],
    [
      ["--backend", "b:1", "--backend-timeout", "1000h"],
      {},
      /--backend-timeout: "1000h" is too long \(at most 596h\)/,
    ],
    [["--backend", "b:1"], { SHUTDOWN_TIMEOUT: "1000h" }, /SHUTDOWN_TIMEOUT: "1000h" is too long/],
    [["--backend", "b:1", "extra"], {}, /positional argument/],
    [["--backend", ":::"], {}, /--backend: invalid backend ":::": .* \(expected HOST:PORT/],
    [["--backend", "host:0"], {}, /--backend: invalid backend "host:0"/],
    [[], { BACKEND_ADDRESS: "no-port" }, /BACKEND_ADDRESS: invalid backend "no-port"/],
    [
      ["--backend", "b:1", "--ignore-headers", "authorization"],
      {},
      /authorization is always part of the key/,
    ],
    [["--backend", "b:1", "--ignore-headers", "X Y"], {}, /--ignore-headers: invalid metadata name "X Y"/],
    [
      ["--backend", "b:1", "--collapse", "shop.Cart/*"],
      {},
      /--collapse: invalid method pattern "shop.Cart\/\*"/,
    ],
    [["--backend", "b:1", "--no-collapse", "/a/[bc]"], {}, /--no-collapse: invalid method pattern/],
    [["--backend", "b:1", "--no-collapse", "declared"], {}, /"declared" is only meaningful in --collapse/],
    [["--backend", "b:1", "--collapse", "declared"], {}, /"declared" needs --descriptor-set or --reflection/],
    [["--backend", "b:1"], { COLLAPSER_COLLAPSE: " , " }, /COLLAPSER_COLLAPSE: empty pattern list/],
    [["--backend", "b:1"], { COLLAPSER_SHADOW: "maybe" }, /COLLAPSER_SHADOW: expected true or false/],
    [["--backend", "b:1", "--stale-if-error", "soon"], {}, /--stale-if-error: invalid duration "soon"/],
    [["--backend", "b:1", "--refresh-ahead", "--no-refresh-ahead"], {}, /give one/],
    [["--backend", "b:1", "--hot-keys", "lots"], {}, /--hot-keys: invalid count "lots"/],
    [["--backend", "b:1"], { COLLAPSER_HOT_KEYS: "-1" }, /COLLAPSER_HOT_KEYS: invalid count "-1"/],
    [["--backend", "b:1", "--hot-keys", "5", "--no-hot-keys"], {}, /give one/],
    [["--backend", "b:1", "--tls-cert", "c.pem"], {}, /--tls-cert and --tls-key go together/],
    [
      ["--backend", "b:1", "--max-backend-concurrency=-3"],
      {},
      /--max-backend-concurrency: invalid count "-3"/,
    ],
    [
      ["--backend", "b:1", "--max-backend-concurrency", "4", "--queue-timeout", "0"],
      {},
      /--queue-timeout: must be greater than 0/,
    ],
    [["--backend", "b:1", "--tls-client-ca", "ca.pem"], {}, /--tls-client-ca needs --tls-cert and --tls-key/],
    [["--backend", "b:1", "--backend-cert", "c.pem"], {}, /--backend-cert and --backend-key go together/],
    [
      ["--backend", "b:1", "--redis", "localhost:6379"],
      {},
      /--redis: .*scheme must be redis:\/\/ or rediss:\/\//,
    ],
    [["--backend", "b:1"], { REDIS_URL: "redis://" }, /REDIS_URL: .*(no host|not a URL)/],
    [["--backend", "b:1", "--redis", "redis://h:6379/x"], {}, /--redis: .*database number/],
    [["--backend", "b:1", "--redis", "redis://h:6379/0?x=1"], {}, /--redis: .*query/],
    [["--backend", "b:1", "--redis", "not a url"], {}, /--redis: not a URL/],
    [["--backend", "b:1", "--redis-prefix", "p:"], {}, /--redis-prefix needs --redis URL/],
    [
      ["--backend", "b:1", "--redis", "redis://h", "--redis-timeout", "0"],
      {},
      /--redis-timeout: must be greater/,
    ],
    [
      ["--backend", "b:1", "--redis", "redis://h", "--redis-max-bytes", "1G"],
      {},
      /--redis-max-bytes: invalid count/,
    ],
  ];
  for (const [args, env, message] of cases) {
    await t.step(`${args.join(" ")} ${JSON.stringify(env)}`, () => {
      assert.throws(
        () => parseConfig(args, env),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
      );
    });
  }
});

Deno.test("parseConfig() reads the policy flags and their environment variables", () => {
  const fromFlags = config([
    "--backend",
    "[::1]:50051",
    "--key-headers",
    "X-Tenant,user-agent",
    "--ignore-headers",
    "x-request-id, X-Debug-*",
    "--collapse",
    "/shop.*/Get*,declared",
    "--no-collapse",
    "/shop.Cart/*",
    "--descriptor-set",
    "shop.pb",
    "--policy",
    "policy.yaml",
    "--shadow",
    "--stale-if-error",
    "30s",
    "--no-refresh-ahead",
  ]);
  assert.deepEqual(fromFlags.keyHeaders, ["authorization", "x-tenant", "user-agent"]);
  assert.deepEqual(fromFlags.ignoreHeaders, ["x-request-id", "x-debug-*"]);
  assert.deepEqual(fromFlags.collapse?.source, ["/shop.*/Get*", "declared"]);
  assert.equal(fromFlags.collapse?.declared, true);
  assert.equal(fromFlags.collapse?.matches("/shop.Catalog/GetItem"), true);
  assert.equal(fromFlags.collapse?.matches("/shop.Catalog/Put"), false);
  assert.equal(fromFlags.noCollapse?.matches("/shop.Cart/Add"), true);
  assert.equal(fromFlags.descriptorSet, "shop.pb");
  assert.equal(fromFlags.policyFile, "policy.yaml");
  assert.equal(fromFlags.shadow, true);
  assert.equal(fromFlags.staleIfErrorMs, 30_000);
  assert.equal(fromFlags.refreshAhead, false);
  assert.equal(config(["--backend", "a:1", "--no-hot-keys"]).hotKeys, 0);
  assert.equal(config(["--backend", "a:1"], { COLLAPSER_HOT_KEYS: "50" }).hotKeys, 50);

  const fromEnv = config([], {
    BACKEND_ADDRESS: "dns:///svc.local:50051",
    COLLAPSER_IGNORE_HEADERS: "x-request-id",
    COLLAPSER_COLLAPSE: "/a.B/*",
    COLLAPSER_NO_COLLAPSE: "/a.B/Write",
    COLLAPSER_POLICY: "/etc/collapser.yaml",
    COLLAPSER_REFLECTION: "true",
    COLLAPSER_SHADOW: "1",
    COLLAPSER_STALE_IF_ERROR: "1m",
    COLLAPSER_REFRESH_AHEAD: "false",
  });
  assert.equal(fromEnv.backend, "dns:///svc.local:50051");
  assert.deepEqual(fromEnv.ignoreHeaders, ["x-request-id"]);
  assert.equal(fromEnv.collapse?.matches("/a.B/Read"), true);
  assert.equal(fromEnv.noCollapse?.matches("/a.B/Write"), true);
  assert.equal(fromEnv.policyFile, "/etc/collapser.yaml");
  assert.equal(fromEnv.reflection, true);
  assert.equal(fromEnv.shadow, true);
  assert.equal(fromEnv.staleIfErrorMs, 60_000);
  assert.equal(fromEnv.refreshAhead, false);
  assert.equal(
    config(["--refresh-ahead"], { BACKEND_ADDRESS: "a:1", COLLAPSER_REFRESH_AHEAD: "0" }).refreshAhead,
    true,
  );
});

Deno.test("parseConfig() reads the TLS flags; any --backend-* TLS option implies --backend-tls", () => {
  const both = config([
    "--backend",
    "svc:443",
    "--tls-cert",
    "s.pem",
    "--tls-key",
    "s.key",
    "--tls-client-ca",
    "ca.pem",
    "--backend-server-name",
    "svc.internal",
  ]);
  assert.deepEqual(both.tls, { cert: "s.pem", key: "s.key", clientCa: "ca.pem" });
  assert.deepEqual(both.backendTls, {
    ca: undefined,
    cert: undefined,
    key: undefined,
    serverName: "svc.internal",
  });
  const fromEnv = config([], {
    BACKEND_ADDRESS: "svc:443",
    COLLAPSER_TLS_CERT: "s.pem",
    COLLAPSER_TLS_KEY: "s.key",
    COLLAPSER_BACKEND_TLS: "true",
  });
  assert.deepEqual(fromEnv.tls, { cert: "s.pem", key: "s.key", clientCa: undefined });
  assert.deepEqual(fromEnv.backendTls, {
    ca: undefined,
    cert: undefined,
    key: undefined,
    serverName: undefined,
  });
  assert.equal(config(["--backend", "svc:443"]).backendTls, undefined);
});

Deno.test("parseConfig() reads the backend protection flags", () => {
  assert.deepEqual(config(["--backend", "a:1", "--max-backend-concurrency", "16"]).backendLimit, {
    maxConcurrent: 16,
    maxQueue: 1024,
    queueTimeoutMs: 1000,
  });
  assert.deepEqual(
    config([], {
      BACKEND_ADDRESS: "a:1",
      COLLAPSER_MAX_BACKEND_CONCURRENCY: "8",
      COLLAPSER_MAX_QUEUE: "0",
      COLLAPSER_QUEUE_TIMEOUT: "250ms",
    }).backendLimit,
    { maxConcurrent: 8, maxQueue: 0, queueTimeoutMs: 250 },
  );
  assert.equal(
    config(["--backend", "a:1", "--max-queue", "5"]).backendLimit,
    undefined,
    "no bound without N",
  );
});

Deno.test("parseConfig() answers --help without needing a backend", () => {
  assert.deepEqual(parseConfig(["--help"], {}), { help: true });
  assert.deepEqual(parseConfig(["-h"], {}), { help: true });
});

Deno.test("redactCredentials() masks a user:password part and leaves plain targets alone", () => {
  assert.equal(redactCredentials("127.0.0.1:50051"), "127.0.0.1:50051");
  assert.equal(redactCredentials("dns:///svc.local:50051"), "dns:///svc.local:50051");
  assert.equal(redactCredentials("user:secret@10.0.0.1:50051"), "***@10.0.0.1:50051");
  assert.equal(redactCredentials("redis://default:secret@cache:6379/0"), "redis://***@cache:6379/0");
});

Deno.test("parseConfig() reads the Redis URL (credentials masked where shown) and the tier's knobs", () => {
  const parsed = parseConfig(
    ["--backend", "b:1", "--redis", "rediss://app:p%40ss@cache.internal:6380/2", "--redis-lock-ttl", "2s"],
    { COLLAPSER_REDIS_PREFIX: "fleet:", COLLAPSER_REUSE_PORT: "1" },
  );
  assert.ok(!parsed.help);
  const { redis, reusePort } = parsed.config;
  assert.equal(reusePort, true);
  assert.deepEqual(
    { ...redis, url: undefined },
    {
      url: undefined,
      tls: true,
      host: "cache.internal",
      port: 6380,
      username: "app",
      password: "p@ss",
      db: 2,
      prefix: "fleet:",
      maxBytes: 256 * 1024,
      timeoutMs: 250,
      lockTtlMs: 2_000,
    },
  );
  const defaults = parseConfig(["--backend", "b:1"], {});
  assert.ok(!defaults.help);
  assert.equal(defaults.config.redis, undefined, "no Redis unless asked");
  assert.equal(defaults.config.reusePort, false);
  assert.equal(maskedRedisUrl("redis://app:secret@h:1/0"), "redis://***@h:1/0");
  assert.equal(maskedRedisUrl("redis://:secret@h:1"), "redis://***@h:1");
  assert.equal(maskedRedisUrl("redis://user:p@ss@h:1"), "redis://***@h:1", "a password holding @");
  assert.equal(maskedRedisUrl("redis://:pa/ss@h:1"), "redis://***@h:1", "a password holding /");
  assert.equal(maskedRedisUrl("redis://h:1"), "redis://h:1");
});

Deno.test("parseConfig() reads the balancing flags and their environment variables, and refuses bad ones", () => {
  assert.deepEqual(
    config([
      "--backend",
      "a:1,b:1",
      "--lb-policy",
      "round_robin",
      "--resolve-interval",
      "5s",
      "--outlier-failures",
      "3",
      "--outlier-ejection-time",
      "10s",
      "--outlier-max-ejected",
      "34%",
      "--retry-budget",
      "10",
    ]).balancing,
    {
      lbPolicy: "round_robin",
      resolveIntervalMs: 5_000,
      outlier: { consecutiveFailures: 3, baseEjectionMs: 10_000, maxEjectedPercent: 34 },
      retryBudget: 0.1,
    },
  );
  assert.deepEqual(
    config([], {
      BACKEND_ADDRESS: "dns:///svc:1",
      COLLAPSER_LB_POLICY: "least_request",
      COLLAPSER_RESOLVE_INTERVAL: "1m",
      COLLAPSER_OUTLIER_FAILURES: "0",
      COLLAPSER_OUTLIER_EJECTION_TIME: "1s",
      COLLAPSER_OUTLIER_MAX_EJECTED: "100%",
      COLLAPSER_RETRY_BUDGET: "0%",
    }).balancing,
    {
      lbPolicy: "least_request",
      resolveIntervalMs: 60_000,
      outlier: { consecutiveFailures: 0, baseEjectionMs: 1_000, maxEjectedPercent: 100 },
      retryBudget: 0,
    },
  );
  const bad: [string[], RegExp][] = [
    [
      ["--lb-policy", "fastest"],
      /--lb-policy: invalid policy "fastest" \(expected least_request or round_robin\)/,
    ],
    [["--retry-budget", "120%"], /--retry-budget: invalid percentage "120%"/],
    [["--outlier-max-ejected", "half"], /--outlier-max-ejected: invalid percentage "half"/],
    [["--resolve-interval", "0"], /--resolve-interval/],
    [["--outlier-failures", "many"], /--outlier-failures: invalid count "many"/],
  ];
  for (const [args, why] of bad) {
    assert.throws(() => config(["--backend", "a:1", ...args]), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, why);
      return true;
    });
  }
});

Deno.test("parseConfig() reads the HTTP-cache flags, flags over variables", () => {
  const fromEnv = config([], {
    BACKEND_ADDRESS: "b:1",
    COLLAPSER_MAX_TTL: "5m",
    COLLAPSER_CACHE_CONTROL: "false",
    COLLAPSER_ALLOW_CLIENT_NO_CACHE: "true",
    COLLAPSER_CACHE_STATUS: "off",
  });
  assert.deepEqual(
    [fromEnv.maxTtlMs, fromEnv.cacheControl, fromEnv.allowClientNoCache, fromEnv.cacheStatus],
    [300_000, false, true, false],
  );
  const fromFlags = config(
    [
      "--backend",
      "b:1",
      "--max-ttl",
      "10s",
      "--no-cache-control",
      "--allow-client-no-cache",
      "--no-cache-status",
    ],
  );
  assert.deepEqual(
    [fromFlags.maxTtlMs, fromFlags.cacheControl, fromFlags.allowClientNoCache, fromFlags.cacheStatus],
    [10_000, false, true, false],
  );
  assert.throws(() => config(["--backend", "b:1", "--max-ttl", "0"]), /--max-ttl: must be greater than 0/);
  assert.throws(
    () => config(["--backend", "b:1"], { COLLAPSER_CACHE_STATUS: "maybe" }),
    /COLLAPSER_CACHE_STATUS/,
  );
});

Deno.test("parseConfig() reads the admin token from a flag, a variable or a file, and never shows it", async (t) => {
  const token = "correct-horse-battery-staple";
  await t.step("flag, variable: a Secret that matches it and prints as [redacted]", () => {
    for (const [args, env] of [[["--admin-token", token]], [[], { COLLAPSER_ADMIN_TOKEN: token }]] as const) {
      const parsed = config(["--backend", "b:1", ...args], env ?? {});
      assert.ok(parsed.adminToken?.matches(token));
      assert.ok(!parsed.adminToken?.matches(token + "x"));
      assert.ok(!parsed.adminToken?.matches(token.slice(0, -1)));
      for (const shown of [JSON.stringify(parsed), String(parsed.adminToken), Deno.inspect(parsed)]) {
        assert.ok(!shown.includes(token), shown);
      }
    }
  });
  await t.step("a file (its trailing newline dropped), and --admin-host", async () => {
    const file = await Deno.makeTempFile();
    try {
      await Deno.writeTextFile(file, `${token}\n`);
      const parsed = config(["--backend", "b:1", "--admin-token-file", file, "--admin-host", "127.0.0.1"]);
      assert.ok(parsed.adminToken?.matches(token));
      assert.equal(parsed.adminHost, "127.0.0.1");
    } finally {
      await Deno.remove(file);
    }
  });
  await t.step("mistakes are one line that does not show the token", () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [["--admin-token", "short"], {}, /--admin-token: the admin token must be 16 to 4096 characters long/],
      [["--admin-token", "has a space in it ok"], {}, /visible ASCII without spaces/],
      [
        ["--admin-token", token, "--admin-token-file", "/x"],
        {},
        /--admin-token and --admin-token-file: give one/,
      ],
      [
        [],
        { COLLAPSER_ADMIN_TOKEN_FILE: "/no/such/file" },
        /COLLAPSER_ADMIN_TOKEN_FILE "\/no\/such\/file": cannot read/,
      ],
    ];
    for (const [args, env, reason] of cases) {
      assert.throws(() => config(["--backend", "b:1", ...args], env), (err: Error) => {
        assert.match(err.message, reason);
        assert.ok(!err.message.includes("short") && !err.message.includes("has a space"), err.message);
        return true;
      });
    }
  });
  await t.step("the effective configuration says set or off, and the admin host", () => {
    const parsed = config(["--backend", "b:1", "--admin-token", token]);
    const view = effectiveConfig(parsed, new Policy());
    assert.equal(view.adminToken, "set");
    assert.equal(view.adminHost, "0.0.0.0", "the gRPC host by default");
    assert.ok(!JSON.stringify(view).includes(token));
    assert.equal(effectiveConfig(config(["--backend", "b:1"]), new Policy()).adminToken, "off");
  });
});
