/**
 * The shared tier: a fleet of proxies that collapses as one through Redis ({@linkcode SharedTier}). It sits
 * behind the local collapser — only a local leader asks it — and Redis failing only makes the proxy
 * collapse alone (tier_health.ts; in a Cluster, only a failed master's keys: shard_health.ts). Purges reach
 * the whole fleet through it (fleet_purges.ts), and answers from the fleet are kept and checked as this
 * proxy's policy and purges say (fleet_answers.ts). The Redis clients — one Redis (redis_link.ts), Sentinel
 * (redis_sentinel_link.ts), a Cluster (redis_cluster_link.ts), their Lua scripts (scripts.ts) and connection
 * options (redis_options.ts) — are loaded by open_link.ts only when the tier is asked for, so they are not
 * re-exported here.
 *
 * @module
 */

export * from "./shared_tier.ts";
export * from "./link.ts";
export * from "./redis_config.ts";
export * from "./shared_answer.ts";
export * from "./shard_health.ts";
export * from "./slots.ts";
export * from "./tier_health.ts";
export * from "./waiters.ts";
export * from "./fleet_purges.ts";
export * from "./fleet_answers.ts";
