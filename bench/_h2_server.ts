/**
 * The listening part the bench's bare servers share (echo_server.ts, relay_server.ts): a `node:http2`
 * server with the proxy's stream limit, its sessions tracked so that `close()` can drop them.
 *
 * @module
 */

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

/** A bare server that is listening. */
export interface BareServer {
  /** The port it listens on. */
  readonly port: number;
  /** Stops listening and drops every connection. */
  close(): Promise<void>;
}

/** Listens on `host:port` (0 picks a free port) and hands every stream to `onStream`. */
export async function listenBare(
  port: number,
  host: string,
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
): Promise<BareServer> {
  const sessions = new Set<http2.ServerHttp2Session>();
  // Same stream limit as the proxy, so neither is capped by SETTINGS the other does not send.
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1_000_000 }, maxSessionMemory: 512 });
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  server.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
    stream.on("error", () => {});
    onStream(stream, headers);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.destroy();
      return closed;
    },
  };
}
