/**
 * Memory kept per closed connection, side by side: a bare `node:http2` server on Deno that answers every
 * stream with a minimal gRPC response (headers, one empty message, trailers `grpc-status: 0`), and the
 * collapser proxy as its own process (`deno run -A main.ts`, started by tests/_helpers.ts
 * `startCollapserProcess`) in front of the grpc-js test backend. Each server runs in a child process of its
 * own; this process is only the client (and hosts the proxy's backend), so its memory is never measured.
 *
 * ```sh
 * deno task bench:conn-memory                       # 5,000 connections per server
 * deno task bench:conn-memory --connections 20000 --client raw
 * ```
 *
 * Flags (`--help`): `--connections N` (5000), `--warmup W` uncounted connections before sample 0 (200),
 * `--client h2|raw` (h2: a node:http2 session per connection, closed with GOAWAY; raw: tests/_fuzz.ts
 * `rawH2Unary`, socket dropped after the answer), `--v8-flags F` for both servers, `--proxy-args "..."`.
 *
 * Connections are opened one after another, one unary call each. Memory is sampled after the warm-up (0)
 * and after 25/50/75/100 % of them, once the server has seen them close: RSS is VmRSS from /proc for both;
 * the bare server's heap is `Deno.memoryUsage().heapUsed` after a forced GC (`--expose-gc`). The proxy cannot
 * be told to collect, so its heap is `nodejs_heap_size_used_bytes` from its /metrics; the default V8 flags
 * (`--gc-global,--max-semi-space-size=1`) make every GC a full one and keep the young generation at 1 MB, so
 * that reading carries little garbage ("bare heap, no GC" reads the bare server that way, for comparison).
 * "KB/conn" is the least-squares slope of each column. Measured with Deno 2.8.3 on 2 shared cores: 3.7 KB
 * heap per closed connection for both, RSS 23–28 KB; the proxy adds nothing per connection of its own.
 *
 * @module
 */

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";

const USAGE = `Usage: deno task bench:conn-memory [options]

  --connections N      connections per server, one unary call each (default 5000)
  --warmup W           connections before the first sample, not counted (default 200)
  --client KIND        h2 (node:http2 session, graceful close) or raw (raw socket, dropped) (default h2)
  --v8-flags F         V8 flags for both servers (default --gc-global,--max-semi-space-size=1)
  --proxy-args "..."   more flags for the proxy
  -h, --help           this text`;

const PATH = "/test.Test/Unary";
/** One gRPC message of zero bytes: the request, and the bare server's answer. */
const EMPTY_MESSAGE = new Uint8Array(5);
const MB = 2 ** 20;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function bad(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  Deno.exit(1);
}

function parseFlags() {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      options: {
        connections: { type: "string", default: "5000" },
        warmup: { type: "string", default: "200" },
        client: { type: "string", default: "h2" },
        "v8-flags": { type: "string", default: "--gc-global,--max-semi-space-size=1" },
        "proxy-args": { type: "string", default: "" },
        "bare-server": { type: "boolean", default: false }, // internal: run as the bare server child
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (error) {
    return bad((error as Error).message);
  }
  if (parsed.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const count = (name: string, value: string, min: number) =>
    Number.isInteger(Number(value)) && Number(value) >= min
      ? Number(value)
      : bad(`--${name} must be an integer ≥ ${min}, got ${value}`);
  if (parsed.client !== "h2" && parsed.client !== "raw") bad(`--client must be h2 or raw`);
  return {
    connections: count("connections", parsed.connections, 4),
    warmup: count("warmup", parsed.warmup, 0),
    client: parsed.client,
    v8Flags: parsed["v8-flags"],
    proxyArgs: parsed["proxy-args"].split(/\s+/).filter((arg) => arg !== ""),
    bareServer: parsed["bare-server"],
  };
}

/** Lines of a byte stream. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
}

/**
 * The child: a bare node:http2 server. Prints `{"port"}`, then answers every `mem` line on standard input,
 * once its sessions have closed, with `{"heapNoGc", "heap"}` (heapUsed before and after a forced GC).
 */
async function bareServer(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("the bare server needs --v8-flags=--expose-gc");
  let open = 0;
  const server = http2.createServer();
  server.on("session", (session) => {
    open++;
    session.on("close", () => open--);
    session.on("error", () => {});
  });
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.on("error", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(EMPTY_MESSAGE);
    });
    stream.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
  for await (const line of lines(Deno.stdin.readable)) {
    if (line !== "mem") continue;
    for (let i = 0; i < 5000 && open > 0; i++) await sleep(2);
    await sleep(200);
    const heapNoGc = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < 3; i++) {
      gc();
      await sleep(20);
    }
    console.log(JSON.stringify({ heapNoGc, heap: Deno.memoryUsage().heapUsed }));
  }
}

/** VmRSS of a process, in bytes. */
function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

type Sample = { heap: number; rss: number; heapNoGc?: number };

/** A server under measurement. */
interface Target {
  port: number;
  sample(): Promise<Sample>;
  stop(): Promise<void>;
}

async function startBare(v8Flags: string): Promise<Target> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=--expose-gc,${v8Flags}`,
      new URL(import.meta.url).pathname,
      "--bare-server",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = lines(child.stdout);
  const next = async () => JSON.parse((await out.next()).value ?? "null");
  const { port } = await next();
  const input = child.stdin.getWriter();
  return {
    port,
    async sample() {
      await input.write(new TextEncoder().encode("mem\n"));
      const { heap, heapNoGc } = await next();
      return { heap, heapNoGc, rss: rssOf(child.pid) };
    },
    async stop() {
      await input.close();
      await child.status;
    },
  };
}

async function startProxy(v8Flags: string, proxyArgs: string[]): Promise<Target> {
  const { admin, startCollapserProcess, startTestBackend } = await import("../tests/_helpers.ts");
  const backend = await startTestBackend();
  const proc = await startCollapserProcess(proxyArgs, {
    BACKEND_ADDRESS: backend.address,
    DENO_V8_FLAGS: v8Flags,
  });
  const heap = async () => {
    const { body } = await admin(proc.metricsPort, "/metrics");
    return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(body)?.[1] ?? NaN);
  };
  return {
    port: proc.port,
    async sample() {
      await sleep(500); // no connection gauge to wait on: let the last closes land
      const readings = [await heap(), await heap(), await heap()];
      return { heap: Math.min(...readings), rss: rssOf(proc.child.pid) };
    },
    async stop() {
      const status = await proc.stop();
      backend.close();
      if (proc.otherOutput.length) console.error(`proxy stderr:\n${proc.otherOutput.join("\n")}`);
      if (!status.success) console.error(`proxy exited with ${status.code}`);
    },
  };
}

/** One unary call on a fresh node:http2 client session, closed gracefully; true if it got grpc-status 0. */
function h2Unary(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    let ok = false;
    const timer = setTimeout(() => session.destroy(), 10_000);
    session.on("error", () => {});
    session.on("close", () => {
      clearTimeout(timer);
      resolve(ok);
    });
    const stream = session.request({
      ":method": "POST",
      ":path": PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("response", (headers) => ok ||= headers["grpc-status"] === "0");
    stream.on("trailers", (trailers) => ok ||= trailers["grpc-status"] === "0");
    stream.on("error", () => {});
    stream.on("close", () => session.close());
    stream.resume();
    stream.end(EMPTY_MESSAGE);
  });
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const [mx, my] = [mean(xs), mean(ys)];
  const num = xs.reduce((sum, x, i) => sum + (x - mx) * (ys[i] - my), 0);
  return num / xs.reduce((sum, x) => sum + (x - mx) ** 2, 0);
}

async function main(): Promise<void> {
  const flags = parseFlags();
  if (flags.bareServer) return await bareServer();
  const raw = flags.client === "raw" ? (await import("../tests/_fuzz.ts")).rawH2Unary : undefined;
  const call = raw ? (port: number) => raw(port, PATH, new Uint8Array()) : h2Unary;
  const marks = [0, 1, 2, 3, 4].map((q) => Math.round((flags.connections * q) / 4));
  console.log(
    `${flags.connections} connections per server (after ${flags.warmup} warm-up), client ${flags.client}, ` +
      `V8 flags ${flags.v8Flags}`,
  );

  const measure = async (name: string, target: Target): Promise<Sample[]> => {
    const started = performance.now();
    let failed = 0;
    const connect = async (n: number) => {
      for (let i = 0; i < n; i++) if (!(await call(target.port))) failed++;
    };
    await connect(flags.warmup);
    const samples = [await target.sample()];
    for (let q = 1; q < marks.length; q++) {
      await connect(marks[q] - marks[q - 1]);
      samples.push(await target.sample());
      console.log(
        `  ${name}: ${marks[q]} connections, ${Math.round((performance.now() - started) / 1000)} s`,
      );
    }
    await target.stop();
    if (failed) console.log(`  ${name}: ${failed} calls failed`);
    return samples;
  };
  const bare = await measure("bare", await startBare(flags.v8Flags));
  const proxy = await measure("proxy", await startProxy(flags.v8Flags, flags.proxyArgs));

  const columns: [string, (i: number) => number][] = [
    ["bare heap MB", (i) => bare[i].heap],
    ["bare heap, no GC", (i) => bare[i].heapNoGc!],
    ["bare RSS MB", (i) => bare[i].rss],
    ["proxy heap MB", (i) => proxy[i].heap],
    ["proxy RSS MB", (i) => proxy[i].rss],
  ];
  const cell = (s: string, width: number) => s.padStart(width);
  console.log(`\n${cell("connections", 11)} | ${columns.map(([h]) => h).join(" | ")}`);
  console.log(`${"-".repeat(11)}-|-${columns.map(([h]) => "-".repeat(h.length)).join("-|-")}`);
  for (let i = 0; i < marks.length; i++) {
    const row = columns.map(([h, value]) => cell((value(i) / MB).toFixed(1), h.length));
    console.log(`${cell(String(marks[i]), 11)} | ${row.join(" | ")}`);
  }
  const kb = columns.map(([, value]) => slope(marks, marks.map((_, i) => value(i))) / 1024);
  const kbRow = columns.map(([h], i) => cell(kb[i].toFixed(2), h.length));
  console.log(`${cell("KB/conn", 11)} | ${kbRow.join(" | ")}`);
  console.log(
    `\nKB kept per closed connection: bare heap ${kb[0].toFixed(2)} (no GC ${kb[1].toFixed(2)}), ` +
      `RSS ${kb[2].toFixed(2)}; proxy heap ${kb[3].toFixed(2)}, RSS ${kb[4].toFixed(2)}`,
  );
  console.log(
    `proxy / bare: heap ${(kb[3] / kb[0]).toFixed(2)}× (vs bare no-GC ${(kb[3] / kb[1]).toFixed(2)}×), ` +
      `RSS ${(kb[4] / kb[2]).toFixed(2)}×`,
  );
}

await main();
Deno.exit(0);
