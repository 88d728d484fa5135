/**
 * The shared tier: a fleet of proxies that collapses as one through Redis ({@linkcode SharedTier}). It sits
 * behind the local collapser — only a local leader asks it — and Redis failing only makes the proxy
 * collapse alone (tier_health.ts). The Redis client itself (redis_link.ts, node-redis and three Lua
 * scripts) is loaded only when `--redis` is given, so it is not re-exported here.
 *
 * @module
 */

export * from "./shared_tier.ts";
export * from "./link.ts";
export * from "./redis_config.ts";
export * from "./shared_answer.ts";
export * from "./tier_health.ts";
export * from "./waiters.ts";
