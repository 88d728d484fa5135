/**
 * Configuration from flags and environment variables; flags win.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseDuration } from "./duration.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./grpc_wire.ts";
import { DEFAULT_KEY_HEADERS } from "./key.ts";
import { LOG_LEVELS, type ProxyLogLevel } from "./log.ts";

/** Default port of the gRPC listener. */
export const DEFAULT_GRPC_PORT = 50052;
/** Default port of the metrics and health listener. */
export const DEFAULT_METRICS_PORT = 2112;
/** Default bound on one backend call: 10 s. */
export const DEFAULT_BACKEND_TIMEOUT_MS = 10_000;
/** Default bound on draining at shutdown: 30 s. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
/** Default TTL of cached answers: 100 ms. */
export const DEFAULT_CACHE_DURATION_MS = 100;

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
  /** Request metadata keys whose values are part of the collapse key (lower case). */
  keyHeaders: string[];
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

/** The `--help` text. */
export const USAGE = `Usage: collapser --backend HOST:PORT [options]

A gRPC proxy that collapses identical in-flight unary calls into one backend call.

Options (each overrides the environment variable in brackets):
  --backend HOST:PORT        backend to forward every call to            [BACKEND_ADDRESS] (required)
  --port N                   gRPC listen port                            [GRPC_PORT] (default ${DEFAULT_GRPC_PORT})
  --host ADDR                gRPC listen address                         [GRPC_HOST] (default 0.0.0.0)
  --metrics-port N           metrics and health port                     [METRICS_PORT] (default ${DEFAULT_METRICS_PORT})
  --cache-ttl DURATION       how long answers are reused; 0 = no cache   [COLLAPSER_CACHE_DURATION] (default 100ms)
  --backend-timeout DURATION bound on one backend call                   [BACKEND_TIMEOUT] (default 10s)
  --key-headers LIST         more metadata keys that separate callers,   [COLLAPSER_KEY_HEADERS]
                             comma-separated (authorization always is)
  --max-message-size BYTES   largest request message accepted            [COLLAPSER_MAX_MESSAGE_SIZE] (default 4194304)
  --log-level LEVEL          debug, info, warn or error                  [LOG_LEVEL] (default info)
  --shutdown-timeout DURATION  bound on draining calls at shutdown       [SHUTDOWN_TIMEOUT] (default 30s)
  -h, --help                 print this help and exit

Durations are Go-style: 100ms, 10s, 1m30s.
`;

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

  const keyHeaders = [...DEFAULT_KEY_HEADERS];
  const extra = pick("key-headers", "COLLAPSER_KEY_HEADERS");
  for (const raw of extra?.value.split(",") ?? []) {
    const name = raw.trim().toLowerCase();
    if (name === "") continue;
    if (!/^[0-9a-z_.-]+$/.test(name)) {
      throw new ConfigError(`${extra!.source}: invalid metadata key ${JSON.stringify(raw.trim())}`);
    }
    if (!keyHeaders.includes(name)) keyHeaders.push(name);
  }

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
      cacheTtlMs: duration("cache-ttl", "COLLAPSER_CACHE_DURATION", DEFAULT_CACHE_DURATION_MS, true),
      backendTimeoutMs: duration("backend-timeout", "BACKEND_TIMEOUT", DEFAULT_BACKEND_TIMEOUT_MS, false),
      keyHeaders,
      maxMessageBytes,
      logLevel,
      shutdownTimeoutMs: duration("shutdown-timeout", "SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT_MS, true),
    },
  };
}

/** A target or URL with any `user:password@` part masked, for logs. */
export function redactCredentials(target: string): string {
  return target.replace(/^([a-z][a-z0-9+.-]*:\/\/\/?)?[^@/]+@/i, (_match, scheme = "") => `${scheme}***@`);
}
