/**
 * The client side of `--probe`: one GET of a running proxy's `/health` or `/ready`, bounded in time. Exit
 * status 0 for a 200, 1 for anything else, with the proxy's reason (or why it could not be reached) on
 * standard error, which Docker keeps in `docker inspect`'s health log.
 *
 * @module
 */

/** Which proxy to probe, and what to ask it (src/config/probe_flags.ts reads it from the flags). */
export interface ProbeTarget {
  /** `health` or `ready`. */
  endpoint: string;
  /** Address of the admin listener. */
  host: string;
  /** The admin port. */
  port: number;
}

/** Bound on one probe: connecting, the request and the answer. */
export const PROBE_TIMEOUT_MS = 2_000;

/** Probes the proxy's admin port; resolves with the exit status (0 = 200). */
export async function probe(request: ProbeTarget, options: { timeoutMs?: number } = {}): Promise<number> {
  const { timeoutMs = PROBE_TIMEOUT_MS } = options;
  const host = request.host.includes(":") ? `[${request.host}]` : request.host;
  const url = `http://${host}:${request.port}/${request.endpoint}`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await response.text()).trim();
    if (response.ok) return 0;
    console.error(`collapser: ${url}: ${response.status} ${body}`);
  } catch (err) {
    console.error(`collapser: ${url}: ${(err as Error).message}`);
  }
  return 1;
}
