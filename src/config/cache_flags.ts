/**
 * The HTTP-cache flags: honouring the backend's `cache-control` (and its cap), honouring a caller's
 * `no-cache`, and saying how each answer was served (`cache-status`). A policy rule can override the first
 * two per method (`cacheControl`, `clientNoCache`).
 *
 * @module
 */

import { DEFAULT_MAX_TTL_MS } from "../policy/policy.ts";
import type { FlagTable, Reader } from "./reader.ts";

/** The HTTP-cache flags. */
export const CACHE_FLAGS = {
  "max-ttl": { type: "string" },
  "no-cache-control": { type: "boolean" },
  "allow-client-no-cache": { type: "boolean" },
  "no-cache-status": { type: "boolean" },
} as const satisfies FlagTable;

/** What the HTTP-cache flags say. */
export interface CacheConfig {
  /** Longest the backend's `cache-control` can make an answer fresh (and each stale window), in ms. */
  maxTtlMs: number;
  /** Honour the backend's `cache-control` (and `age`). */
  cacheControl: boolean;
  /** Honour a caller's `cache-control: no-cache` / `max-age=0` with a fresh backend call. */
  allowClientNoCache: boolean;
  /** Put `cache-status` (RFC 9211) on every collapsed or cached answer. */
  cacheStatus: boolean;
}

/** Reads the HTTP-cache flags. Switches that default on are turned off by a flag or by `VAR=false`. */
export function cacheConfig(read: Reader): CacheConfig {
  return {
    maxTtlMs: read.duration("max-ttl", "COLLAPSER_MAX_TTL", DEFAULT_MAX_TTL_MS, false),
    // "cache-control" and "cache-status" are no flags: only their variables are read (true by default).
    cacheControl: !read.given("no-cache-control") &&
      read.bool("cache-control", "COLLAPSER_CACHE_CONTROL", true),
    allowClientNoCache: read.bool("allow-client-no-cache", "COLLAPSER_ALLOW_CLIENT_NO_CACHE", false),
    cacheStatus: !read.given("no-cache-status") && read.bool("cache-status", "COLLAPSER_CACHE_STATUS", true),
  };
}
