/**
 * Example client: fires a herd of identical calls at a target (the proxy, or the backend directly) and
 * prints how many calls it made vs how many reached the backend.
 *
 * Run it: `deno run -A examples/client.ts --target 127.0.0.1:50052 --backend 127.0.0.1:50051 --calls 1000`
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { parseFlagsOrExit } from "./_cli.ts";

const identity = (b: Buffer): Buffer => b;

/** What one herd did. */
export interface HerdResult {
  /** Calls the client made. */
  calls: number;
  /** Calls that came back OK. */
  ok: number;
  /** Get calls the backend served during the herd. */
  backendCalls: number;
  /** Distinct answers the callers got. */
  distinctAnswers: number;
  /** Wall time of the herd, in ms. */
  elapsedMs: number;
}

/** Asks the example backend how many Get calls it has served. */
export function backendCalls(client: grpc.Client): Promise<number> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      "/demo.Demo/Stats",
      identity,
      identity,
      Buffer.from("{}"),
      (err, value) => err ? reject(err) : resolve(JSON.parse(value!.toString()).calls),
    );
  });
}

/**
 * Sends `calls` identical `demo.Demo/Get` calls at once to `target`, counting backend calls through a
 * direct connection to `backend`.
 */
export async function herd(
  options: { target: string; backend: string; calls: number; key?: string },
): Promise<
  HerdResult
> {
  const target = new grpc.Client(options.target, grpc.credentials.createInsecure());
  const backend = new grpc.Client(options.backend, grpc.credentials.createInsecure());
  try {
    const before = await backendCalls(backend);
    const request = Buffer.from(JSON.stringify({ key: options.key ?? "popular-item" }));
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: options.calls }, () =>
        new Promise<string | undefined>((resolve) => {
          target.makeUnaryRequest(
            "/demo.Demo/Get",
            identity,
            identity,
            request,
            (err, value) => resolve(err ? undefined : value!.toString()),
          );
        })),
    );
    const elapsedMs = performance.now() - started;
    const ok = answers.filter((a) => a !== undefined);
    return {
      calls: options.calls,
      ok: ok.length,
      backendCalls: (await backendCalls(backend)) - before,
      distinctAnswers: new Set(ok).size,
      elapsedMs,
    };
  } finally {
    target.close();
    backend.close();
  }
}

/** One line saying what a herd did. */
export function describe(label: string, r: HerdResult): string {
  const ratio = r.backendCalls > 0 ? (r.calls / r.backendCalls).toFixed(1) : "∞";
  return `${label}: ${r.calls} calls (${r.ok} OK, ${r.distinctAnswers} distinct answers) → ${r.backendCalls} ` +
    `backend calls, collapse ratio ${ratio}:1, ${r.elapsedMs.toFixed(0)} ms`;
}

if (import.meta.main) {
  const { values, calls } = parseFlagsOrExit(
    "client",
    "Usage: deno run -A examples/client.ts [--target HOST:PORT] [--backend HOST:PORT] [--calls N]",
    () => {
      const { values } = parseArgs({
        args: Deno.args,
        options: {
          target: { type: "string", default: "127.0.0.1:50052" },
          backend: { type: "string", default: "127.0.0.1:50051" },
          calls: { type: "string", default: "1000" },
        },
      });
      const calls = Number(values.calls);
      if (!Number.isInteger(calls) || calls < 1) {
        throw new RangeError(`--calls must be a positive integer: received ${values.calls}`);
      }
      return { values, calls };
    },
  );
  const result = await herd({ target: values.target!, backend: values.backend!, calls });
  console.log(describe(`herd via ${values.target}`, result));
}
