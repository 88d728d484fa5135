/**
 * Replicas for the balancing tests: the example backend (examples/backend.ts) as real processes, each on
 * its own loopback address or port, that a test can SIGKILL or SIGTERM (a graceful GOAWAY); and in-process
 * grpc-js test backends bound to one port on several loopback addresses (127.0.0.2, 127.0.0.3, ...), the
 * way a DNS name's replicas share a port.
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { DEMO_SERVICE } from "../examples/backend.ts";
import { identity, parse, startTestBackend, type TestBackend } from "./_helpers.ts";

const EXAMPLE = new URL("../examples/backend.ts", import.meta.url).pathname;

/** The example backend as a process. */
export interface ReplicaProcess extends AsyncDisposable {
  readonly address: string;
  readonly child: Deno.ChildProcess;
  /** Get calls it served (its Stats method); rejects once it is gone. */
  calls(): Promise<number>;
  /** Sends a signal; resolves with the exit status. */
  stop(signal: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** Starts `examples/backend.ts` on `host` (a free port) and resolves once it listens. */
export async function startReplicaProcess(
  options: { host?: string; delay?: string } = {},
): Promise<ReplicaProcess> {
  const { host = "127.0.0.1", delay = "0" } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", EXAMPLE, "--port", "0", "--host", host, "--delay", delay],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let match: RegExpExecArray | null = null;
  while (match === null) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the example backend exited before listening: ${text}`);
    text += value;
    match = /listening on (\S+):(\d+)/.exec(text);
  }
  // Keep draining its output so that it never blocks on a full pipe.
  const draining = (async () => {
    while (!(await reader.read()).done);
  })();
  const address = `${match[1]}:${match[2]}`;
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  let status: Promise<Deno.CommandStatus> | undefined;
  const stop = (signal: Deno.Signal) => {
    if (status === undefined) {
      try {
        child.kill(signal);
      } catch {
        // exited already
      }
      status = Promise.all([child.status, draining]).then(([s]) => s);
    }
    client.close();
    return status;
  };
  return {
    address,
    child,
    calls: () =>
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          DEMO_SERVICE.Stats.path,
          identity,
          identity,
          Buffer.from("{}"),
          { deadline: Date.now() + 5_000 },
          (err, value) => err ? reject(err) : resolve(Number(parse(value).calls)),
        )
      ),
    stop,
    [Symbol.asyncDispose]: async () => void await stop("SIGKILL"),
  };
}

/**
 * Test backends (tests/_helpers.ts) on `hosts`, all on one port: the first binds a free port, the others
 * the same one on their own address.
 */
export async function startReplicasOnOnePort(hosts: string[]): Promise<TestBackend[]> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const first = await startTestBackend({}, hosts[0]);
    const rest: TestBackend[] = [];
    try {
      for (const host of hosts.slice(1)) rest.push(await startTestBackend({}, host, first.port));
      return [first, ...rest];
    } catch {
      // That port was taken on another address: try another.
      first.close();
      for (const b of rest) b.close();
    }
  }
  throw new Error(`no free port on all of ${hosts.join(", ")}`);
}
