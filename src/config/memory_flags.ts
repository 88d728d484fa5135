/**
 * `--memory-limit SIZE|auto|off`: the memory the proxy may use (a container's limit), and what is sized
 * from it — the cache's byte bound and, with `--workers`, each worker's recycling bound. `auto` (the
 * default) reads the cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`); without one nothing is
 * sized and the defaults stand. `--cache-max-bytes` and `--cache-max-entries` set the cache's bounds
 * directly.
 *
 * How the cache is fitted: a serving process peaks at about 150 MB under load with an empty cache
 * (`bench:load`, src/util/v8_flags.ts), and a cached byte can cost up to two of RSS (the bytes, V8's and
 * malloc's headroom). Each serving process (the limit split between `--workers`) gets
 * `(share − 150 MiB) / 2` of cache, at most the 64 MiB default and at least 1 MiB. A limit that leaves
 * less than that is accepted, with a warning at start (`warnings`).
 *
 * @module
 */

import { DEFAULT_CACHE_MAX_BYTES, DEFAULT_CACHE_MAX_ENTRIES } from "../core/ttl_cache.ts";
import type { FlagTable, Reader } from "./reader.ts";
import { readTextOrUndefined } from "../util/cores.ts";
import { parseBytes, type WorkersConfig } from "./workers_flags.ts";

/** The memory flags. */
export const MEMORY_FLAGS = {
  "memory-limit": { type: "string" },
  "cache-max-bytes": { type: "string" },
  "cache-max-entries": { type: "string" },
} as const satisfies FlagTable;

/** What one serving process peaks at under load with an empty cache, in bytes (measured: 139–143 MB). */
export const PROCESS_PEAK_BYTES = 150 * 2 ** 20;
/** RSS bytes a cached byte may cost. */
const BYTES_PER_CACHED_BYTE = 2;
/** The least cache a memory limit is given. */
const MIN_CACHE_BYTES = 2 ** 20;
/** Share of a worker's part of the limit past which it is recycled (with `--workers`). */
const RECYCLE_SHARE = 0.75;

/** What the memory flags say. */
export interface MemoryConfig {
  /** The memory limit in bytes, and where it came from; undefined = none. */
  memoryLimit: { bytes: number; source: "flag" | "cgroup" } | undefined;
  /** Most bytes of answers cached, per serving process. */
  cacheMaxBytes: number;
  /** Most answers cached, per serving process. */
  cacheMaxEntries: number;
  /** Said at start when the limit is too small for what was asked. */
  memoryWarnings: string[];
}

/**
 * Reads the memory flags; with a limit, sizes the cache and (with workers, unless given) each worker's
 * `recycleRssBytes`, which it returns changed.
 */
export function memoryConfig(
  read: Reader,
  workers: WorkersConfig,
  cgroupLimit: () => number | undefined = readCgroupLimit,
): MemoryConfig & Pick<WorkersConfig, "recycleRssBytes"> {
  const given = read.parsed("memory-limit", "COLLAPSER_MEMORY_LIMIT", (raw) => {
    if (raw === "auto" || raw === "off") return raw;
    const bytes = parseBytes(raw);
    if (bytes < 64 * 2 ** 20) throw new Error(`memory limit ${JSON.stringify(raw)} is below 64 MiB`);
    return bytes;
  }) ?? "auto";
  const detected = given === "auto" ? cgroupLimit() : undefined;
  const memoryLimit = typeof given === "number"
    ? { bytes: given, source: "flag" as const }
    : detected === undefined
    ? undefined
    : { bytes: detected, source: "cgroup" as const };
  const askedBytes = read.parsed("cache-max-bytes", "COLLAPSER_CACHE_MAX_BYTES", parseBytes);
  const cacheMaxEntries = read.count(
    "cache-max-entries",
    "COLLAPSER_CACHE_MAX_ENTRIES",
    DEFAULT_CACHE_MAX_ENTRIES,
  );
  const memoryWarnings: string[] = [];
  let { recycleRssBytes } = workers;
  if (memoryLimit === undefined) {
    return {
      memoryLimit,
      cacheMaxBytes: askedBytes ?? DEFAULT_CACHE_MAX_BYTES,
      cacheMaxEntries,
      memoryWarnings,
      recycleRssBytes,
    };
  }
  const share = memoryLimit.bytes / Math.max(1, workers.workers);
  const fits = Math.floor((share - PROCESS_PEAK_BYTES) / BYTES_PER_CACHED_BYTE);
  const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
  if (fits < MIN_CACHE_BYTES) {
    memoryWarnings.push(
      `the memory limit gives each serving process ${mib(share)}; one peaks at about ${
        mib(PROCESS_PEAK_BYTES)
      } under load before its cache: expect it to be killed for memory under load`,
    );
  }
  const cacheMaxBytes = askedBytes ?? Math.min(DEFAULT_CACHE_MAX_BYTES, Math.max(MIN_CACHE_BYTES, fits));
  if (askedBytes !== undefined && askedBytes > Math.max(fits, MIN_CACHE_BYTES)) {
    memoryWarnings.push(
      `--cache-max-bytes ${mib(askedBytes)} does not fit in the memory limit's ${mib(share)} per serving ` +
        `process (about ${mib(Math.max(0, fits))} does)`,
    );
  }
  if (workers.workers > 0 && recycleRssBytes === 0) recycleRssBytes = Math.floor(share * RECYCLE_SHARE);
  return { memoryLimit, cacheMaxBytes, cacheMaxEntries, memoryWarnings, recycleRssBytes };
}

/** The cgroup's memory limit in bytes (v2, then v1), or undefined when there is none. */
export function readCgroupLimit(
  read: (path: string) => string | undefined = readTextOrUndefined,
): number | undefined {
  for (const path of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    const text = read(path)?.trim();
    if (text === undefined || text === "max") continue;
    const bytes = Number(text);
    // cgroup v1 says "no limit" with a huge number (the page-aligned maximum of a 64-bit counter).
    if (Number.isSafeInteger(bytes) && bytes > 0 && bytes < 2 ** 50) return bytes;
  }
  return undefined;
}
