/**
 * The runtime's ceiling for the load harness: a bare `node:http2` server on Deno that answers every request
 * with one fixed gRPC response (response headers, one length-prefixed message, trailers `grpc-status: 0`),
 * after reading the request to its end, as any unary gRPC server must. No decoding, no hashing, no cache:
 * whatever the proxy does on a cache hit costs more than this.
 *
 * Run it: `deno run -A bench/echo_server.ts --port 50060`
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { type BareServer, listenBare } from "./_h2_server.ts";

/** The one message every call gets back (JSON bytes, like the example backend's answers). */
export const ECHO_MESSAGE = JSON.stringify({ key: "echo", value: "value of echo" });

/** A running echo server. */
export type EchoServer = BareServer;

/** Options for {@linkcode startEchoServer}. */
export interface EchoServerOptions {
  /** Port; 0 picks a free one. @default {0} */
  port?: number;
  /** Address to bind. @default {"127.0.0.1"} */
  host?: string;
}

/** Starts the echo server; resolves once it listens. */
export async function startEchoServer(options: EchoServerOptions = {}): Promise<EchoServer> {
  const { port = 0, host = "127.0.0.1" } = options;
  const body = Buffer.from(ECHO_MESSAGE);
  const frame = Buffer.alloc(5 + body.byteLength);
  frame.writeUInt32BE(body.byteLength, 1);
  body.copy(frame, 5);
  return await listenBare(port, host, (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "50060" }, host: { type: "string", default: "127.0.0.1" } },
  });
  const server = await startEchoServer({ port: Number(values.port), host: values.host });
  console.log(`echo server listening on ${values.host}:${server.port}`);
  const stop = () => server.close().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
