/**
 * The supervisor as a program: start the workers and the admin port, log them, and on SIGTERM/SIGINT drain
 * every worker and exit (0 when all drained cleanly). main.ts calls it when `--workers` is given.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { formatDuration } from "../util/duration.ts";
import { serveSupervisorAdmin } from "./admin.ts";
import { selfCommand, Supervisor } from "./supervisor.ts";

/** What the supervisor needs of the configuration. */
export interface SupervisorConfig {
  readonly workers: number;
  readonly host: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly shutdownTimeoutMs: number;
}

/** Extra time a drain is given beyond the workers' own shutdown timeout: their start-up and exit. */
const DRAIN_MARGIN_MS = 5_000;

/** Runs the supervisor until a signal drains it; resolves with the exit code. */
export async function runSupervisor(config: SupervisorConfig, args: readonly string[]): Promise<number> {
  const command = selfCommand();
  if (Deno.permissions.querySync({ name: "run", command: command[0] }).state !== "granted") {
    console.error(
      `collapser: --workers starts its workers as processes: run it with --allow-run ` +
        `(deno run --allow-net --allow-env --allow-read --allow-run main.ts, or deno task start)`,
    );
    return 1;
  }
  const supervisor = new Supervisor({
    workers: config.workers,
    command,
    // Passed as they are: a worker knows it is one by its environment (protocol.ts), not by its flags.
    args,
    shutdownTimeoutMs: config.shutdownTimeoutMs + DRAIN_MARGIN_MS,
  });
  const signal = Promise.withResolvers<string>();
  let signals = 0;
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(name, () => {
      if (++signals === 1) return signal.resolve(name);
      supervisor.forward("SIGTERM"); // the impatient second signal: a second SIGTERM, workers exit at once
    });
  }
  try {
    await supervisor.start();
  } catch (err) {
    console.error(`collapser: ${(err as Error).message}`);
    await supervisor.drain();
    return 1;
  }
  let admin;
  try {
    admin = await serveSupervisorAdmin(supervisor, { hostname: config.host, port: config.metricsPort });
  } catch (err) {
    console.error(`collapser: cannot listen: ${(err as Error).message}`);
    await supervisor.drain();
    return 1;
  }
  log.info("collapser supervisor: {workers} workers on {host}:{port}, admin on {metricsPort}", {
    workers: config.workers,
    host: config.host,
    port: supervisor.port,
    metricsPort: admin.addr.port,
    pids: supervisor.workers().map((w) => w.pid),
  });
  const received = await signal.promise;
  log.info("{signal}: draining {workers} workers (at most {timeout})", {
    signal: received,
    workers: supervisor.workers().length,
    timeout: formatDuration(config.shutdownTimeoutMs),
  });
  const clean = await supervisor.drain();
  await admin.shutdown();
  if (!clean) log.warn("a worker did not drain cleanly");
  return clean ? 0 : 1;
}
