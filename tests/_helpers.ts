/**
 * Test fixtures: a real grpc-js backend on a port-0 loopback socket, the real proxy in front of it, and a
 * real grpc-js client. Nothing here mocks gRPC or HTTP/2.
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { rawMethod } from "../examples/backend.ts";
import { Proxy, type ProxyOptions } from "../src/server/proxy.ts";
import { V8_FLAGS_ARG } from "../src/util/v8_flags.ts";

export const identity = (b: Buffer): Buffer => b;
export const bytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
export const parse = (b: Buffer | undefined): Record<string, unknown> => JSON.parse(b?.toString() || "{}");

/** The test service, `test.Test`; all messages are JSON bytes. */
export const TEST_SERVICE = {
  Unary: rawMethod("/test.Test/Unary", false, false),
  ServerStream: rawMethod("/test.Test/ServerStream", false, true),
  ClientStream: rawMethod("/test.Test/ClientStream", true, false),
  Bidi: rawMethod("/test.Test/Bidi", true, true),
} satisfies grpc.ServiceDefinition;

type UnaryHandler = (
  call: grpc.ServerUnaryCall<Buffer, Buffer>,
  callback: grpc.sendUnaryData<Buffer>,
) => void;

/** Handlers a test may replace; defaults echo. */
export interface TestHandlers {
  Unary?: UnaryHandler;
  ServerStream?: (call: grpc.ServerWritableStream<Buffer, Buffer>) => void;
  Bidi?: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => void;
}

/** A running test backend. */
export interface TestBackend {
  readonly port: number;
  readonly address: string;
  /** Calls received per method name. */
  readonly calls: Record<string, number>;
  /** Metadata of every Unary call received, in order. */
  readonly metadata: grpc.Metadata[];
  close(): void;
}

/**
 * Starts the test backend. Unary echoes `{ echo: request, auth: authorization, n: call number }`; the
 * streaming methods behave like the example backend's.
 */
export async function startTestBackend(
  handlers: TestHandlers = {},
  host = "127.0.0.1",
  port = 0,
): Promise<TestBackend> {
  const calls: Record<string, number> = { Unary: 0, ServerStream: 0, ClientStream: 0, Bidi: 0 };
  const metadata: grpc.Metadata[] = [];
  const server = new grpc.Server();
  server.addService(TEST_SERVICE, {
    Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      calls.Unary++;
      metadata.push(call.metadata);
      if (handlers.Unary) return handlers.Unary(call, callback);
      callback(
        null,
        bytes({ echo: parse(call.request), auth: call.metadata.get("authorization")[0], n: calls.Unary }),
      );
    },
    ServerStream(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      calls.ServerStream++;
      if (handlers.ServerStream) return handlers.ServerStream(call);
      const { count = 3 } = parse(call.request);
      for (let i = 0; i < Number(count); i++) call.write(bytes({ seq: i }));
      call.end();
    },
    ClientStream(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      calls.ClientStream++;
      const received: unknown[] = [];
      call.on("data", (m: Buffer) => received.push(parse(m)));
      call.on("end", () => callback(null, bytes({ received })));
    },
    Bidi(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      calls.Bidi++;
      if (handlers.Bidi) return handlers.Bidi(call);
      call.on("data", (m: Buffer) => call.write(bytes({ echo: parse(m) })));
      call.on("end", () => call.end());
    },
  });
  const bound = await listenLoopback(server, host, port);
  return { port: bound, address: `${host}:${bound}`, calls, metadata, close: () => server.forceShutdown() };
}

/** Binds a grpc-js server to a free loopback port (plaintext) and resolves with the port. */
export function listenLoopback(server: grpc.Server, host = "127.0.0.1", port = 0): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(
      `${host}:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
}

/** A backend, the proxy in front of it and a client of the proxy; dispose closes all three. */
export interface Stack extends AsyncDisposable {
  backend: TestBackend;
  proxy: Proxy;
  client: grpc.Client;
}

/** Starts backend + proxy + client. */
export async function startStack(
  options: { handlers?: TestHandlers; proxy?: Partial<ProxyOptions> } = {},
): Promise<Stack> {
  const backend = await startTestBackend(options.handlers);
  const proxy = await Proxy.start({ backend: backend.address, host: "127.0.0.1", port: 0, ...options.proxy });
  const client = newClient(proxy.port);
  return {
    backend,
    proxy,
    client,
    async [Symbol.asyncDispose]() {
      client.close();
      await proxy.close();
      backend.close();
    },
  };
}

/** A grpc-js client of `127.0.0.1:port`. */
export function newClient(port: number): grpc.Client {
  return new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

/** What a unary call came back with. */
export interface UnaryResult {
  error: grpc.ServiceError | null;
  response: Buffer | undefined;
  headers: grpc.Metadata | undefined;
  status: grpc.StatusObject;
}

/** Makes a unary call and resolves with everything it returned (never rejects). */
export function unary(
  client: grpc.Client,
  path: string,
  request: unknown,
  options: { metadata?: grpc.Metadata; deadline?: number; onCall?: (call: grpc.ClientUnaryCall) => void } =
    {},
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let error: grpc.ServiceError | null = null;
    let response: Buffer | undefined;
    let headers: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(
      path,
      identity,
      identity,
      bytes(request),
      options.metadata ?? new grpc.Metadata(),
      options.deadline === undefined ? {} : { deadline: options.deadline },
      (err, value) => {
        error = err;
        response = value;
      },
    );
    call.on("metadata", (md) => headers = md);
    call.on("status", (status) => queueMicrotask(() => resolve({ error, response, headers, status })));
    options.onCall?.(call);
  });
}

/** Metadata with the given entries. */
export function metadata(entries: Record<string, string | Buffer>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries)) md.add(key, value);
  return md;
}

/** A promise with its resolver, for holding a backend until the test says go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: resolve };
}

/**
 * Resolves when `condition()` holds, checking after each turn of the event loop; rejects after `limitMs`
 * so a bug fails as an assertion rather than a hung suite. This is synchronization, not timing.
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  limitMs = 20_000,
): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** What a raw HTTP/2 call came back with. */
export interface RawResult {
  headers: Record<string, unknown>;
  body: Uint8Array;
  trailers: Record<string, unknown>;
  /** grpc-status from trailers, or from headers for a trailers-only response. */
  grpcStatus: number | undefined;
}

/**
 * One call over a raw `node:http2` client, for what grpc-js would not send: malformed frames, odd headers,
 * or a `grpc-timeout` without a client-side deadline.
 */
export async function rawCall(
  port: number,
  path: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawResult> {
  const http2 = await import("node:http2");
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<RawResult>((resolve, reject) => {
      session.on("error", reject);
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      let responseHeaders: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      const chunks: Uint8Array[] = [];
      stream.on("response", (h) => responseHeaders = { ...h });
      stream.on("trailers", (t) => trailers = { ...t });
      stream.on("data", (c: Uint8Array) => chunks.push(c));
      stream.on("error", reject);
      stream.on("close", () => {
        const status = trailers["grpc-status"] ?? responseHeaders["grpc-status"];
        resolve({
          headers: responseHeaders,
          body: Buffer.concat(chunks),
          trailers,
          grpcStatus: status === undefined ? undefined : Number(status),
        });
      });
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

/** A gRPC length-prefixed frame around JSON of `value`. */
export function frame(value: unknown): Uint8Array {
  const message = bytes(value);
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A `deno run main.ts` command with a clean environment plus `env`. */
export function collapserCommand(args: string[], env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    // As users run it: with the proxy's V8 flags (src/util/v8_flags.ts).
    args: ["run", V8_FLAGS_ARG, "-A", MAIN, ...args],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** The proxy running as its own process, with the ports its start-up log line reported. */
export interface CollapserProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  port: number;
  metricsPort: number;
  /** Every log line so far, parsed. */
  logs: Record<string, unknown>[];
  /** Standard error lines that were not JSON (a runtime abort, a panic). */
  otherOutput: string[];
  /** Sends a signal to the process. */
  signal(name: Deno.Signal): void;
  /** Sends SIGTERM unless a signal was sent already, and resolves with the exit status (once). */
  stop(): Promise<Deno.CommandStatus>;
}

/** Starts main.ts on port-0 listeners and waits for its start-up log line. */
export async function startCollapserProcess(
  args: string[],
  env: Record<string, string> = {},
): Promise<CollapserProcess> {
  const child = collapserCommand(["--port", "0", "--metrics-port", "0", "--host", "127.0.0.1", ...args], env)
    .spawn();
  const logs: Record<string, unknown>[] = [];
  const otherOutput: string[] = [];
  const firstLine = Promise.withResolvers<Record<string, unknown>>();
  const reading = (async () => {
    let buffered = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const entry = JSON.parse(line);
          logs.push(entry);
          // The start-up line names the ports (lines before it: e.g. the shared tier's first state).
          // (With --workers, each worker logs its own, with its `worker` index; the supervisor's comes last.)
          if (typeof entry.properties?.port === "number" && entry.properties.worker === undefined) {
            firstLine.resolve(entry);
          }
        } catch {
          // Not a log line: Deno's own notices ("Blocking waiting for file lock on node_modules directory"
          // while another process sets it up) are harmless; a crash shows here and ends the process, which
          // rejects below. Tests that must see no such output check otherOutput.
          otherOutput.push(line);
        }
      }
    }
    if (buffered) otherOutput.push(buffered);
    // Say what it did print: its log lines and anything else (a crash, a refused flag) are the reason.
    const printed = [...logs.map((entry) => JSON.stringify(entry)), ...otherOutput].join("\n");
    firstLine.reject(new Error(`collapser exited before its start-up line; it printed:\n${printed}`));
  })();
  const startup = await firstLine.promise;
  const properties = startup.properties as Record<string, number>;
  let status: Promise<Deno.CommandStatus> | undefined;
  let signalled = false;
  const signal = (name: Deno.Signal) => {
    // Only a stopping signal counts: after a SIGHUP (reload) the process still has to be stopped.
    if (name === "SIGTERM" || name === "SIGINT") signalled = true;
    try {
      child.kill(name);
    } catch {
      // already exited
    }
  };
  const stop = () => {
    if (!status) {
      // A second signal would cut a drain short: send one only if the test has not.
      if (!signalled) signal("SIGTERM");
      status = Promise.all([child.status, reading, child.stdout.cancel()]).then(([s]) => s);
    }
    return status;
  };
  return {
    child,
    port: properties.port,
    metricsPort: properties.metricsPort,
    logs,
    otherOutput,
    signal,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** GET on the admin listener; resolves with status and body. */
export async function admin(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}
