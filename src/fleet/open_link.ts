/**
 * The one place that picks the tier's Redis client, at start-up: a Redis Cluster (`--redis-cluster`),
 * Sentinel (`--redis-sentinel`), or one Redis (`--redis`). Each is loaded only when chosen, so a proxy
 * without the tier loads no Redis code, and one with a single Redis no cluster code.
 *
 * @module
 */

import type { RedisLink } from "./link.ts";
import type { RedisConfig } from "./redis_config.ts";

/** Opens the link the configuration asks for (connecting in the background). */
export async function openLink(config: RedisConfig): Promise<RedisLink> {
  if (config.cluster !== undefined) {
    return (await import("./redis_cluster_link.ts")).openRedisClusterLink(config);
  }
  if (config.sentinel !== undefined) {
    return (await import("./redis_sentinel_link.ts")).openRedisSentinelLink(config);
  }
  return (await import("./redis_link.ts")).openRedisLink(config);
}
