/**
 * What a worker tells its supervisor, one line each on its standard output (logs go to standard error): that
 * it listens, and on which admin port; and that it asks to be replaced (recycled). A worker knows it is one
 * by {@linkcode WORKER_ENV} in its environment.
 *
 * @module
 */

/** Set in a worker's environment to its index (0, 1, ...); absent in a process started by hand. */
export const WORKER_ENV = "COLLAPSER_WORKER";

/** The prefix that marks a line as a message to the supervisor. */
const PREFIX = "@collapser-worker ";

/** One message from a worker. */
export type WorkerMessage =
  /** The worker listens: its gRPC port and its admin port (on 127.0.0.1). */
  | { readonly kind: "listening"; readonly port: number; readonly adminPort: number }
  /** The worker passed a recycling bound and asks to be replaced; it keeps serving until told to drain. */
  | { readonly kind: "recycle"; readonly reason: string };

/** The line that carries `message`. */
export function formatMessage(message: WorkerMessage): string {
  return PREFIX + JSON.stringify(message);
}

/** The message a line carries, or undefined for any other line. */
export function parseMessage(line: string): WorkerMessage | undefined {
  if (!line.startsWith(PREFIX)) return undefined;
  try {
    const message = JSON.parse(line.slice(PREFIX.length));
    if (
      message?.kind === "listening" && Number.isInteger(message.port) && Number.isInteger(message.adminPort)
    ) {
      return { kind: "listening", port: message.port, adminPort: message.adminPort };
    }
    if (message?.kind === "recycle" && typeof message.reason === "string") {
      return { kind: "recycle", reason: message.reason };
    }
  } catch {
    // not ours after all
  }
  return undefined;
}

/** This process's worker index, or undefined when it is not a supervised worker. */
export function workerIndex(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): number | undefined {
  const raw = env[WORKER_ENV];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
}
