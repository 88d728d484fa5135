/**
 * `--workers N`: one proxy process per core on one port. The supervisor starts N workers — this same
 * program, run the same way, with `--reuse-port` so the kernel spreads connections over them — and keeps
 * them: a worker that dies is started again (with a backoff), a worker that asks to be recycled
 * (recycle.ts) gets a replacement first and is drained once the replacement listens, and SIGTERM drains
 * them all before the supervisor exits 0. The supervisor itself holds no gRPC code and no connection of a
 * client: it is small, and it stays PID 1 in a container while workers come and go.
 *
 * @module
 */

import { log } from "../util/log.ts";
import { formatDuration } from "../util/duration.ts";
import { V8_FLAGS_ARG } from "../util/v8_flags.ts";
import { parseMessage, WORKER_ENV } from "./protocol.ts";

/** Options for {@linkcode Supervisor}. */
export interface SupervisorOptions {
  /** How many workers. */
  readonly workers: number;
  /** The command that starts a worker: the executable and the arguments before the worker's own flags. */
  readonly command: readonly string[];
  /** The worker's flags (the supervisor's own). `--reuse-port` is added. */
  readonly args: readonly string[];
  /** Bound on a drain (a worker's own shutdown timeout), plus a margin, in ms. */
  readonly shutdownTimeoutMs: number;
  /** First restart delay after a worker died, doubled each time it dies young, in ms. @default {100} */
  readonly restartDelayMs?: number;
}

/** Counters of the supervisor, for its metrics. */
export interface SupervisorStats {
  /** Workers listening now. */
  listening: number;
  /** Workers started again after dying, since start. */
  restarts: number;
  /** Workers replaced on their own request (recycled), since start. */
  recycles: number;
}

/** One worker process and what is known of it. */
export interface WorkerInfo {
  /** The worker's slot, 0 to N-1 (a replacement takes its predecessor's slot). */
  readonly slot: number;
  readonly pid: number;
  /** The worker's admin port on 127.0.0.1, once it listens. */
  adminPort: number | undefined;
}

interface Worker extends WorkerInfo {
  readonly child: Deno.ChildProcess;
  readonly startedAt: number;
  /** Told to drain (recycled or shutting down): its exit is expected. */
  draining: boolean;
  listening: PromiseWithResolvers<void>;
  exited: Promise<Deno.CommandStatus>;
}

/** A worker that lived less than this was "young": its restart delay doubles. */
const YOUNG_MS = 10_000;
const MAX_RESTART_DELAY_MS = 5_000;

/** Starts and keeps the workers. */
export class Supervisor {
  readonly #options: SupervisorOptions;
  /** The current worker of each slot. */
  readonly #slots: (Worker | undefined)[];
  /** Every worker process not yet exited (current ones and drained ones finishing). */
  readonly #alive = new Set<Worker>();
  readonly #delays: number[];
  #stopping = false;
  #port: number | undefined;
  readonly #stats: SupervisorStats = { listening: 0, restarts: 0, recycles: 0 };

  constructor(options: SupervisorOptions) {
    if (!(options.workers >= 1)) throw new RangeError(`Cannot create Supervisor: workers must be >= 1`);
    this.#options = options;
    this.#slots = new Array(options.workers).fill(undefined);
    this.#delays = new Array(options.workers).fill(options.restartDelayMs ?? 100);
  }

  /**
   * Starts every worker; resolves once all listen, or rejects if one exits before it does. The first one
   * binds the port (with `--port 0`, a free one) and the others, and every replacement, that same port.
   */
  async start(): Promise<void> {
    const started = (worker: Worker) =>
      Promise.race([
        worker.listening.promise,
        worker.exited.then((status) => {
          throw new Error(`worker ${worker.slot} exited with ${describe(status)} before it listened`);
        }),
      ]);
    const first = this.#spawn(0);
    await started(first);
    await Promise.all(this.#slots.slice(1).map((_, i) => started(this.#spawn(i + 1))));
  }

  /** The port the workers share (known once the first one listens). */
  get port(): number | undefined {
    return this.#port;
  }

  /** The current workers (for the admin port). */
  workers(): WorkerInfo[] {
    return this.#slots.filter((w): w is Worker => w !== undefined && !w.draining);
  }

  /** A snapshot of the counters. */
  get stats(): SupervisorStats {
    return { ...this.#stats, listening: this.workers().filter((w) => w.adminPort !== undefined).length };
  }

  /**
   * Drains every worker (SIGTERM: each stops taking calls, finishes what it has and exits) and resolves
   * with whether all exited cleanly within the shutdown timeout; those that did not are killed.
   */
  async drain(): Promise<boolean> {
    this.#stopping = true;
    const all = [...this.#alive];
    for (const worker of all) this.#signal(worker, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#options.shutdownTimeoutMs);
    });
    const exits = Promise.all(all.map((worker) => worker.exited));
    const result = await Promise.race([exits, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") {
      for (const worker of this.#alive) this.#signal(worker, "SIGKILL");
      await exits;
      return false;
    }
    return result.every((status) => status.success);
  }

  /** Passes a signal on to every worker (a second Ctrl-C: workers exit at once). */
  forward(signal: Deno.Signal): void {
    for (const worker of this.#alive) this.#signal(worker, signal);
  }

  #spawn(slot: number): Worker {
    const [executable, ...prefix] = this.#options.command;
    const child = new Deno.Command(executable, {
      // Flags repeat with the last one winning: the shared port, once known, overrides the given one.
      args: [
        ...prefix,
        ...this.#options.args,
        "--reuse-port",
        ...(this.#port === undefined ? [] : ["--port", String(this.#port)]),
      ],
      env: { [WORKER_ENV]: String(slot) },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const worker: Worker = {
      slot,
      pid: child.pid,
      child,
      startedAt: performance.now(),
      adminPort: undefined,
      draining: false,
      listening: Promise.withResolvers<void>(),
      exited: child.status,
    };
    worker.listening.promise.catch(() => {});
    this.#slots[slot] = worker;
    this.#alive.add(worker);
    this.#read(worker);
    worker.exited.then((status) => this.#exited(worker, status));
    return worker;
  }

  /** Reads a worker's standard output: messages to the supervisor, and anything else passed on. */
  async #read(worker: Worker): Promise<void> {
    const encoder = new TextEncoder();
    let buffered = "";
    try {
      for await (const chunk of worker.child.stdout.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        let newline;
        while ((newline = buffered.indexOf("\n")) !== -1) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          const message = parseMessage(line);
          if (message === undefined) Deno.stdout.writeSync(encoder.encode(line + "\n"));
          else if (message.kind === "listening") {
            worker.adminPort = message.adminPort;
            this.#port ??= message.port;
            worker.listening.resolve();
          } else this.#recycle(worker, message.reason);
        }
      }
    } catch {
      // the worker is gone
    }
  }

  /** A worker asked to be replaced: start its replacement, and drain it once the replacement listens. */
  async #recycle(worker: Worker, reason: string): Promise<void> {
    if (this.#stopping || worker.draining || this.#slots[worker.slot] !== worker) return;
    log.info("worker {slot} (pid {pid}) is recycled: {reason}", {
      slot: worker.slot,
      pid: worker.pid,
      reason,
    });
    worker.draining = true; // its exit is expected from now on, and it is no longer the slot's worker
    const replacement = this.#spawn(worker.slot);
    const started = await Promise.race([
      replacement.listening.promise.then(() => true),
      replacement.exited.then(() => false),
    ]);
    if (!started) {
      // The replacement's own exit restarts the slot; the old worker serves meanwhile.
      log.warn("worker {slot}'s replacement did not start; the old one goes on", { slot: worker.slot });
      worker.draining = false;
      if (this.#slots[worker.slot] === undefined) this.#slots[worker.slot] = worker;
      return;
    }
    this.#stats.recycles++;
    this.#signal(worker, "SIGTERM");
  }

  #exited(worker: Worker, status: Deno.CommandStatus): void {
    this.#alive.delete(worker);
    worker.listening.reject(new Error("exited"));
    const current = this.#slots[worker.slot] === worker;
    if (current) this.#slots[worker.slot] = undefined;
    if (this.#stopping || worker.draining || !current) return;
    const lived = performance.now() - worker.startedAt;
    const delay = this.#delays[worker.slot];
    this.#delays[worker.slot] = lived < YOUNG_MS
      ? Math.min(delay * 2, MAX_RESTART_DELAY_MS)
      : (this.#options.restartDelayMs ?? 100);
    log.warn("worker {slot} (pid {pid}) exited with {status}; starting it again in {delay}", {
      slot: worker.slot,
      pid: worker.pid,
      status: describe(status),
      delay: formatDuration(delay),
    });
    setTimeout(() => {
      if (this.#stopping || this.#slots[worker.slot] !== undefined) return;
      this.#stats.restarts++;
      this.#spawn(worker.slot);
    }, delay);
  }

  #signal(worker: Worker, signal: Deno.Signal): void {
    try {
      worker.child.kill(signal);
    } catch {
      // already gone
    }
  }
}

function describe(status: Deno.CommandStatus): string {
  return status.signal ? `signal ${status.signal}` : `code ${status.code}`;
}

/**
 * The command that runs this program again with the permissions it has: a `deno compile`d binary is run as
 * itself (its flags are built in); under `deno run` each permission granted to this process is granted to
 * the worker, with the proxy's V8 flags (util/v8_flags.ts). (Deno does not let a program read its own
 * command line without --allow-all, so other V8 flags given with `--v8-flags` do not carry over: give them
 * as `DENO_V8_FLAGS`, which workers inherit.)
 */
export function selfCommand(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  const names = ["net", "env", "read", "write", "run", "sys", "ffi"] as const;
  const granted = names.filter((name) => Deno.permissions.querySync({ name }).state === "granted");
  const flags = granted.length === names.length ? ["--allow-all"] : granted.map((name) => `--allow-${name}`);
  return [Deno.execPath(), "run", V8_FLAGS_ARG, ...flags, new URL(Deno.mainModule).pathname];
}
