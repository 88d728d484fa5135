/**
 * The shared tier's settings: the Redis URL and the tier's knobs, as flags and environment variables give
 * them.
 *
 * @module
 */

/** Default namespace of the tier's keys and channel. */
export const DEFAULT_REDIS_PREFIX = "collapser:";
/** Default largest answer shared through Redis: 256 KiB. */
export const DEFAULT_REDIS_MAX_BYTES = 256 * 1024;
/** Default bound on one Redis round trip. */
export const DEFAULT_REDIS_TIMEOUT_MS = 250;
/** Default life of a lock: the longest one proxy waits for another's answer. */
export const DEFAULT_REDIS_LOCK_TTL_MS = 5_000;

/** Where Redis is and how the tier uses it. */
export interface RedisConfig {
  /** The URL as given (`redis://` or `rediss://`); log it through {@linkcode maskedRedisUrl}. */
  url: string;
  /** Whether to speak TLS (`rediss://`). */
  tls: boolean;
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  db: number;
  /** Namespace of every key and the channel. */
  prefix: string;
  /** Answers larger than this stay local. */
  maxBytes: number;
  /** Bound on one round trip, in ms. */
  timeoutMs: number;
  /** Life of a lock, in ms. */
  lockTtlMs: number;
}

/** A `--redis` value that is not a Redis URL; the message says why. */
export class RedisUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisUrlError";
  }
}

/**
 * Reads `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS). The port defaults to 6379 and
 * the database to 0.
 *
 * @throws {RedisUrlError} for anything else
 */
export function parseRedisUrl(raw: string): Pick<
  RedisConfig,
  "url" | "tls" | "host" | "port" | "username" | "password" | "db"
> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new RedisUrlError(`not a URL: ${JSON.stringify(maskedRedisUrl(raw))} (expected redis://host:port)`);
  }
  const shown = JSON.stringify(maskedRedisUrl(raw));
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new RedisUrlError(`${shown}: the scheme must be redis:// or rediss:// (TLS)`);
  }
  if (url.hostname === "") throw new RedisUrlError(`${shown}: no host`);
  if (url.search !== "" || url.hash !== "") {
    throw new RedisUrlError(`${shown}: query and fragment are not supported`);
  }
  const path = url.pathname.replace(/^\//, "");
  if (!/^\d*$/.test(path) || Number(path) > 65535) {
    throw new RedisUrlError(`${shown}: the path must be a database number, e.g. /0`);
  }
  const port = url.port === "" ? 6379 : Number(url.port);
  if (port < 1) throw new RedisUrlError(`${shown}: the port must be 1-65535`);
  return {
    url: raw,
    tls: url.protocol === "rediss:",
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    username: url.username === "" ? undefined : decodeURIComponent(url.username),
    password: url.password === "" ? undefined : decodeURIComponent(url.password),
    db: path === "" ? 0 : Number(path),
  };
}

/**
 * The URL with everything before its last `@` masked (user and password), for logs, errors and the status
 * page. Masking up to the last `@` also covers a password that itself holds `@` or `/`.
 */
export function maskedRedisUrl(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/).*@/i, "$1***@");
}
