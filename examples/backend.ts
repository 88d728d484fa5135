/**
 * Example backend: a demo gRPC service, defined without .proto files (messages are JSON bytes), that
 * takes a configurable time per call and counts the calls it served.
 *
 * Service `demo.Demo`:
 * - `Get` (unary): `{"key": "..."}` → `{"key", "value", "call"}` after the delay
 * - `Stats` (unary): `{}` → `{"calls": N, "active", "queued", "peakActive"}` (calls to Get so far; Gets
 *   being served now, waiting for a slot now, and most ever served at once)
 * - `Watch` (server streaming): `{"key", "count"}` → `count` messages
 * - `Upload` (client streaming): many `{"key"}` → `{"received": N}`
 * - `Chat` (bidi streaming): echoes each message as it comes
 *
 * With `maxConcurrent` it behaves like a database-bound service: at most N Gets are served at once, later
 * ones wait in arrival order for a free slot (their delay starts when they get one).
 *
 * Run it: `deno run -A examples/backend.ts --port 50051 --delay 50ms [--max-concurrent 16] [--host 127.0.0.2]`
 * (`--port 0` picks a free port; the line it prints names it). SIGTERM or SIGINT stops it gracefully, as a
 * replica being replaced would: a GOAWAY to every client, the calls in progress finished, then exit 0.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { parseFlagsOrExit } from "./_cli.ts";
import { parseDuration } from "../src/util/duration.ts";

/** Options for {@linkcode startBackend}. */
export interface BackendOptions {
  /** Port; 0 picks a free one. @default {0} */
  port?: number;
  /** Address to bind. @default {"127.0.0.1"} */
  host?: string;
  /** Time each Get takes, in ms. @default {0} */
  delayMs?: number;
  /** Most Get calls served at once; later ones queue (FIFO) until one finishes. @default {Infinity} */
  maxConcurrent?: number;
}

/** A running example backend. */
export interface Backend {
  /** The port it listens on. */
  readonly port: number;
  /** Get calls served so far. */
  calls(): number;
  /** Stops at once. */
  close(): void;
  /** Stops gracefully: no new calls (GOAWAY), the ones in progress finish; resolves once they have. */
  shutdown(): Promise<void>;
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const parse = (bytes: Buffer): Record<string, unknown> => JSON.parse(bytes.toString() || "{}");
const identity = (b: Buffer): Buffer => b;
const noop = (): void => {};

/** A grpc-js method definition that carries raw bytes both ways (no .proto, no serializer). */
export function rawMethod(path: string, requestStream: boolean, responseStream: boolean) {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

/** The demo service's definition (usable by clients too). */
export const DEMO_SERVICE = {
  Get: rawMethod("/demo.Demo/Get", false, false),
  Stats: rawMethod("/demo.Demo/Stats", false, false),
  Watch: rawMethod("/demo.Demo/Watch", false, true),
  Upload: rawMethod("/demo.Demo/Upload", true, false),
  Chat: rawMethod("/demo.Demo/Chat", true, true),
} satisfies grpc.ServiceDefinition;

/** Starts the example backend; resolves once it listens. */
export async function startBackend(options: BackendOptions = {}): Promise<Backend> {
  const { port = 0, host = "127.0.0.1", delayMs = 0, maxConcurrent = Infinity } = options;
  if (maxConcurrent !== Infinity && !(Number.isInteger(maxConcurrent) && maxConcurrent >= 1)) {
    throw new RangeError(
      `Cannot start backend: maxConcurrent must be a positive integer or Infinity: received ${maxConcurrent}`,
    );
  }
  let calls = 0;
  // The concurrency limit: `active` Gets hold a slot; the rest wait in `queue`, oldest at `queueHead`.
  let active = 0;
  let peakActive = 0;
  const queue: (() => void)[] = [];
  let queueHead = 0;
  const acquire = (start: () => void) => {
    if (active < maxConcurrent) {
      peakActive = Math.max(peakActive, ++active);
      start();
    } else queue.push(start);
  };
  const release = () => {
    if (queueHead < queue.length) {
      const next = queue[queueHead];
      queue[queueHead++] = noop;
      if (queueHead === queue.length) queue.length = queueHead = 0;
      next();
    } else active--;
  };
  const server = new grpc.Server();
  server.addService(DEMO_SERVICE, {
    Get(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      const n = ++calls;
      const { key } = parse(call.request);
      const reply = () => callback(null, json({ key, value: `value of ${key}`, call: n }));
      if (maxConcurrent === Infinity) {
        // No queue, but Stats still reports how many were served at once.
        peakActive = Math.max(peakActive, ++active);
        const finish = () => {
          active--;
          reply();
        };
        if (delayMs > 0) setTimeout(finish, delayMs);
        else finish();
        return;
      }
      acquire(() => {
        const finish = () => {
          release();
          reply();
        };
        if (delayMs > 0) setTimeout(finish, delayMs);
        else finish();
      });
    },
    Stats(_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      callback(null, json({ calls, active, queued: queue.length - queueHead, peakActive }));
    },
    Watch(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      const { key, count = 3 } = parse(call.request);
      for (let i = 0; i < Number(count); i++) call.write(json({ key, seq: i }));
      call.end();
    },
    Upload(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      let received = 0;
      call.on("data", () => received++);
      call.on("end", () => callback(null, json({ received })));
    },
    Chat(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      call.on("data", (message: Buffer) => call.write(json({ echo: parse(message) })));
      call.on("end", () => call.end());
    },
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(err);
      else resolve(p);
    });
  });
  return {
    port: bound,
    calls: () => calls,
    close: () => server.forceShutdown(),
    shutdown: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

if (import.meta.main) {
  const { values, limit, delayMs } = parseFlagsOrExit(
    "example backend",
    "Usage: deno run -A examples/backend.ts [--port N] [--host ADDR] [--delay DURATION] [--max-concurrent N]",
    () => {
      const { values } = parseArgs({
        args: Deno.args,
        options: {
          port: { type: "string", default: "50051" },
          host: { type: "string", default: "127.0.0.1" },
          delay: { type: "string", default: "0" },
          "max-concurrent": { type: "string" },
        },
      });
      const limit = values["max-concurrent"];
      if (limit !== undefined && !/^[1-9]\d*$/.test(limit)) {
        throw new RangeError(
          `--max-concurrent must be a positive integer: received ${JSON.stringify(limit)}`,
        );
      }
      if (!/^\d+$/.test(values.port!) || Number(values.port) > 65535) {
        throw new RangeError(`--port must be 0-65535: received ${JSON.stringify(values.port)}`);
      }
      return { values, limit, delayMs: parseDuration(values.delay!) };
    },
  );
  const backend = await startBackend({
    port: Number(values.port),
    host: values.host,
    delayMs,
    maxConcurrent: limit === undefined ? undefined : Number(limit),
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => void backend.shutdown().then(() => Deno.exit(0)));
  }
  console.log(
    `example backend listening on ${values.host}:${backend.port} (delay ${values.delay}` +
      (limit === undefined ? ")" : `, at most ${limit} Gets at once)`),
  );
}
