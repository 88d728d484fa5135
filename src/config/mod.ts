/**
 * Flags and environment variables → one {@linkcode Config} (config.ts; a bad value is one clear line, then
 * the usage, then exit 1), the `--help` text (usage.ts), and the configuration as logged and shown on the
 * status page, credentials masked (config_view.ts).
 *
 * @module
 */

export * from "./config.ts";
export * from "./config_view.ts";
export * from "./usage.ts";
