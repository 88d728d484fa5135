/**
 * The configuration as people see it: the start-up log line and the status page (durations formatted,
 * credentials masked), and the policy defaults it gives every method.
 *
 * @module
 */

import type { Config } from "./config.ts";
import { formatDuration } from "../util/duration.ts";
import type { Policy, PolicyDefaults } from "../policy/policy.ts";
import { describeRedis } from "../fleet/redis_config.ts";

/**
 * The configuration as the start-up log and the status page show it: durations formatted, patterns as
 * written, the policy's rules listed, and credentials in the backend target masked.
 */
export function effectiveConfig(config: Config, policy: Policy): Record<string, unknown> {
  return {
    host: config.host,
    backend: redactCredentials(config.backend),
    cacheTtl: formatDuration(config.cacheTtlMs),
    backendTimeout: formatDuration(config.backendTimeoutMs),
    shutdownTimeout: formatDuration(config.shutdownTimeoutMs),
    keyHeaders: config.keyHeaders,
    ignoreHeaders: config.ignoreHeaders,
    collapse: config.collapse?.source ?? ["*"],
    noCollapse: config.noCollapse?.source ?? [],
    policyFile: config.policyFile ?? null,
    rules: policy.rules.map((rule) => rule.method),
    descriptorSet: config.descriptorSet ?? null,
    reflection: config.reflection,
    declaredMethods: policy.catalog?.size ?? null,
    shadow: config.shadow,
    staleIfError: formatDuration(config.staleIfErrorMs),
    refreshAhead: config.refreshAhead,
    hotKeys: config.hotKeys,
    maxBackendConcurrency: config.backendLimit?.maxConcurrent ?? "off",
    maxQueue: config.backendLimit?.maxQueue ?? null,
    queueTimeout: config.backendLimit ? formatDuration(config.backendLimit.queueTimeoutMs) : null,
    tls: config.tls === undefined ? "off" : config.tls.clientCa === undefined ? "on" : "mTLS",
    tlsCert: config.tls?.cert ?? null,
    tlsClientCa: config.tls?.clientCa ?? null,
    backendTls: config.backendTls === undefined
      ? "off"
      : config.backendTls.cert === undefined
      ? "on"
      : "mTLS",
    backendCa: config.backendTls?.ca ?? (config.backendTls ? "system roots" : null),
    backendServerName: config.backendTls?.serverName ?? null,
    redis: config.redis === undefined ? "off" : describeRedis(config.redis),
    redisCa: config.redis?.tlsFiles?.ca ?? (config.redis?.tls ? "system roots" : null),
    redisCert: config.redis?.tlsFiles?.cert ?? null,
    redisPrefix: config.redis?.prefix ?? null,
    redisMaxBytes: config.redis?.maxBytes ?? null,
    redisTimeout: config.redis ? formatDuration(config.redis.timeoutMs) : null,
    redisLockTtl: config.redis ? formatDuration(config.redis.lockTtlMs) : null,
    maxTtl: formatDuration(config.maxTtlMs),
    cacheControl: config.cacheControl,
    allowClientNoCache: config.allowClientNoCache,
    cacheStatus: config.cacheStatus,
    // Whether there is one, never what it is.
    adminToken: config.adminToken === undefined ? "off" : "set",
    adminHost: config.adminHost ?? config.host,
    reusePort: config.reusePort,
    workers: config.workers,
    recycleConnections: config.recycleConnections || null,
    recycleRss: config.recycleRssBytes || null,
    memoryLimit: config.memoryLimit ? `${config.memoryLimit.bytes} (${config.memoryLimit.source})` : null,
    cacheMaxBytes: config.cacheMaxBytes,
    cacheMaxEntries: config.cacheMaxEntries,
    lbPolicy: config.balancing.lbPolicy,
    resolveInterval: formatDuration(config.balancing.resolveIntervalMs),
    outlierFailures: config.balancing.outlier.consecutiveFailures,
    outlierEjectionTime: formatDuration(config.balancing.outlier.baseEjectionMs),
    outlierMaxEjected: `${config.balancing.outlier.maxEjectedPercent}%`,
    retryBudget: `${Math.round(config.balancing.retryBudget * 1000) / 10}%`,
    maxMessageBytes: config.maxMessageBytes,
    logLevel: config.logLevel,
  };
}

/** The policy every method gets unless a rule or the service says otherwise. */
export function policyDefaults(config: Config): PolicyDefaults {
  return {
    ttlMs: config.cacheTtlMs,
    keyHeaders: config.keyHeaders,
    ignoreHeaders: config.ignoreHeaders,
    staleIfErrorMs: config.staleIfErrorMs,
    refreshAhead: config.refreshAhead,
    cacheControl: config.cacheControl,
    maxTtlMs: config.maxTtlMs,
    clientNoCache: config.allowClientNoCache,
    collapse: config.collapse,
    noCollapse: config.noCollapse,
  };
}

/** A target or URL with any `user:password@` part masked, for logs. */
export function redactCredentials(target: string): string {
  return target.replace(/^([a-z][a-z0-9+.-]*:\/\/\/?)?[^@/]+@/i, (_match, scheme = "") => `${scheme}***@`);
}
