/**
 * `--workers N|auto` (several processes on one port, supervised) and the workers' recycling bounds.
 *
 * @module
 */

import { availableCores } from "../util/cores.ts";
import { ConfigError, type FlagTable, type Reader } from "./reader.ts";

/** The workers' flags. */
export const WORKERS_FLAGS = {
  workers: { type: "string" },
  "recycle-connections": { type: "string" },
  "recycle-rss": { type: "string" },
} as const satisfies FlagTable;

/** Most workers: far more than any machine's cores, to catch a typo. */
const MAX_WORKERS = 256;

/** How many worker processes, and when one is replaced. */
export interface WorkersConfig {
  /** Worker processes under one supervisor; 0 = this process serves alone (no supervisor). */
  workers: number;
  /** A worker asks to be replaced after this many accepted client connections; 0 = never. */
  recycleConnections: number;
  /** A worker asks to be replaced once its resident set passes this many bytes; 0 = never. */
  recycleRssBytes: number;
}

/** Reads `--workers` and the recycling bounds (which need `--workers`). */
export function workersConfig(read: Reader): WorkersConfig {
  const workers = read.parsed("workers", "COLLAPSER_WORKERS", (raw) => {
    if (raw === "auto") return availableCores();
    if (!/^\d+$/.test(raw) || Number(raw) > MAX_WORKERS) {
      throw new Error(`invalid worker count ${JSON.stringify(raw)} (expected 0-${MAX_WORKERS} or auto)`);
    }
    return Number(raw);
  }) ?? 0;
  const recycleConnections = read.count("recycle-connections", "COLLAPSER_RECYCLE_CONNECTIONS", 0);
  const recycleRssBytes = read.parsed("recycle-rss", "COLLAPSER_RECYCLE_RSS", parseBytes) ?? 0;
  if (workers === 0 && (recycleConnections > 0 || recycleRssBytes > 0)) {
    throw new ConfigError(
      "--recycle-connections and --recycle-rss need --workers (use --workers 1 for one recycled process)",
    );
  }
  return { workers, recycleConnections, recycleRssBytes };
}

/** `200MB`, `1.5GiB`, `300000000`: a size in bytes (MB = 10^6, MiB = 2^20). */
export function parseBytes(raw: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/i.exec(raw.trim());
  if (match === null) throw new Error(`invalid size ${JSON.stringify(raw)} (expected e.g. 200MiB or 250MB)`);
  const units: Record<string, number> = {
    b: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    kib: 2 ** 10,
    mib: 2 ** 20,
    gib: 2 ** 30,
  };
  return Math.round(Number(match[1]) * units[(match[2] ?? "b").toLowerCase()]);
}
