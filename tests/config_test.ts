import assert from "node:assert/strict";
import { ConfigError, parseConfig, redactCredentials } from "../src/config.ts";

function config(args: string[], env: Record<string, string> = {}) {
  const parsed = parseConfig(args, env);
  assert.equal(parsed.help, false);
  return (parsed as Extract<typeof parsed, { help: false }>).config;
}

Deno.test("parseConfig() applies the documented defaults", () => {
  assert.deepEqual(config(["--backend", "127.0.0.1:50051"]), {
    backend: "127.0.0.1:50051",
    host: "0.0.0.0",
    port: 50052,
    metricsPort: 2112,
    cacheTtlMs: 100,
    backendTimeoutMs: 10_000,
    keyHeaders: ["authorization"],
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
    [["--backend", "b", "--port", "70000"], {}, /--port: invalid port "70000"/],
    [["--backend", "b"], { GRPC_PORT: "http" }, /GRPC_PORT: invalid port "http"/],
    [["--backend", "b", "--cache-ttl", "5x"], {}, /--cache-ttl: invalid duration "5x"/],
    [["--backend", "b"], { BACKEND_TIMEOUT: "0" }, /BACKEND_TIMEOUT: must be greater than 0/],
    [["--backend", "b", "--log-level", "loud"], {}, /--log-level: invalid log level "loud"/],
    [["--backend", "b", "--key-headers", "bad header"], {}, /invalid metadata key "bad header"/],
    [["--backend", "b", "--max-message-size", "0"], {}, /--max-message-size: invalid size/],
    [["--bogus"], {}, /Unknown option '--bogus'/],
    [
      ["--backend", "b", "--backend-timeout", "1000h"],
      {},
      /--backend-timeout: "1000h" is too long \(at most 596h\)/,
    ],
    [["--backend", "b"], { SHUTDOWN_TIMEOUT: "1000h" }, /SHUTDOWN_TIMEOUT: "1000h" is too long/],
    [["--backend", "b", "extra"], {}, /positional argument/],
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
