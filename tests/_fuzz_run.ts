/**
 * Running one fuzz case (see `tests/_fuzz.ts`) against the proxy: a gRPC-level case over a raw `node:http2`
 * client, an HTTP/2-level one over a plain TCP socket, each bounded by timeouts; and checking a gRPC-level
 * answer against the case's expectation.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Expectation, FuzzCase, GrpcCase, H2Case } from "./_fuzz_core.ts";

/** How a case ended. */
export interface CaseResult {
  /** answered: a gRPC status or HTTP status came back; reset: the stream was reset; open: no end was
   * expected and none came; refused: node:http2 would not send it; closed/idle: a raw socket's end. */
  outcome: "answered" | "reset" | "open" | "refused" | "sessionError" | "closed" | "idle" | "timeout";
  httpStatus?: number;
  grpcStatus?: number;
  /** What is wrong (an answer the protocol rules out, or no answer in time), if anything. */
  problem?: string;
}

/** Bounds of one case. */
export interface CaseTiming {
  /** A complete call must be answered within this. @default {5_000} */
  answerMs?: number;
  /** How long a call that never ends its request is left open. @default {150} */
  openMs?: number;
  /** A raw socket is closed once nothing has come back for this long after the last write. @default {40} */
  idleMs?: number;
  /** Hard bound on a raw socket. @default {3_000} */
  socketMs?: number;
}

/** Runs one case against the proxy on `port`; never rejects, never outlives its timeouts. */
export function runCase(port: number, c: FuzzCase, timing: CaseTiming = {}): Promise<CaseResult> {
  return c.kind === "grpc" ? runGrpcCase(port, c, timing) : runH2Case(port, c, timing);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function runGrpcCase(port: number, c: GrpcCase, timing: CaseTiming): Promise<CaseResult> {
  const answerMs = timing.answerMs ?? 5_000;
  const openMs = timing.openMs ?? 150;
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const done = Promise.withResolvers<CaseResult>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let responseHeaders: http2.IncomingHttpHeaders | undefined;
  let trailers: http2.IncomingHttpHeaders | undefined;
  const body: Uint8Array[] = [];
  let bodyBytes = 0;
  let sessionError = false;
  session.on("error", () => sessionError = true);
  let stream: http2.ClientHttp2Stream | undefined;
  try {
    try {
      stream = session.request(c.headers as http2.OutgoingHttpHeaders, { endStream: false });
    } catch {
      // node:http2 validated the headers and would not send them: nothing reached the proxy.
      return { outcome: "refused" };
    }
    const expectsEnd = c.endStream && c.reset.at === "none";
    timer = setTimeout(
      () => done.resolve({ outcome: expectsEnd ? "timeout" : "open" }),
      expectsEnd ? answerMs : openMs,
    );
    stream.on("error", () => {});
    stream.on("response", (headers) => {
      responseHeaders = headers;
      if (c.reset.at === "afterHeaders" && !stream!.destroyed) stream!.close(c.reset.code);
    });
    stream.on("trailers", (headers) => trailers = headers);
    stream.on("data", (chunk: Uint8Array) => {
      if (bodyBytes < 1 << 20) body.push(chunk);
      bodyBytes += chunk.byteLength;
    });
    stream.on("close", () => {
      const status = trailers?.["grpc-status"] ?? responseHeaders?.["grpc-status"];
      const httpStatus = responseHeaders?.[":status"];
      done.resolve({
        outcome: responseHeaders !== undefined ? "answered" : sessionError ? "sessionError" : "reset",
        httpStatus: httpStatus === undefined ? undefined : Number(httpStatus),
        grpcStatus: status === undefined ? undefined : Number(status),
      });
    });
    void (async () => {
      try {
        if (c.reset.at === "beforeBody") return stream.close(c.reset.code);
        for (let i = 0; i < c.chunks.length; i++) {
          if (c.gapsMs[i] > 0) await sleep(c.gapsMs[i]);
          if (stream.destroyed) return;
          if (i === c.reset.afterChunks) {
            if (c.reset.at === "midBody") return stream.close(c.reset.code);
            if (c.reset.at === "destroySession") return session.destroy();
          }
          stream.write(c.chunks[i]);
        }
        if (c.reset.at === "destroySession") return session.destroy();
        if (c.endStream && !stream.destroyed) stream.end();
      } catch {
        // the stream went away under us: that is the case's business
      }
    })();
    const result = await done.promise;
    if (result.outcome === "timeout") {
      result.problem = `no answer within ${answerMs} ms to a complete request (a hang?)`;
    } else if (c.expect !== undefined && result.outcome !== "refused") {
      result.problem = check(c.expect, result, Buffer.concat(body));
    }
    return result;
  } finally {
    clearTimeout(timer);
    session.destroy();
    // Deno 2.8.3's node:http2 keeps every session reachable after it has closed (~10 KB each, measured with
    // a bare client and server), and with it the listeners above, which hold the case and its answer
    // (~85 KB a case here): a long run ran out of heap. Without the listeners only the session is kept.
    for (const emitter of [stream, session]) {
      emitter?.removeAllListeners();
      emitter?.on("error", () => {});
    }
  }
}

/** What is wrong with `result` given `expect`, or undefined. */
function check(expect: Expectation, result: CaseResult, body: Uint8Array): string | undefined {
  const got = `got ${result.outcome} HTTP ${result.httpStatus} grpc-status ${result.grpcStatus}`;
  if (result.outcome !== "answered") return `expected an answer (${JSON.stringify(expect)}); ${got}`;
  if (expect.httpStatus !== undefined && result.httpStatus !== expect.httpStatus) {
    return `expected HTTP ${expect.httpStatus}; ${got}`;
  }
  if (expect.grpcStatus !== undefined && result.grpcStatus !== expect.grpcStatus) {
    return `expected grpc-status ${expect.grpcStatus}; ${got}`;
  }
  if (expect.anyOf !== undefined && !expect.anyOf.includes(result.grpcStatus ?? -1)) {
    return `expected grpc-status in ${JSON.stringify(expect.anyOf)}; ${got}`;
  }
  if (expect.notOk && (result.grpcStatus === undefined || result.grpcStatus === 0)) {
    return `expected a non-OK grpc-status; ${got}`;
  }
  if (expect.messages !== undefined) {
    const messages = splitFrames(body);
    const same = messages !== undefined && messages.length === expect.messages.length &&
      messages.every((m, i) => Buffer.from(m).equals(Buffer.from(expect.messages![i])));
    if (!same) {
      return `expected the messages ${show(expect.messages)}; got ${
        messages ? show(messages) : "bad framing"
      } ` +
        `(${body.byteLength} bytes)`;
    }
  }
  return undefined;
}

function show(messages: readonly Uint8Array[]): string {
  return JSON.stringify(messages.map((m) => new TextDecoder().decode(m.subarray(0, 60))));
}

/** Uncompressed gRPC frames → messages; undefined if the bytes are not whole uncompressed frames. */
function splitFrames(bytes: Uint8Array): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (bytes.byteLength - at < 5 || bytes[at] !== 0) return undefined;
    const length = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    if (bytes.byteLength - at - 5 < length) return undefined;
    out.push(bytes.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return out;
}

/**
 * Writes a raw case to a plain TCP socket, reading and discarding whatever comes back, until the proxy
 * closes the connection, nothing has come back for `idleMs` after the last write, or `socketMs` has passed.
 *
 * node:net rather than Deno.connect: on Deno 2.8.3 closing a Deno.Conn does not cancel a pending read, and
 * the socket stays open until the peer closes it (measured: the server never saw EOF), so a raw socket to a
 * proxy that waits for more frames could be neither read nor closed. node:net's destroy() closes it.
 */
async function runH2Case(port: number, c: H2Case, timing: CaseTiming): Promise<CaseResult> {
  const idleMs = timing.idleMs ?? 40;
  const socketMs = timing.socketMs ?? 3_000;
  const started = Date.now();
  const socket = net.connect({ port, host: "127.0.0.1" });
  let closed = false;
  let last = Date.now();
  socket.on("data", () => last = Date.now());
  socket.on("error", () => {});
  socket.on("close", () => closed = true);
  try {
    const connected = await new Promise<boolean>((resolve) => {
      socket.once("connect", () => resolve(true));
      socket.once("close", () => resolve(false));
      setTimeout(() => resolve(false), socketMs);
    });
    if (!connected) return { outcome: "closed", problem: "cannot connect to the proxy" };
    for (let i = 0; i < c.chunks.length && !closed; i++) {
      if (c.gapsMs[i] > 0) await sleep(c.gapsMs[i]);
      if (!closed) socket.write(c.chunks[i]);
      last = Date.now();
    }
    while (true) {
      await sleep(5);
      if (closed) return { outcome: "closed" };
      if (Date.now() - last >= idleMs) return { outcome: "idle" };
      // The proxy kept answering without closing (e.g. PING after PING): not a failure, just enough.
      if (Date.now() - started >= socketMs) return { outcome: "timeout" };
    }
  } finally {
    socket.destroy();
  }
}
