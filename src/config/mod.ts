/**
 * Flags and environment variables → one {@linkcode Config} (config.ts; a bad value is one clear line, then
 * the usage, then exit 1). Each feature's flags have their own file — their option table and how they are
 * read (tls_flags.ts, redis_flags.ts, cache_flags.ts, admin_flags.ts) — and every value is read through a {@linkcode Reader} (reader.ts),
 * so a new feature adds a file here and one line in config.ts. Also the `--help` text (usage.ts) and the
 * configuration as logged and shown on the status page, credentials masked (config_view.ts).
 *
 * @module
 */

export * from "./config.ts";
export * from "./config_view.ts";
export * from "./probe_flags.ts";
export * from "./reader.ts";
export * from "./redis_flags.ts";
export * from "./tls_flags.ts";
export * from "./cache_flags.ts";
export * from "./admin_flags.ts";
export * from "./usage.ts";
