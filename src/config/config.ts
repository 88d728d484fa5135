/**
 * Configuration from flags and environment variables; flags win.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT } from "./usage.ts";
import { parseDuration } from "../util/duration.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../wire/grpc_wire.ts";
import { DEFAULT_KEY_HEADERS, headerName, ignoredHeaderName } from "../policy/key.ts";
import { LOG_LEVELS, type ProxyLogLevel } from "../util/log.ts";
import { type MethodPatterns, methodPatterns } from "../policy/policy.ts";
import type { ClientTlsFiles, ServerTlsFiles } from "../wire/tls.ts";
import { DEFAULT_MAX_QUEUE, DEFAULT_QUEUE_TIMEOUT_MS, type LimiterOptions } from "../backend/limiter.ts";
import {
  DEFAULT_REDIS_LOCK_TTL_MS,
  DEFAULT_REDIS_MAX_BYTES,
  DEFAULT_REDIS_PREFIX,
  DEFAULT_REDIS_TIMEOUT_MS,
  parseRedisUrl,
  type RedisConfig,
} from "../fleet/redis_config.ts";
import { DEFAULT_BACKEND_TIMEOUT_MS } from "../backend/backend_calls.ts";
import { DEFAULT_CACHE_TTL_MS } from "../core/collapser.ts";

/** Default bound on draining at shutdown: 30 s. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
/** Default number of keys the status page tracks as hot. */
export const DEFAULT_HOT_KEYS = 1_000;

/** Longest delay a timer can wait (setTimeout fires at once past 2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The proxy's effective configuration. */
export interface Config {
  /** Backend target, `host:port` (any grpc-js target works, e.g. `dns:///svc:50051`). */
  backend: string;
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

/** A configuration value that cannot be used; the message names the flag or variable and the value. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** What {@linkcode parseConfig} found: a configuration, or a request for help. */
export type ParsedConfig = { help: true } | { help: false; config: Config };

/**
 * Reads flags over environment variables.
 *
 * @throws {ConfigError} for an unknown flag, a missing backend or a bad value
 */
export function parseConfig(args: string[], env: Record<string, string | undefined>): ParsedConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
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
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "tls-client-ca": { type: "string" },
        "backend-tls": { type: "boolean" },
        "backend-ca": { type: "string" },
        "backend-cert": { type: "string" },
        "backend-key": { type: "string" },
        "backend-server-name": { type: "string" },
        redis: { type: "string" },
        "redis-prefix": { type: "string" },
        "redis-max-bytes": { type: "string" },
        "redis-timeout": { type: "string" },
        "redis-lock-ttl": { type: "string" },
        "reuse-port": { type: "boolean" },
        "max-message-size": { type: "string" },
        "log-level": { type: "string" },
        "shutdown-timeout": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (values.help) return { help: true };

  const pick = (flag: keyof typeof values, name: string) => {
    const fromFlag = values[flag];
    if (typeof fromFlag === "string") return { value: fromFlag, source: `--${flag}` };
    const fromEnv = env[name];
    return fromEnv === undefined || fromEnv === "" ? undefined : { value: fromEnv, source: name };
  };

  const backend = pick("backend", "BACKEND_ADDRESS");
  if (backend === undefined || backend.value.trim() === "") {
    throw new ConfigError("no backend: set --backend HOST:PORT or BACKEND_ADDRESS");
  }
  checkTarget(backend.value.trim(), backend.source);
  const port = (flag: keyof typeof values, name: string, fallback: number) => {
    const found = pick(flag, name);
    if (found === undefined) return fallback;
    const n = Number(found.value);
    if (!/^\d+$/.test(found.value) || n > 65535) {
      throw new ConfigError(
        `${found.source}: invalid port ${JSON.stringify(found.value)} (expected 0-65535)`,
      );
    }
    return n;
  };
  const duration = (flag: keyof typeof values, name: string, fallback: number, allowZero: boolean) => {
    const found = pick(flag, name);
    if (found === undefined) return fallback;
    let ms: number;
    try {
      ms = parseDuration(found.value);
    } catch (err) {
      throw new ConfigError(`${found.source}: ${(err as Error).message}`);
    }
    if (!allowZero && ms <= 0) throw new ConfigError(`${found.source}: must be greater than 0`);
    if (ms > MAX_TIMER_MS) {
      throw new ConfigError(`${found.source}: ${JSON.stringify(found.value)} is too long (at most 596h)`);
    }
    return ms;
  };

  const logLevelFound = pick("log-level", "LOG_LEVEL");
  const logLevel = (logLevelFound?.value.toLowerCase() ?? "info") as ProxyLogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(
      `${logLevelFound?.source}: invalid log level ${JSON.stringify(logLevelFound?.value)} (expected ${
        LOG_LEVELS.join(", ")
      })`,
    );
  }

  const names = (flag: keyof typeof values, name: string, check: (raw: string) => string) => {
    const found = pick(flag, name);
    const out: string[] = [];
    for (const raw of found?.value.split(",") ?? []) {
      if (raw.trim() === "") continue;
      let checked: string;
      try {
        checked = check(raw);
      } catch (err) {
        throw new ConfigError(`${found!.source}: ${(err as Error).message}`);
      }
      if (!out.includes(checked)) out.push(checked);
    }
    return out;
  };
  const keyHeaders = [
    ...new Set([
      ...DEFAULT_KEY_HEADERS,
      ...names("key-headers", "COLLAPSER_KEY_HEADERS", (raw) => headerName(raw, { glob: false })),
    ]),
  ];
  const ignoreHeaders = names("ignore-headers", "COLLAPSER_IGNORE_HEADERS", ignoredHeaderName);
  const patterns = (flag: keyof typeof values, name: string, allowDeclared: boolean) => {
    const found = pick(flag, name);
    if (found === undefined) return undefined;
    try {
      return methodPatterns(found.value, { allowDeclared });
    } catch (err) {
      throw new ConfigError(`${found.source}: ${(err as Error).message}`);
    }
  };
  const collapse = patterns("collapse", "COLLAPSER_COLLAPSE", true);
  const noCollapse = patterns("no-collapse", "COLLAPSER_NO_COLLAPSE", false);
  const flagOrEnv = (flag: keyof typeof values, name: string, fallback: boolean) => {
    if (values[flag] === true) return true;
    const fromEnv = env[name];
    if (fromEnv === undefined || fromEnv === "") return fallback;
    const lower = fromEnv.toLowerCase();
    if (["1", "true", "yes", "on"].includes(lower)) return true;
    if (["0", "false", "no", "off"].includes(lower)) return false;
    throw new ConfigError(`${name}: expected true or false, got ${JSON.stringify(fromEnv)}`);
  };
  const reflection = flagOrEnv("reflection", "COLLAPSER_REFLECTION", false);
  const serverTls = (): ServerTlsFiles | undefined => {
    const cert = pick("tls-cert", "COLLAPSER_TLS_CERT");
    const key = pick("tls-key", "COLLAPSER_TLS_KEY");
    const clientCa = pick("tls-client-ca", "COLLAPSER_TLS_CLIENT_CA");
    if (cert === undefined && key === undefined) {
      if (clientCa !== undefined) throw new ConfigError(`${clientCa.source} needs --tls-cert and --tls-key`);
      return undefined;
    }
    if (cert === undefined || key === undefined) {
      throw new ConfigError("--tls-cert and --tls-key go together: give both (or neither, for plaintext)");
    }
    return { cert: cert.value, key: key.value, clientCa: clientCa?.value };
  };
  const backendTls = (): ClientTlsFiles | undefined => {
    const files = {
      ca: pick("backend-ca", "COLLAPSER_BACKEND_CA")?.value,
      cert: pick("backend-cert", "COLLAPSER_BACKEND_CERT")?.value,
      key: pick("backend-key", "COLLAPSER_BACKEND_KEY")?.value,
      serverName: pick("backend-server-name", "COLLAPSER_BACKEND_SERVER_NAME")?.value,
    };
    const implied = Object.values(files).some((v) => v !== undefined);
    if (!flagOrEnv("backend-tls", "COLLAPSER_BACKEND_TLS", false) && !implied) return undefined;
    if ((files.cert === undefined) !== (files.key === undefined)) {
      throw new ConfigError("--backend-cert and --backend-key go together: give both or neither");
    }
    return files;
  };
  const descriptorSet = pick("descriptor-set", "COLLAPSER_DESCRIPTOR_SET")?.value;
  if (collapse?.declared && !reflection && descriptorSet === undefined) {
    throw new ConfigError(
      `${
        pick("collapse", "COLLAPSER_COLLAPSE")!.source
      }: "declared" needs --descriptor-set or --reflection ` +
        `to know what the service declares`,
    );
  }
  if (values["refresh-ahead"] && values["no-refresh-ahead"]) {
    throw new ConfigError("--refresh-ahead and --no-refresh-ahead: give one");
  }
  const refreshAhead = values["no-refresh-ahead"]
    ? false
    : flagOrEnv("refresh-ahead", "COLLAPSER_REFRESH_AHEAD", true);

  let hotKeys = DEFAULT_HOT_KEYS;
  const hotKeysFound = pick("hot-keys", "COLLAPSER_HOT_KEYS");
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

  const count = (flag: keyof typeof values, name: string, fallback: number) => {
    const found = pick(flag, name);
    if (found === undefined) return fallback;
    const n = Number(found.value);
    if (!/^\d+$/.test(found.value) || n > 1_000_000_000) {
      throw new ConfigError(
        `${found.source}: invalid count ${JSON.stringify(found.value)} (expected 0 or more)`,
      );
    }
    return n;
  };
  const maxConcurrent = count("max-backend-concurrency", "COLLAPSER_MAX_BACKEND_CONCURRENCY", 0);
  const backendLimit = maxConcurrent === 0 ? undefined : {
    maxConcurrent,
    maxQueue: count("max-queue", "COLLAPSER_MAX_QUEUE", DEFAULT_MAX_QUEUE),
    queueTimeoutMs: duration("queue-timeout", "COLLAPSER_QUEUE_TIMEOUT", DEFAULT_QUEUE_TIMEOUT_MS, false),
  };

  const redis = (): RedisConfig | undefined => {
    const found = pick("redis", "REDIS_URL");
    if (found === undefined) {
      for (const flag of ["redis-prefix", "redis-max-bytes", "redis-timeout", "redis-lock-ttl"] as const) {
        if (typeof values[flag] === "string") throw new ConfigError(`--${flag} needs --redis URL`);
      }
      return undefined;
    }
    let url;
    try {
      url = parseRedisUrl(found.value.trim());
    } catch (err) {
      throw new ConfigError(`${found.source}: ${(err as Error).message}`);
    }
    const prefix = pick("redis-prefix", "COLLAPSER_REDIS_PREFIX")?.value ?? DEFAULT_REDIS_PREFIX;
    const maxBytes = count("redis-max-bytes", "COLLAPSER_REDIS_MAX_BYTES", DEFAULT_REDIS_MAX_BYTES);
    if (maxBytes > 512 * 2 ** 20) {
      throw new ConfigError("--redis-max-bytes: at most 512 MiB (Redis's own limit)");
    }
    return {
      ...url,
      prefix,
      maxBytes,
      timeoutMs: duration("redis-timeout", "COLLAPSER_REDIS_TIMEOUT", DEFAULT_REDIS_TIMEOUT_MS, false),
      lockTtlMs: duration("redis-lock-ttl", "COLLAPSER_REDIS_LOCK_TTL", DEFAULT_REDIS_LOCK_TTL_MS, false),
    };
  };

  let maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  const maxFound = pick("max-message-size", "COLLAPSER_MAX_MESSAGE_SIZE");
  if (maxFound !== undefined) {
    maxMessageBytes = Number(maxFound.value);
    if (!/^\d+$/.test(maxFound.value) || maxMessageBytes < 1 || maxMessageBytes > 2 ** 31 - 1) {
      throw new ConfigError(
        `${maxFound.source}: invalid size ${JSON.stringify(maxFound.value)} (expected bytes)`,
      );
    }
  }

  return {
    help: false,
    config: {
      backend: backend.value.trim(),
      host: pick("host", "GRPC_HOST")?.value ?? "0.0.0.0",
      port: port("port", "GRPC_PORT", DEFAULT_GRPC_PORT),
      metricsPort: port("metrics-port", "METRICS_PORT", DEFAULT_METRICS_PORT),
      cacheTtlMs: duration("cache-ttl", "COLLAPSER_CACHE_DURATION", DEFAULT_CACHE_TTL_MS, true),
      backendTimeoutMs: duration("backend-timeout", "BACKEND_TIMEOUT", DEFAULT_BACKEND_TIMEOUT_MS, false),
      keyHeaders,
      ignoreHeaders,
      collapse,
      noCollapse,
      policyFile: pick("policy", "COLLAPSER_POLICY")?.value,
      descriptorSet,
      reflection,
      shadow: flagOrEnv("shadow", "COLLAPSER_SHADOW", false),
      backendLimit,
      tls: serverTls(),
      backendTls: backendTls(),
      staleIfErrorMs: duration("stale-if-error", "COLLAPSER_STALE_IF_ERROR", 0, true),
      refreshAhead,
      hotKeys,
      redis: redis(),
      reusePort: flagOrEnv("reuse-port", "COLLAPSER_REUSE_PORT", false),
      maxMessageBytes,
      logLevel,
      shutdownTimeoutMs: duration("shutdown-timeout", "SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT_MS, true),
    },
  };
}

/**
 * Rejects a backend target that can never be reached: one that names no gRPC resolver scheme must be
 * `host:port` or `[v6]:port` with a port from 1 to 65535 (grpc-js would take `:::` and fail every call).
 */
function checkTarget(target: string, source: string): void {
  if (/^(dns|unix|unix-abstract|ipv4|ipv6|vsock):/i.test(target)) return;
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(target);
  if (match === null || Number(match[2]) < 1 || Number(match[2]) > 65535) {
    throw new ConfigError(
      `${source}: invalid backend ${JSON.stringify(target)} (expected HOST:PORT, [IPv6]:PORT, ` +
        `or a grpc-js target such as dns:///svc:50051 or unix:/path)`,
    );
  }
}
