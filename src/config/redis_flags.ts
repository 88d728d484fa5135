/**
 * The shared tier's flags (`--redis` and its tuning). Without `--redis` its tuning flags are an error, not
 * silently ignored.
 *
 * @module
 */

import {
  DEFAULT_REDIS_LOCK_TTL_MS,
  DEFAULT_REDIS_MAX_BYTES,
  DEFAULT_REDIS_PREFIX,
  DEFAULT_REDIS_TIMEOUT_MS,
  parseRedisUrl,
  type RedisConfig,
} from "../fleet/redis_config.ts";
import { ConfigError, type FlagTable, type Reader } from "./reader.ts";

/** The shared tier's flags. */
export const REDIS_FLAGS = {
  redis: { type: "string" },
  "redis-prefix": { type: "string" },
  "redis-max-bytes": { type: "string" },
  "redis-timeout": { type: "string" },
  "redis-lock-ttl": { type: "string" },
} as const satisfies FlagTable;

/** The shared tier's configuration; undefined = this proxy collapses alone. */
export function redisConfig(read: Reader): RedisConfig | undefined {
  const found = read.pick("redis", "REDIS_URL");
  if (found === undefined) {
    for (const flag of ["redis-prefix", "redis-max-bytes", "redis-timeout", "redis-lock-ttl"]) {
      if (read.given(flag)) throw new ConfigError(`--${flag} needs --redis URL`);
    }
    return undefined;
  }
  let url;
  try {
    url = parseRedisUrl(found.value.trim());
  } catch (err) {
    throw new ConfigError(`${found.source}: ${(err as Error).message}`);
  }
  const prefix = read.string("redis-prefix", "COLLAPSER_REDIS_PREFIX") ?? DEFAULT_REDIS_PREFIX;
  const maxBytes = read.count("redis-max-bytes", "COLLAPSER_REDIS_MAX_BYTES", DEFAULT_REDIS_MAX_BYTES);
  if (maxBytes > 512 * 2 ** 20) {
    throw new ConfigError("--redis-max-bytes: at most 512 MiB (Redis's own limit)");
  }
  return {
    ...url,
    prefix,
    maxBytes,
    timeoutMs: read.duration("redis-timeout", "COLLAPSER_REDIS_TIMEOUT", DEFAULT_REDIS_TIMEOUT_MS, false),
    lockTtlMs: read.duration("redis-lock-ttl", "COLLAPSER_REDIS_LOCK_TTL", DEFAULT_REDIS_LOCK_TTL_MS, false),
  };
}
