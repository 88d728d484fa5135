/**
 * The demo: the example backend (50 ms per call), the proxy in front of it, and the example client firing
 * the same herd at the backend directly and then through the proxy.
 *
 * Run it: `deno task demo` (optionally `--calls 5000 --delay 100ms --cache-ttl 200ms`)
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseFlagsOrExit } from "./_cli.ts";
import { parseDuration } from "../src/duration.ts";
import { Proxy } from "../src/proxy.ts";
import { startBackend } from "./backend.ts";
import { describe, herd } from "./client.ts";

const { calls, delayMs, cacheTtlMs, values } = parseFlagsOrExit(
  "demo",
  "Usage: deno task demo [--calls N] [--delay DURATION] [--cache-ttl DURATION]\n" +
    "  (defaults: 1000 calls, 50ms per backend call, the proxy's 100ms cache TTL)",
  () => {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        calls: { type: "string", default: "1000" },
        delay: { type: "string", default: "50ms" },
        "cache-ttl": { type: "string", default: "100ms" },
      },
    });
    const calls = Number(values.calls);
    if (!Number.isInteger(calls) || calls < 1) {
      throw new RangeError(`--calls must be a positive integer: ${values.calls}`);
    }
    return {
      calls,
      delayMs: parseDuration(values.delay!),
      cacheTtlMs: parseDuration(values["cache-ttl"]!),
      values,
    };
  },
);

const backend = await startBackend({ delayMs });
const proxy = await Proxy.start({
  backend: `127.0.0.1:${backend.port}`,
  host: "127.0.0.1",
  port: 0,
  cacheTtlMs,
});
try {
  const backendAddress = `127.0.0.1:${backend.port}`;
  console.log(`backend on ${backendAddress} (${values.delay} per call), proxy on 127.0.0.1:${proxy.port}\n`);
  const direct = await herd({ target: backendAddress, backend: backendAddress, calls });
  console.log(describe("direct to the backend ", direct));
  const viaProxy = await herd({
    target: `127.0.0.1:${proxy.port}`,
    backend: backendAddress,
    calls,
    key: "other",
  });
  console.log(describe("through the collapser", viaProxy));
  console.log(
    `\nThe backend did ${direct.backendCalls} calls' work without the proxy and ${viaProxy.backendCalls} with it.`,
  );
} finally {
  await proxy.close();
  backend.close();
}
