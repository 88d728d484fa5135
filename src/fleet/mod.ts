/**
 * The shared tier: a fleet of proxies that collapses as one through Redis ({@linkcode SharedTier}). It sits
 * behind the local collapser — only a local leader asks it — and Redis failing only makes the proxy
 * collapse alone (tier_health.ts). Purges reach the whole fleet through it (fleet_purges.ts), and answers
 * from the fleet are kept and checked as this proxy's policy and purges say (fleet_answers.ts). The Redis
 * client itself (redis_link.ts, node-redis and its Lua scripts) is loaded only when `--redis` is given, so
 * it is not re-exported here.
 *
 * @module
 */

export * from "./shared_tier.ts";
export * from "./link.ts";
export * from "./redis_config.ts";
export * from "./shared_answer.ts";
export * from "./tier_health.ts";
export * from "./waiters.ts";
export * from "./fleet_purges.ts";
export * from "./fleet_answers.ts";
