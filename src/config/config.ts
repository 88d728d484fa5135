/**
 * Configuration from flags and environment variables; flags win. Each group of flags that belongs to one
 * feature has its own `*_flags.ts` (its option table and how it is read); this file puts them together.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT } from "./usage.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../wire/grpc_wire.ts";
import { DEFAULT_KEY_HEADERS, headerName, ignoredHeaderName } from "../policy/key.ts";
import { LOG_LEVELS, type ProxyLogLevel } from "../util/log.ts";
import { type MethodPatterns, methodPatterns } from "../policy/policy.ts";
import type { ClientTlsFiles, ServerTlsFiles } from "../wire/tls.ts";
import { DEFAULT_MAX_QUEUE, DEFAULT_QUEUE_TIMEOUT_MS, type LimiterOptions } from "../backend/limiter.ts";
import type { RedisConfig } from "../fleet/redis_config.ts";
import { DEFAULT_BACKEND_TIMEOUT_MS } from "../backend/clients.ts";
import { DEFAULT_CACHE_TTL_MS } from "../core/collapser.ts";
import { ConfigError, type FlagTable, Reader } from "./reader.ts";
import { backendTls, serverTls, TLS_FLAGS } from "./tls_flags.ts";
import { REDIS_FLAGS, redisConfig } from "./redis_flags.ts";
import { WORKERS_FLAGS, type WorkersConfig, workersConfig } from "./workers_flags.ts";
import { MEMORY_FLAGS, type MemoryConfig, memoryConfig } from "./memory_flags.ts";
import { BALANCING_FLAGS, type BalancingConfig, balancingConfig } from "./balancing_flags.ts";
import { parseTarget, TargetError } from "../backend/target.ts";
import { CACHE_FLAGS, type CacheConfig, cacheConfig } from "./cache_flags.ts";
import { ADMIN_FLAGS, type AdminConfig, adminConfig } from "./admin_flags.ts";

export { ConfigError };

/** Default bound on draining at shutdown: 30 s. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
/** Default number of keys the status page tracks as hot. */
export const DEFAULT_HOT_KEYS = 1_000;

/** The proxy's effective configuration (each feature's flags: its own `*Config`). */
export interface Config extends WorkersConfig, MemoryConfig, CacheConfig, AdminConfig {
  /** Backend target: `host:port`, a comma list, `dns:///name:port`, `ipv4:`/`ipv6:` lists (target.ts). */
  backend: string;
  /** How calls are spread over the backend's addresses, ejected and retried. */
  balancing: BalancingConfig;
  /** Address the gRPC listener binds. */
  host: string;
  /** gRPC listener port; 0 picks a free one. */
  port: number;
  /** Metrics and health listener port. */
  metricsPort: number;
  /** Cache TTL in ms; 0 = collapse only. */
  cacheTtlMs: number;
  /** Bound on one backend call, in ms. */
  backendTimeoutMs: number;
  /** Request metadata always in the collapse key, whatever is ignored (lower case; authorization first). */
  keyHeaders: string[];
  /** Request metadata names and globs left out of the key, besides the built-in per-call ones. */
  ignoreHeaders: string[];
  /** Allowlist of methods that collapse; undefined = every method. */
  collapse: MethodPatterns | undefined;
  /** Methods that never collapse; wins over the allowlist. */
  noCollapse: MethodPatterns | undefined;
  /** The policy file, if any. */
  policyFile: string | undefined;
  /** A FileDescriptorSet file describing the backend's methods, if any. */
  descriptorSet: string | undefined;
  /** Ask the backend over gRPC reflection what it serves. */
  reflection: boolean;
  /** Shadow mode: pass everything through, count what collapsing would have saved. */
  shadow: boolean;
  /** How long past its TTL an OK answer may stand in for a failed backend call, in ms; 0 = off. */
  staleIfErrorMs: number;
  /** Refresh hot answers in the background shortly before they expire. */
  refreshAhead: boolean;
  /** Counters of the status page's hot-key summary; 0 = off. */
  hotKeys: number;
  /** Bound on backend calls at once, with its queue; undefined = no bound. */
  backendLimit: Required<LimiterOptions> | undefined;
  /** The listener's certificate and key (TLS); undefined = plaintext h2c. */
  tls: ServerTlsFiles | undefined;
  /** TLS to the backend; undefined = plaintext h2c. */
  backendTls: ClientTlsFiles | undefined;
  /** The shared tier (Redis); undefined = this proxy collapses alone. */
  redis: RedisConfig | undefined;
  /** Bind the gRPC port with SO_REUSEPORT, so several processes can share it. */
  reusePort: boolean;
  /** Largest request message accepted, in bytes. */
  maxMessageBytes: number;
  /** Lowest log level written. */
  logLevel: ProxyLogLevel;
  /** Bound on draining in-flight calls at shutdown, in ms. */
  shutdownTimeoutMs: number;
}

/** What {@linkcode parseConfig} found: a configuration, or a request for help. */
export type ParsedConfig = { help: true } | { help: false; config: Config };

/** Every flag: the core ones here, and each feature's own table. */
const FLAGS = {
  backend: { type: "string" },
  port: { type: "string" },
  host: { type: "string" },
  "metrics-port": { type: "string" },
  "cache-ttl": { type: "string" },
  "backend-timeout": { type: "string" },
  "key-headers": { type: "string" },
  "ignore-headers": { type: "string" },
  collapse: { type: "string" },
  "no-collapse": { type: "string" },
  policy: { type: "string" },
  "descriptor-set": { type: "string" },
  reflection: { type: "boolean" },
  shadow: { type: "boolean" },
  "stale-if-error": { type: "string" },
  "refresh-ahead": { type: "boolean" },
  "no-refresh-ahead": { type: "boolean" },
  "hot-keys": { type: "string" },
  "no-hot-keys": { type: "boolean" },
  "max-backend-concurrency": { type: "string" },
  "max-queue": { type: "string" },
  "queue-timeout": { type: "string" },
  ...TLS_FLAGS,
  ...REDIS_FLAGS,
  ...WORKERS_FLAGS,
  ...MEMORY_FLAGS,
  ...BALANCING_FLAGS,
  ...CACHE_FLAGS,
  ...ADMIN_FLAGS,
  "reuse-port": { type: "boolean" },
  "max-message-size": { type: "string" },
  "log-level": { type: "string" },
  "shutdown-timeout": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies FlagTable;

/**
 * Reads flags over environment variables.
 *
 * @throws {ConfigError} for an unknown flag, a missing backend or a bad value
 */
export function parseConfig(args: string[], env: Record<string, string | undefined>): ParsedConfig {
  let values;
  try {
    ({ values } = parseArgs({ args, strict: true, allowPositionals: false, options: FLAGS }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (values.help) return { help: true };
  const read = new Reader(values, env);

  const backend = read.pick("backend", "BACKEND_ADDRESS");
  if (backend === undefined || backend.value.trim() === "") {
    throw new ConfigError("no backend: set --backend HOST:PORT or BACKEND_ADDRESS");
  }
  checkTarget(backend.value.trim(), backend.source);

  const logLevelFound = read.pick("log-level", "LOG_LEVEL");
  const logLevel = (logLevelFound?.value.toLowerCase() ?? "info") as ProxyLogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(
      `${logLevelFound?.source}: invalid log level ${JSON.stringify(logLevelFound?.value)} (expected ${
        LOG_LEVELS.join(", ")
      })`,
    );
  }

  const keyHeaders = [
    ...new Set([
      ...DEFAULT_KEY_HEADERS,
      ...read.list("key-headers", "COLLAPSER_KEY_HEADERS", (raw) => headerName(raw, { glob: false })),
    ]),
  ];
  const ignoreHeaders = read.list("ignore-headers", "COLLAPSER_IGNORE_HEADERS", ignoredHeaderName);
  const collapse = read.parsed(
    "collapse",
    "COLLAPSER_COLLAPSE",
    (raw) => methodPatterns(raw, { allowDeclared: true }),
  );
  const noCollapse = read.parsed(
    "no-collapse",
    "COLLAPSER_NO_COLLAPSE",
    (raw) => methodPatterns(raw, { allowDeclared: false }),
  );
  const reflection = read.bool("reflection", "COLLAPSER_REFLECTION", false);
  const descriptorSet = read.string("descriptor-set", "COLLAPSER_DESCRIPTOR_SET");
  if (collapse?.declared && !reflection && descriptorSet === undefined) {
    throw new ConfigError(
      `${read.pick("collapse", "COLLAPSER_COLLAPSE")!.source}: "declared" needs --descriptor-set or ` +
        `--reflection to know what the service declares`,
    );
  }
  if (values["refresh-ahead"] && values["no-refresh-ahead"]) {
    throw new ConfigError("--refresh-ahead and --no-refresh-ahead: give one");
  }
  const refreshAhead = values["no-refresh-ahead"]
    ? false
    : read.bool("refresh-ahead", "COLLAPSER_REFRESH_AHEAD", true);

  let hotKeys = DEFAULT_HOT_KEYS;
  const hotKeysFound = read.pick("hot-keys", "COLLAPSER_HOT_KEYS");
  if (values["no-hot-keys"]) {
    if (typeof values["hot-keys"] === "string") {
      throw new ConfigError("--hot-keys and --no-hot-keys: give one");
    }
    hotKeys = 0;
  } else if (hotKeysFound !== undefined) {
    hotKeys = Number(hotKeysFound.value);
    if (!/^\d+$/.test(hotKeysFound.value) || hotKeys > 1_000_000) {
      throw new ConfigError(
        `${hotKeysFound.source}: invalid count ${JSON.stringify(hotKeysFound.value)} (expected 0-1000000)`,
      );
    }
  }

  const maxConcurrent = read.count("max-backend-concurrency", "COLLAPSER_MAX_BACKEND_CONCURRENCY", 0);
  const backendLimit = maxConcurrent === 0 ? undefined : {
    maxConcurrent,
    maxQueue: read.count("max-queue", "COLLAPSER_MAX_QUEUE", DEFAULT_MAX_QUEUE),
    queueTimeoutMs: read.duration(
      "queue-timeout",
      "COLLAPSER_QUEUE_TIMEOUT",
      DEFAULT_QUEUE_TIMEOUT_MS,
      false,
    ),
  };

  let maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  const maxFound = read.pick("max-message-size", "COLLAPSER_MAX_MESSAGE_SIZE");
  if (maxFound !== undefined) {
    maxMessageBytes = Number(maxFound.value);
    if (!/^\d+$/.test(maxFound.value) || maxMessageBytes < 1 || maxMessageBytes > 2 ** 31 - 1) {
      throw new ConfigError(
        `${maxFound.source}: invalid size ${JSON.stringify(maxFound.value)} (expected bytes)`,
      );
    }
  }

  const workers = workersConfig(read);
  return {
    help: false,
    config: {
      backend: backend.value.trim(),
      balancing: balancingConfig(read),
      host: read.string("host", "GRPC_HOST") ?? "0.0.0.0",
      port: read.port("port", "GRPC_PORT", DEFAULT_GRPC_PORT),
      metricsPort: read.port("metrics-port", "METRICS_PORT", DEFAULT_METRICS_PORT),
      cacheTtlMs: read.duration("cache-ttl", "COLLAPSER_CACHE_DURATION", DEFAULT_CACHE_TTL_MS, true),
      backendTimeoutMs: read.duration(
        "backend-timeout",
        "BACKEND_TIMEOUT",
        DEFAULT_BACKEND_TIMEOUT_MS,
        false,
      ),
      keyHeaders,
      ignoreHeaders,
      collapse,
      noCollapse,
      policyFile: read.string("policy", "COLLAPSER_POLICY"),
      descriptorSet,
      reflection,
      shadow: read.bool("shadow", "COLLAPSER_SHADOW", false),
      backendLimit,
      tls: serverTls(read),
      backendTls: backendTls(read),
      staleIfErrorMs: read.duration("stale-if-error", "COLLAPSER_STALE_IF_ERROR", 0, true),
      refreshAhead,
      hotKeys,
      redis: redisConfig(read),
      ...cacheConfig(read),
      ...adminConfig(read),
      reusePort: read.bool("reuse-port", "COLLAPSER_REUSE_PORT", false),
      maxMessageBytes,
      logLevel,
      ...workers,
      ...memoryConfig(read, workers),
      shutdownTimeoutMs: read.duration(
        "shutdown-timeout",
        "SHUTDOWN_TIMEOUT",
        DEFAULT_SHUTDOWN_TIMEOUT_MS,
        true,
      ),
    },
  };
}

/**
 * Rejects a backend target that can never be reached (target.ts parses it): each element must be
 * `host:port` or `[v6]:port` with a port from 1 to 65535 (grpc-js would take `:::` and fail every call).
 */
function checkTarget(target: string, source: string): void {
  try {
    parseTarget(target);
  } catch (err) {
    if (!(err instanceof TargetError)) throw err;
    throw new ConfigError(
      `${source}: invalid backend ${JSON.stringify(target)}: ${err.message} (expected HOST:PORT, a comma ` +
        `list of them, dns:///NAME:PORT, dns://RESOLVER:PORT/NAME:PORT, ipv4:/ipv6: lists or unix:/path)`,
    );
  }
}
