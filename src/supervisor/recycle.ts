/**
 * A worker's own recycling bounds: past a number of accepted client connections, or past a resident set
 * size, it asks its supervisor to be replaced (once). Deno 2.8.3's `node:http2` keeps about 39 KB of native
 * memory (RSS) and 1–4 KB of heap for every client connection it ever closed, out of the program's reach
 * (docs/limits.md), so a long-lived proxy that sees many connections grows without end; replacing the
 * process is what frees it, as Apache's MaxConnectionsPerChild and gunicorn's `max_requests` do.
 *
 * @module
 */

/** Options for {@linkcode watchRecycling}. */
export interface RecycleOptions {
  /** Ask to be replaced after this many accepted connections; 0 = no bound. */
  readonly maxConnections: number;
  /** Ask to be replaced once the resident set passes this many bytes; 0 = no bound. */
  readonly maxRssBytes: number;
  /** Connections accepted since start. */
  readonly connections: () => number;
  /** The resident set size now, in bytes. @default {Deno.memoryUsage().rss} */
  readonly rss?: () => number;
  /** How often to check, in ms. @default {1000} */
  readonly everyMs?: number;
}

/**
 * Checks the bounds every `everyMs` and calls `recycle` once with the reason when one is passed. The timer
 * does not keep the process alive. Dispose to stop.
 */
export function watchRecycling(options: RecycleOptions, recycle: (reason: string) => void): Disposable {
  const { maxConnections, maxRssBytes, connections, rss = () => Deno.memoryUsage().rss } = options;
  if (maxConnections === 0 && maxRssBytes === 0) return { [Symbol.dispose]() {} };
  const timer = setInterval(() => {
    const reason = maxConnections > 0 && connections() >= maxConnections
      ? `accepted ${connections()} connections (bound ${maxConnections})`
      : maxRssBytes > 0 && rss() >= maxRssBytes
      ? `resident set ${Math.round(rss() / 2 ** 20)} MiB (bound ${Math.round(maxRssBytes / 2 ** 20)} MiB)`
      : undefined;
    if (reason === undefined) return;
    clearInterval(timer);
    recycle(reason);
  }, options.everyMs ?? 1_000);
  Deno.unrefTimer(timer as unknown as number);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}
