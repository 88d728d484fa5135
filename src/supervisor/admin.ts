/**
 * The admin port of a supervised fleet of workers (`--workers`): the same endpoints as a single proxy's,
 * served by the supervisor from what its workers' own admin ports (on 127.0.0.1) say.
 *
 * - `/metrics`: every worker's metrics with a `worker` label (metrics_merge.ts), plus the supervisor's own;
 * - `/health`: the supervisor is alive; `/ready`: at least one worker is ready (the kernel spreads new
 *   connections over listening workers only);
 * - `/` and `/status.json`: the status page of one worker (`?worker=N`, default the first that answers), the
 *   worker named in an `x-collapser-worker` header.
 *
 * @module
 */

import { mergeMetrics } from "./metrics_merge.ts";
import type { Supervisor, WorkerInfo } from "./supervisor.ts";

/** How long one worker's admin answer may take. */
const WORKER_TIMEOUT_MS = 700;

/** Starts the supervisor's admin listener; resolves once it listens. */
export async function serveSupervisorAdmin(
  supervisor: Supervisor,
  options: { hostname: string; port: number },
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: () => listening.resolve(),
  }, supervisorAdminHandler(supervisor));
  await listening.promise;
  return server;
}

/** The handler, apart from the listener. */
export function supervisorAdminHandler(supervisor: Supervisor): (request: Request) => Promise<Response> {
  const text = (status: number, body: string) =>
    new Response(body + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8" } });
  return async (request) => {
    const url = new URL(request.url);
    if (request.method !== "GET" && request.method !== "HEAD") return text(405, "method not allowed");
    const workers = supervisor.workers().filter((w) => w.adminPort !== undefined);
    switch (url.pathname) {
      case "/health":
      case "/healthz":
        return text(200, "ok");
      case "/ready":
      case "/readyz": {
        const answers = await Promise.all(workers.map((w) => ask(w, "/ready")));
        const ready = answers.filter((a) => a?.status === 200).length;
        return ready > 0
          ? text(200, `ready (${ready} of ${supervisor.workers().length} workers)`)
          : text(503, "not ready: no worker is ready");
      }
      case "/metrics": {
        const answers = await Promise.all(workers.map(async (w) => [w, await ask(w, "/metrics")] as const));
        const ok = answers.filter(([, a]) => a?.status === 200);
        const texts = await Promise.all(ok.map(([, a]) => a!.text()));
        const stats = supervisor.stats;
        const own = [
          "# HELP collapser_workers Workers listening now (--workers).",
          "# TYPE collapser_workers gauge",
          `collapser_workers ${stats.listening}`,
          "# HELP collapser_worker_restarts_total Workers started again after they died.",
          "# TYPE collapser_worker_restarts_total counter",
          `collapser_worker_restarts_total ${stats.restarts}`,
          "# HELP collapser_worker_recycles_total Workers replaced at their recycling bound.",
          "# TYPE collapser_worker_recycles_total counter",
          `collapser_worker_recycles_total ${stats.recycles}`,
          "",
        ].join("\n");
        return new Response(mergeMetrics(texts, ok.map(([w]) => String(w.slot)), own), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      case "/":
      case "/index.html":
      case "/status.json": {
        const wanted = url.searchParams.get("worker");
        const candidates = wanted === null ? workers : workers.filter((w) => String(w.slot) === wanted);
        for (const worker of candidates) {
          const answer = await ask(worker, url.pathname);
          if (answer === undefined) continue;
          const headers = new Headers(answer.headers);
          headers.set("x-collapser-worker", String(worker.slot));
          return new Response(answer.body, { status: answer.status, headers });
        }
        return text(503, "no worker answers");
      }
    }
    return text(404, "not found: try /, /status.json, /metrics, /health or /ready");
  };
}

/** One worker's admin answer, or undefined if it does not answer in time. */
async function ask(worker: WorkerInfo, path: string): Promise<Response | undefined> {
  try {
    return await fetch(`http://127.0.0.1:${worker.adminPort}${path}`, {
      signal: AbortSignal.timeout(WORKER_TIMEOUT_MS),
    });
  } catch {
    return undefined;
  }
}
