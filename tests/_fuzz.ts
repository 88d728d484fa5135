/**
 * Seeded fuzzing of the proxy's gRPC port, shared by `tests/fuzz_test.ts` (a short fixed-seed run in CI) and
 * `bench/fuzz.ts` (the long run against the proxy process).
 *
 * Two kinds of case: gRPC-level calls over a raw `node:http2` client (odd paths, content types, metadata,
 * timeouts, encodings and request bodies, END_STREAM or not, resets at random points), and HTTP/2-level
 * byte streams over a plain TCP socket (the preface and then frames of every type, with bad stream ids,
 * lengths, flags, SETTINGS, WINDOW_UPDATEs, HPACK and CONTINUATION floods). Every case is a pure function of
 * `(seed, index)`: {@linkcode generateCase} rebuilds the case a failure names. Every socket and stream is
 * bounded by a timeout, so a case can fail but never hang.
 *
 * Where the answer to a gRPC-level case is known from the protocol alone (HTTP 415 for a request that is
 * not gRPC, INTERNAL for a malformed `grpc-timeout` or frame, UNIMPLEMENTED for an unknown encoding,
 * RESOURCE_EXHAUSTED over the size limit, the echo for a well-formed call), the case carries it, and a
 * different answer is reported as a problem. The expectation is computed by the library, independently of
 * `src/wire/grpc_wire.ts`.
 *
 * This file is the entry point (import from here) and holds the backend, {@linkcode generateCase} and the
 * batch runner; the rest is split by concern:
 * - `_fuzz_core.ts`: the seeded {@linkcode Rng}, case seeds, the case types and shared byte helpers;
 * - `_fuzz_grpc.ts`: the gRPC-level case generator; `_fuzz_grpc_expect.ts`: the answers it expects;
 * - `_fuzz_h2.ts`: HTTP/2 frames and HPACK by hand, {@linkcode rawH2Unary};
 * - `_fuzz_h2_case.ts`: the HTTP/2-level case generator;
 * - `_fuzz_run.ts`: running and checking one case ({@linkcode runCase}).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { caseSeed, type FuzzCase, type FuzzTarget, Rng } from "./_fuzz_core.ts";
import { generateGrpcCase } from "./_fuzz_grpc.ts";
import { generateH2Case } from "./_fuzz_h2_case.ts";
import { type CaseTiming, runCase } from "./_fuzz_run.ts";

export {
  caseSeed,
  type Expectation,
  type FuzzCase,
  type FuzzTarget,
  type GrpcCase,
  type H2Case,
  parseSeed,
  Rng,
} from "./_fuzz_core.ts";
export { rawH2Unary } from "./_fuzz_h2.ts";
export { type CaseResult, type CaseTiming, runCase } from "./_fuzz_run.ts";

// ---------------------------------------------------------------------------------------------------------
// The backend fuzz cases reach

/**
 * Handlers for the test backend that cannot be made to throw by what a fuzz case sends (the default ones
 * `JSON.parse` the request): Unary echoes the request bytes, ServerStream sends two messages, Bidi echoes.
 */
export const FUZZ_HANDLERS = {
  Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
    // Caching metadata the case asks for (x-fuzz-*): its answer's cache-control, age and surrogate-key.
    const headers = new grpc.Metadata();
    const trailers = new grpc.Metadata();
    const asked = (name: string) => call.metadata.get(`x-fuzz-${name}`)[0];
    for (
      const [name, into] of [["cache-control", headers], ["age", headers], [
        "surrogate-key",
        headers,
      ]] as const
    ) {
      const value = asked(name);
      try {
        if (typeof value === "string") into.set(name, value);
      } catch {
        // A value grpc-js will not send: the answer goes without it.
      }
    }
    const trailer = asked("cache-control-trailer");
    try {
      if (typeof trailer === "string") trailers.set("cache-control", trailer);
    } catch {
      // as above
    }
    if (Object.keys(headers.getMap()).length > 0) call.sendMetadata(headers);
    callback(null, call.request, trailers);
  },
  ServerStream(call: grpc.ServerWritableStream<Buffer, Buffer>) {
    call.on("error", () => {});
    call.write(Buffer.from("a"));
    call.write(Buffer.from("b"));
    call.end();
  },
  Bidi(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
    call.on("error", () => {});
    call.on("data", (m: Buffer) => call.write(m));
    call.on("end", () => call.end());
  },
};

/**
 * A grpc-js backend of `test.Test` with {@linkcode FUZZ_HANDLERS} and a ClientStream that counts messages.
 * Unlike `startTestBackend` it keeps nothing per call, so a long run does not grow it.
 */
export async function startFuzzBackend(): Promise<{ address: string; calls: () => number; close(): void }> {
  // Imported here, not at the top: the fuzz clients (bench/fuzz.ts runs them in subprocesses) must not load
  // src/ through _helpers.ts, so that an edit to src/ during a long run cannot break them.
  const { listenLoopback, TEST_SERVICE } = await import("./_helpers.ts");
  let calls = 0;
  const server = new grpc.Server();
  server.addService(TEST_SERVICE, {
    Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      calls++;
      FUZZ_HANDLERS.Unary(call, callback);
    },
    ServerStream(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      calls++;
      FUZZ_HANDLERS.ServerStream(call);
    },
    ClientStream(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      calls++;
      let n = 0;
      call.on("error", () => {});
      call.on("data", () => n++);
      call.on("end", () => callback(null, Buffer.from(String(n))));
    },
    Bidi(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      calls++;
      FUZZ_HANDLERS.Bidi(call);
    },
  });
  const port = await listenLoopback(server);
  return { address: `127.0.0.1:${port}`, calls: () => calls, close: () => server.forceShutdown() };
}

// ---------------------------------------------------------------------------------------------------------
// Cases

/** Case `index` of the run seeded with `seed`. */
export function generateCase(seed: number, index: number, target: FuzzTarget): FuzzCase {
  const rng = new Rng(caseSeed(seed, index));
  return rng.chance(0.55) ? generateGrpcCase(rng, seed, index, target) : generateH2Case(rng, seed, index);
}

/** One line naming a case, enough to find it again (with the seed and index, it can be rebuilt). */
export function describeCase(c: FuzzCase): string {
  const sizes = c.chunks.map((chunk) => chunk.byteLength);
  const shown = sizes.length > 8 ? `${sizes.slice(0, 8).join(",")},…(${sizes.length})` : sizes.join(",");
  return `FUZZ_SEED=${c.seed} case ${c.index} (${c.kind}: ${c.labels.join(" ")}; chunks ${shown})`;
}

// ---------------------------------------------------------------------------------------------------------
// Runs

/** A case whose answer was wrong or missing. */
export interface Problem {
  caseLine: string;
  /** The case's labels, for grouping. */
  labels: readonly string[];
  problem: string;
}

/** Tallies of a run so far. */
export interface FuzzTally {
  cases: number;
  grpcCases: number;
  h2Cases: number;
  /** gRPC-level cases with an expected answer (checked). */
  checked: number;
  outcomes: Record<string, number>;
  grpcStatuses: Record<string, number>;
  problems: Problem[];
}

/** A new, empty tally. */
export function newTally(): FuzzTally {
  return { cases: 0, grpcCases: 0, h2Cases: 0, checked: 0, outcomes: {}, grpcStatuses: {}, problems: [] };
}

/**
 * Runs cases `[first, first + count)` of the run seeded with `seed` against `port`, `concurrency` at a time,
 * and adds them to `tally`. Each case gets its own connection.
 */
export async function runBatch(options: {
  port: number;
  seed: number;
  first: number;
  count: number;
  concurrency: number;
  target: FuzzTarget;
  tally: FuzzTally;
  timing?: CaseTiming;
  /** Run only the cases it accepts (to narrow a finding down); the others are skipped, not counted. */
  only?: (c: FuzzCase) => boolean;
}): Promise<void> {
  const { port, seed, first, count, concurrency, target, tally, timing, only } = options;
  let next = first;
  const end = first + count;
  const worker = async () => {
    while (next < end) {
      const c = generateCase(seed, next++, target);
      if (only !== undefined && !only(c)) continue;
      const result = await runCase(port, c, timing);
      tally.cases++;
      if (c.kind === "grpc") {
        tally.grpcCases++;
        if (c.expect !== undefined && result.outcome !== "refused") tally.checked++;
      } else tally.h2Cases++;
      const outcome = `${c.kind}:${result.outcome}`;
      tally.outcomes[outcome] = (tally.outcomes[outcome] ?? 0) + 1;
      if (result.grpcStatus !== undefined) {
        tally.grpcStatuses[result.grpcStatus] = (tally.grpcStatuses[result.grpcStatus] ?? 0) + 1;
      }
      if (result.problem !== undefined) {
        tally.problems.push({ caseLine: describeCase(c), labels: c.labels, problem: result.problem });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}
