/**
 * `--probe health|ready`: instead of starting a proxy, ask the one running on this host (through its admin
 * port) whether it is alive or ready, and exit 0 or 1 — a health check for an image with no shell and no
 * curl (Docker's `HEALTHCHECK`, Compose's `healthcheck`). It reads the admin port and listen address as the
 * proxy does (`--metrics-port`/METRICS_PORT, `--host`/GRPC_HOST) and ignores every other flag, so a health
 * check can repeat the container's flags or give none.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_METRICS_PORT } from "./usage.ts";
import { ConfigError, Reader } from "./reader.ts";

/** What `--probe` may ask: the admin port's `/health` or `/ready`. */
export const PROBE_ENDPOINTS = ["health", "ready"] as const;

/** A probe of a running proxy. */
export interface ProbeRequest {
  /** `health` (the process is alive) or `ready` (the backend is reachable and the proxy is not draining). */
  endpoint: typeof PROBE_ENDPOINTS[number];
  /** Address to reach the admin port on: the listen address, or loopback for a wildcard. */
  host: string;
  /** The admin port. */
  port: number;
}

/** `--probe …` from the arguments, or undefined when the proxy is to start. @throws {ConfigError} */
export function parseProbe(
  args: string[],
  env: Record<string, string | undefined>,
): ProbeRequest | undefined {
  if (!args.some((arg) => arg === "--probe" || arg.startsWith("--probe="))) return undefined;
  const { values } = parseArgs({
    args,
    strict: false,
    allowPositionals: true,
    options: { probe: { type: "string" }, "metrics-port": { type: "string" }, host: { type: "string" } },
  });
  const endpoint = values.probe;
  if (typeof endpoint !== "string" || !(PROBE_ENDPOINTS as readonly string[]).includes(endpoint)) {
    throw new ConfigError(
      `--probe: expected ${PROBE_ENDPOINTS.join(" or ")}, got ${JSON.stringify(endpoint)}`,
    );
  }
  const read = new Reader(values, env);
  const host = read.string("host", "GRPC_HOST") ?? "0.0.0.0";
  return {
    endpoint: endpoint as ProbeRequest["endpoint"],
    host: host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host,
    port: read.port("metrics-port", "METRICS_PORT", DEFAULT_METRICS_PORT),
  };
}
