/**
 * The admin listener (METRICS_PORT): the status page (`/`) and its data (`/status.json`), `/metrics`,
 * `/health` (alive) and `/ready` (able to serve) — read-only, GET and HEAD only, open as they have always
 * been — and `POST /purge`, the one endpoint that changes state: it needs the admin token and is off without
 * one (purge_endpoint.ts).
 *
 * @module
 */

import type { Metrics } from "./metrics.ts";
import type { Proxy } from "../server/proxy.ts";
import { type StatusBoard, type StatusSnapshot, statusSource } from "./status.ts";
import { STATUS_PAGE_HTML } from "./status_page.ts";
import { purgeEndpoint } from "./purge_endpoint.ts";
import type { Secret } from "../util/secret.ts";
import type { PurgeTarget } from "../policy/purges.ts";
import type { PurgeResult } from "../server/purge.ts";

/** What the admin endpoints ask of the running proxy. */
export interface AdminSource {
  /** Prometheus exposition text. */
  metrics(): Promise<string>;
  /** Whether the proxy is draining (shutting down). */
  draining(): boolean;
  /** Whether the backend can be reached now; resolves within `timeoutMs`. */
  backendReady(timeoutMs: number): Promise<boolean>;
  /** The live status; without it `/` and `/status.json` are 404. */
  status?(): StatusSnapshot;
  /** Applies a purge; without it (or without `adminToken`) `POST /purge` is 404. */
  purge?(target: PurgeTarget): Promise<PurgeResult>;
  /** The token state-changing endpoints require; without it they are off. */
  adminToken?: Secret;
}

/** How long `/ready` waits for the backend connection: below Kubernetes' default 1 s probe timeout. */
export const READY_BACKEND_TIMEOUT_MS = 500;

const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
/** The page loads nothing from anywhere and fetches only its own origin. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
};
const JSON_HEADERS = {
  "content-type": "application/json; charset=utf-8",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
};

/** The admin request handler, separate from the listener so it can be tested on its own. */
export function adminHandler(
  source: AdminSource,
): (request: Request, info?: Deno.ServeHandlerInfo<Deno.NetAddr>) => Promise<Response> {
  const text = (status: number, body: string) =>
    new Response(body + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8" } });
  const purge = source.purge && ((target: PurgeTarget) => source.purge!(target));
  return async (request, info) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/purge") {
      return await purgeEndpoint(request, { token: source.adminToken, purge }, info?.remoteAddr.hostname);
    }
    if (request.method !== "GET" && request.method !== "HEAD") return text(405, "method not allowed");
    switch (pathname) {
      case "/":
      case "/index.html":
        if (!source.status) break;
        return new Response(STATUS_PAGE_HTML, { headers: PAGE_HEADERS });
      case "/status.json":
        if (!source.status) break;
        return new Response(JSON.stringify(source.status()), { headers: JSON_HEADERS });
      case "/metrics":
        return new Response(await source.metrics(), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
      case "/health":
      case "/healthz":
        return text(200, "ok");
      case "/ready":
      case "/readyz":
        if (source.draining()) return text(503, "not ready: draining (shutting down)");
        if (!(await source.backendReady(READY_BACKEND_TIMEOUT_MS))) {
          return text(503, "not ready: backend unreachable");
        }
        return text(200, "ready");
    }
    return text(404, `not found: try ${source.status ? "/, /status.json, " : ""}/metrics, /health or /ready`);
  };
}

/** Starts the admin listener; resolves once it listens. */
export async function startAdmin(
  source: AdminSource,
  options: { hostname: string; port: number },
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: () => listening.resolve(),
    onError: (err) => {
      return new Response(`internal error: ${(err as Error).message}\n`, { status: 500 });
    },
  }, adminHandler(source));
  await listening.promise;
  return server;
}

/**
 * Points `metrics` and `status` (both already the proxy's observers) at the running `proxy`, and starts the
 * admin listener that serves them. `config` is what the status page shows (mask credentials first).
 */
export async function serveAdmin(
  proxy: Proxy,
  options: {
    metrics: Metrics;
    status: StatusBoard;
    config: Record<string, unknown>;
    hostname: string;
    port: number;
    /** The token `POST /purge` requires; without it purging is off. */
    adminToken?: Secret;
  },
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  const { metrics, status } = options;
  metrics.attach({
    proxyStats: () => proxy.stats(),
    collapserStats: () => proxy.collapser.stats(),
    freshnessStats: () => proxy.freshness.stats,
    purgeStats: () => proxy.purges.stats,
  });
  const tier = proxy.tier;
  if (tier !== undefined) metrics.tier(() => tier.stats);
  const balancer = proxy.backend.balancer;
  if (balancer !== undefined) metrics.balancer(() => balancer.stats());
  status.start(statusSource(proxy, options.config, { purgeEnabled: options.adminToken !== undefined }));
  return await startAdmin({
    metrics: () => metrics.text(),
    draining: () => proxy.draining,
    backendReady: (timeoutMs) => proxy.backendReady(timeoutMs),
    status: () => status.snapshot(),
    purge: (target) => proxy.purge(target),
    adminToken: options.adminToken,
  }, { hostname: options.hostname, port: options.port });
}
