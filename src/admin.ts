/**
 * The admin listener (METRICS_PORT): `/metrics`, `/health` (alive) and `/ready` (able to serve).
 *
 * @module
 */

/** What the admin endpoints ask of the running proxy. */
export interface AdminSource {
  /** Prometheus exposition text. */
  metrics(): Promise<string>;
  /** Whether the proxy is draining (shutting down). */
  draining(): boolean;
  /** Whether the backend can be reached now; resolves within `timeoutMs`. */
  backendReady(timeoutMs: number): Promise<boolean>;
}

/** How long `/ready` waits for the backend connection: below Kubernetes' default 1 s probe timeout. */
export const READY_BACKEND_TIMEOUT_MS = 500;

const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The admin request handler, separate from the listener so it can be tested on its own. */
export function adminHandler(source: AdminSource): (request: Request) => Promise<Response> {
  const text = (status: number, body: string) =>
    new Response(body + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8" } });
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (request.method !== "GET" && request.method !== "HEAD") return text(405, "method not allowed");
    switch (pathname) {
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
      default:
        return text(404, "not found: try /metrics, /health or /ready");
    }
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
