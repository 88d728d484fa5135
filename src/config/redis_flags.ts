/**
 * The shared tier's flags: where Redis is — one server (`--redis URL`), a Redis Cluster's seed nodes
 * (`--redis-cluster`), or Sentinels and the master they watch (`--redis-sentinel`,
 * `--redis-sentinel-master`), exactly one of them — how to reach it (credentials, TLS with a private CA and
 * a client certificate), and the tier's tuning. Without one of the three, any other `--redis-*` flag is an
 * error, not silently ignored.
 *
 * @module
 */

import {
  DEFAULT_REDIS_LOCK_TTL_MS,
  DEFAULT_REDIS_MAX_BYTES,
  DEFAULT_REDIS_PREFIX,
  DEFAULT_REDIS_TIMEOUT_MS,
  parseRedisNodes,
  parseRedisUrl,
  type RedisConfig,
  type RedisNode,
} from "../fleet/redis_config.ts";
import { ConfigError, type FlagTable, type Found, type Reader } from "./reader.ts";

/** Port of a Redis node when a seed gives none. */
const REDIS_PORT = 6379;
/** Port of a sentinel when a seed gives none. */
const SENTINEL_PORT = 26379;

/** The shared tier's flags. */
export const REDIS_FLAGS = {
  redis: { type: "string" },
  "redis-cluster": { type: "string" },
  "redis-sentinel": { type: "string" },
  "redis-sentinel-master": { type: "string" },
  "redis-sentinel-password": { type: "string" },
  "redis-username": { type: "string" },
  "redis-password": { type: "string" },
  "redis-tls": { type: "boolean" },
  "redis-ca": { type: "string" },
  "redis-cert": { type: "string" },
  "redis-key": { type: "string" },
  "redis-prefix": { type: "string" },
  "redis-max-bytes": { type: "string" },
  "redis-timeout": { type: "string" },
  "redis-lock-ttl": { type: "string" },
} as const satisfies FlagTable;

/** Flags (and their variables) that only mean something with one of the three. */
const NEEDS_REDIS: [string, string][] = [
  ["redis-sentinel-master", "REDIS_SENTINEL_MASTER"],
  ["redis-sentinel-password", "REDIS_SENTINEL_PASSWORD"],
  ["redis-username", "REDIS_USERNAME"],
  ["redis-password", "REDIS_PASSWORD"],
  ["redis-tls", "COLLAPSER_REDIS_TLS"],
  ["redis-ca", "COLLAPSER_REDIS_CA"],
  ["redis-cert", "COLLAPSER_REDIS_CERT"],
  ["redis-key", "COLLAPSER_REDIS_KEY"],
  ["redis-prefix", "COLLAPSER_REDIS_PREFIX"],
  ["redis-max-bytes", "COLLAPSER_REDIS_MAX_BYTES"],
  ["redis-timeout", "COLLAPSER_REDIS_TIMEOUT"],
  ["redis-lock-ttl", "COLLAPSER_REDIS_LOCK_TTL"],
];

/** The shared tier's configuration; undefined = this proxy collapses alone. */
export function redisConfig(read: Reader): RedisConfig | undefined {
  const single = read.pick("redis", "REDIS_URL");
  const cluster = read.pick("redis-cluster", "REDIS_CLUSTER_NODES");
  const sentinel = read.pick("redis-sentinel", "REDIS_SENTINEL_NODES");
  const given = [single, cluster, sentinel].filter((f): f is Found => f !== undefined);
  if (given.length > 1) {
    throw new ConfigError(
      `${
        given.map((f) => f.source).join(" and ")
      }: give one (one Redis, a Cluster's seed nodes, or Sentinels)`,
    );
  }
  const where = given[0];
  if (where === undefined) {
    // Flags only: a variable set for the whole environment may be meant for another program.
    for (const [flag] of NEEDS_REDIS) {
      if (read.given(flag)) {
        throw new ConfigError(`--${flag} needs --redis URL, --redis-cluster or --redis-sentinel`);
      }
    }
    return undefined;
  }
  const place = single !== undefined
    ? fromUrl(read, single)
    : cluster !== undefined
    ? fromNodes(read, cluster, "cluster")
    : fromNodes(read, sentinel!, "sentinel");
  const prefix = read.string("redis-prefix", "COLLAPSER_REDIS_PREFIX") ?? DEFAULT_REDIS_PREFIX;
  if (place.cluster !== undefined && /[{}]/.test(prefix)) {
    // The tier's own hash tag must be the first {…} in every key, or a Cluster would put them all in one slot.
    throw new ConfigError(
      `--redis-prefix: ${JSON.stringify(prefix)} holds { or }, which a Redis Cluster reads as a hash tag`,
    );
  }
  const maxBytes = read.count("redis-max-bytes", "COLLAPSER_REDIS_MAX_BYTES", DEFAULT_REDIS_MAX_BYTES);
  if (maxBytes > 512 * 2 ** 20) {
    throw new ConfigError("--redis-max-bytes: at most 512 MiB (Redis's own limit)");
  }
  return {
    ...place,
    prefix,
    maxBytes,
    timeoutMs: read.duration("redis-timeout", "COLLAPSER_REDIS_TIMEOUT", DEFAULT_REDIS_TIMEOUT_MS, false),
    lockTtlMs: read.duration("redis-lock-ttl", "COLLAPSER_REDIS_LOCK_TTL", DEFAULT_REDIS_LOCK_TTL_MS, false),
  };
}

type Place = Omit<RedisConfig, "prefix" | "maxBytes" | "timeoutMs" | "lockTtlMs">;

/** `--redis URL`: credentials and TLS come with the URL; private CA and client certificate beside it. */
function fromUrl(read: Reader, found: Found): Place {
  let url;
  try {
    url = parseRedisUrl(found.value.trim());
  } catch (err) {
    throw new ConfigError(`${found.source}: ${(err as Error).message}`);
  }
  for (const [flag, name] of NEEDS_REDIS.slice(0, 4)) {
    const other = read.pick(flag, name);
    if (other !== undefined) {
      throw new ConfigError(
        `${other.source} is for --redis-cluster or --redis-sentinel (the --redis URL carries its own: ` +
          `redis[s]://user:password@host:port)`,
      );
    }
  }
  if (read.bool("redis-tls", "COLLAPSER_REDIS_TLS", false)) {
    throw new ConfigError(
      "--redis-tls is for --redis-cluster or --redis-sentinel: give --redis a rediss:// URL",
    );
  }
  const tlsFiles = tlsFilesOf(read);
  if (tlsFiles !== undefined && !url.tls) {
    throw new ConfigError(`--redis-ca, --redis-cert and --redis-key need TLS: give --redis a rediss:// URL`);
  }
  return { ...url, ...(tlsFiles ? { tlsFiles } : {}) };
}

/** `--redis-cluster` or `--redis-sentinel`: seed nodes, with credentials and TLS from their own flags. */
function fromNodes(read: Reader, found: Found, kind: "cluster" | "sentinel"): Place {
  let nodes: RedisNode[];
  try {
    nodes = parseRedisNodes(found.value, kind === "cluster" ? REDIS_PORT : SENTINEL_PORT);
  } catch (err) {
    throw new ConfigError(`${found.source}: ${(err as Error).message}`);
  }
  const master = read.pick("redis-sentinel-master", "REDIS_SENTINEL_MASTER");
  const sentinelPassword = read.pick("redis-sentinel-password", "REDIS_SENTINEL_PASSWORD");
  if (kind === "cluster" && (master ?? sentinelPassword) !== undefined) {
    throw new ConfigError(
      `${(master ?? sentinelPassword)!.source} is for --redis-sentinel, not --redis-cluster`,
    );
  }
  if (kind === "sentinel" && (master === undefined || master.value.trim() === "")) {
    throw new ConfigError(
      `${found.source} needs --redis-sentinel-master NAME (the master the sentinels watch)`,
    );
  }
  const tlsFiles = tlsFilesOf(read);
  return {
    url: found.value.trim(),
    tls: tlsFiles !== undefined || read.bool("redis-tls", "COLLAPSER_REDIS_TLS", false),
    host: nodes[0].host,
    port: nodes[0].port,
    username: read.string("redis-username", "REDIS_USERNAME"),
    password: read.string("redis-password", "REDIS_PASSWORD"),
    db: 0,
    ...(kind === "cluster"
      ? { cluster: nodes }
      : { sentinel: { nodes, master: master!.value.trim(), password: sentinelPassword?.value } }),
    ...(tlsFiles ? { tlsFiles } : {}),
  };
}

/** `--redis-ca`, `--redis-cert`, `--redis-key` (any of them means TLS); undefined when none is given. */
function tlsFilesOf(read: Reader): RedisConfig["tlsFiles"] {
  const ca = read.string("redis-ca", "COLLAPSER_REDIS_CA");
  const cert = read.string("redis-cert", "COLLAPSER_REDIS_CERT");
  const key = read.string("redis-key", "COLLAPSER_REDIS_KEY");
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError("--redis-cert and --redis-key go together: give both or neither");
  }
  return ca === undefined && cert === undefined ? undefined : { ca, cert, key };
}
