/**
 * The runtime's ceiling for a proxy that has to call the backend: a bare `node:http2` relay on Deno that
 * forwards every call to the backend over one HTTP/2 session and relays the answer back (headers, DATA,
 * trailers), and nothing else: no key, no cache, no collapsing, no metrics, no logs, no deadlines. It uses
 * the same per-turn write batching as the proxy (src/wire/cork.ts), so the gap between it and the proxy on
 * unique keys is what the proxy's own work costs, and the gap between it and nginx is the runtime's.
 *
 * Run it: `deno run -A bench/relay_server.ts --port 50061 --backend 127.0.0.1:50051`
 *
 * @module
 */

import * as http2 from "node:http2";
import { parseArgs } from "node:util";
import { type BareServer, listenBare } from "./_h2_server.ts";
import { corkTurn } from "../src/wire/cork.ts";

/** A running relay. */
export type RelayServer = BareServer;

/** Headers that describe one hop, not the call. */
const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "host"]);

function forwardable(headers: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (key.charCodeAt(0) !== 0x3a && !HOP.has(key)) out[key] = headers[key];
  }
  return out;
}

/** Starts the relay in front of `backend` (`host:port`); resolves once it listens. */
export async function startRelayServer(
  options: { backend: string; port?: number; host?: string },
): Promise<RelayServer> {
  const { backend, port = 0, host = "127.0.0.1" } = options;
  let upstream: http2.ClientHttp2Session | undefined;
  const connected = () => {
    if (upstream === undefined || upstream.closed || upstream.destroyed) {
      upstream = http2.connect(`http://${backend}`, { maxSessionMemory: 512 });
      upstream.on("error", () => {});
    }
    return upstream;
  };
  const server = await listenBare(port, host, (stream, headers) => {
    const session = connected();
    corkTurn(session);
    const call = session.request({ ...forwardable(headers), ":method": "POST", ":path": headers[":path"] });
    call.on("error", () => {});
    stream.on("data", (chunk) => call.write(chunk));
    stream.on("end", () => call.end());
    let trailers: http2.OutgoingHttpHeaders = { "grpc-status": "2", "grpc-message": "no status" };
    let responded = false;
    call.on("response", (response) => {
      if (stream.destroyed || stream.closed) return;
      responded = true;
      corkTurn(stream.session);
      if (response["grpc-status"] !== undefined) {
        stream.respond({ ...forwardable(response), ":status": 200 }, { endStream: true });
        return;
      }
      stream.respond({ ...forwardable(response), ":status": 200 }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers(trailers));
      for (const chunk of early.splice(0)) stream.write(chunk);
    });
    const early: Uint8Array[] = [];
    call.on("data", (chunk: Uint8Array) => {
      // Deno 2.8.3's node:http2 client emits the first DATA before 'response': hold it until then.
      if (!responded) return void early.push(chunk);
      corkTurn(stream.session);
      if (!stream.destroyed && !stream.closed) stream.write(chunk);
    });
    call.on("trailers", (received) => trailers = forwardable(received));
    call.on("close", () => {
      if (stream.destroyed || stream.closed) return;
      corkTurn(stream.session);
      if (responded) {
        stream.end();
      } else {
        stream.respond({ ":status": 200, "grpc-status": "14", "grpc-message": "relay failed" }, {
          endStream: true,
        });
      }
    });
  });
  return {
    port: server.port,
    close: () => {
      upstream?.destroy();
      return server.close();
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "50061" },
      host: { type: "string", default: "127.0.0.1" },
      backend: { type: "string" },
    },
  });
  if (!values.backend) {
    console.error("Usage: deno run -A bench/relay_server.ts --backend HOST:PORT [--port N] [--host H]");
    Deno.exit(1);
  }
  const server = await startRelayServer({
    backend: values.backend,
    port: Number(values.port),
    host: values.host,
  });
  console.log(`relay server listening on ${values.host}:${server.port}`);
  const stop = () => server.close().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
