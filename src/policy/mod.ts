/**
 * Which calls are collapsed, what they share, and how long answers are kept: one immutable
 * {@linkcode MethodPolicy} per method path, resolved from flags, the policy file (policy_file.ts, reloaded
 * on SIGHUP by policy_source.ts) and what the backend declares (descriptor sets, server reflection); the
 * collapse key and which metadata it covers (key.ts); how a finished answer is kept (retention.ts, and
 * freshness.ts with what the backend's `cache-control` says, cache_control.ts); and purges (purges.ts).
 *
 * @module
 */

export * from "./policy.ts";
export * from "./key.ts";
export * from "./retention.ts";
export * from "./freshness.ts";
export * from "./cache_control.ts";
export * from "./purges.ts";
export * from "./policy_file.ts";
export * from "./policy_source.ts";
export * from "./descriptor.ts";
export * from "./reflection.ts";
