/**
 * Idle-GOAWAY check (denoland/deno#36788: on Deno 2.9.x a GOAWAY received on an idle `node:http2` client
 * session can abort the process; reported after 4 minutes idle, measured here after 10 s too). A grpc-js
 * backend with `grpc.max_connection_idle_ms` closes every connection that has had no call open for that
 * long, as grpc-go's `MaxConnectionIdle` and Envoy's `idle_timeout` do; each target below makes calls,
 * then sits idle until the connections those calls used are closed (by the backend's GOAWAY, or by the
 * target first) and at least one backend idle period has passed, then makes calls again. A target survives
 * when its process is still up, the calls after each idle period all succeed, and nothing but JSON log
 * lines reached its standard error (an nghttp2 assertion would).
 *
 * Every target runs in its own process under the Deno given by `--deno`, each against its own backend
 * (which runs here, under the Deno running this script), all at once:
 *
 * - `proxy`: `main.ts` of this checkout. Unary calls go over the raw HTTP/2 channel (src/h2_channel.ts); one
 *   method is `--no-collapse`d, so its calls, like readiness checks, use the grpc-js channel
 *   (src/backend/upstream.ts). Both sessions sit idle. `--ref REV` adds `proxy@REV`: main.ts as committed at REV
 *   (e.g. `HEAD`, the code before an uncommitted fix), from `git archive`; `--root DIR` adds `proxy@NAME`:
 *   main.ts of another checkout (a variant under trial).
 * - `h2`: an H2Channel that never closes an idle session (`idleTimeoutMs: Infinity`): the backend's GOAWAY
 *   reaches an idle session. `h2-idle`: one that closes it itself after half the backend's idle period.
 * - `raw`: a bare `node:http2` session with H2Channel's settings, left idle; `raw-ping`: the same, pinging
 *   every quarter of the idle period while idle (keepalive without calls).
 * - `grpcjs`: the proxy's grpc-js client (Upstream) as the proxy builds it; `grpcjs-idle`: with
 *   `grpc.client_idle_timeout_ms` at half the backend's idle period.
 *
 * ```sh
 * deno run -A bench/idle_goaway.ts --deno /path/to/deno-2.9.6 --idle 4m --ref HEAD
 * deno run -A bench/idle_goaway.ts --idle 5s --rounds 3 --targets proxy,h2,raw-ping
 * ```
 *
 * Prints a table and writes bench/out/idle-goaway-latest.{md,json}. Exits 1 if a target did not survive.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { rawMethod } from "../examples/backend.ts";
import { formatDuration, parseDuration } from "../src/util/duration.ts";
import { H2Channel } from "../src/backend/h2_channel.ts";
import type { ResponseSink } from "../src/wire/response.ts";
import { Upstream } from "../src/backend/upstream.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const GET = "/bench.Idle/Get";
/** Passed through (`--no-collapse`), so the proxy calls it over its grpc-js channel. */
const PASS = "/bench.Idle/Pass";
const SERVICE = {
  Get: rawMethod(GET, false, false),
  Pass: rawMethod(PASS, false, false),
} satisfies grpc.ServiceDefinition;
const PROBES = ["h2", "h2-idle", "raw", "raw-ping", "grpcjs", "grpcjs-idle"] as const;
type Probe = typeof PROBES[number];

const USAGE = `Usage: deno run -A bench/idle_goaway.ts [options]
  --deno PATH          Deno binary the targets run under (default: this one, ${Deno.execPath()})
  --idle DURATION      the backend's grpc.max_connection_idle_ms (default 4m)
  --rounds N           idle periods per target (default 2)
  --calls N            calls before and after each idle period (default 13)
  --settle DURATION    wait after the idle period before calling again (default 2s)
  --targets LIST       proxy,${PROBES.join(",")} (default: all)
  --ref REV            also run main.ts as committed at REV (target proxy@REV)
  --root DIR           also run main.ts of another checkout (target proxy@NAME; repeatable)
  --proxy-args="..."   more flags for the proxy targets (e.g. --proxy-args="--log-level debug")`;

// ---- Child mode: one probe, run under the Deno being tested; commands on stdin, results on stdout. ----

/** One call by a probe; resolves with its gRPC status code. */
type Caller = (method: string, message: Buffer) => Promise<number>;

function probeCaller(probe: Probe, backend: string, idleMs: number): Caller {
  if (probe === "h2" || probe === "h2-idle") {
    const channel = new H2Channel(backend, { idleTimeoutMs: probe === "h2" ? Infinity : idleMs / 2 });
    return (method, message) =>
      new Promise((resolve) => {
        channel.call(method, message, {}, (e) => e.type === "status" && resolve(e.code));
      });
  }
  if (probe === "grpcjs" || probe === "grpcjs-idle") {
    const upstream = new Upstream(backend, {
      channelOptions: probe === "grpcjs-idle" ? { "grpc.client_idle_timeout_ms": idleMs / 2 } : {},
    });
    return (method, message) =>
      new Promise((resolve) => {
        const sink: ResponseSink = (e) => e.type === "status" && resolve(e.code);
        upstream.call(method, message, new grpc.Metadata(), sink);
      });
  }
  // raw, raw-ping: a bare session with H2Channel's settings, reopened after the backend closes it.
  let session: http2.ClientHttp2Session | undefined;
  const connect = () => {
    const h2 = http2.connect(`http://${backend}`, {
      settings: { enablePush: false, initialWindowSize: 1 << 20 },
      maxSessionMemory: 512,
    });
    h2.on("error", () => {});
    h2.on("goaway", () => session === h2 && (session = undefined));
    h2.on("close", () => session === h2 && (session = undefined));
    if (probe === "raw-ping") {
      const timer = setInterval(() => {
        if (!h2.closed && !h2.destroyed) h2.ping(() => {});
      }, idleMs / 4);
      h2.on("close", () => clearInterval(timer));
    }
    return h2;
  };
  return (method, message) =>
    new Promise((resolve) => {
      session ??= connect();
      const stream = session.request({
        ":method": "POST",
        ":path": method,
        "content-type": "application/grpc",
        te: "trailers",
      });
      let status = 2; // UNKNOWN unless trailers say otherwise
      stream.on("trailers", (t) => status = Number(t["grpc-status"] ?? 2));
      stream.on("response", (h) => h["grpc-status"] !== undefined && (status = Number(h["grpc-status"])));
      stream.on("data", () => {});
      stream.on("error", () => status = 14);
      stream.on("close", () => resolve(status));
      const body = Buffer.alloc(5 + message.length);
      body.writeUInt32BE(message.length, 1);
      body.set(message, 5);
      stream.end(body);
    });
}

/** Makes `n` calls, one after another; counts the status codes. */
async function callMany(call: Caller, n: number, tag: string): Promise<Record<string, number>> {
  const codes: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const code = await call(GET, Buffer.from(JSON.stringify({ key: `${tag}-${i}` })));
    codes[code] = (codes[code] ?? 0) + 1;
  }
  return codes;
}

async function child(probe: Probe, backend: string, idleMs: number): Promise<void> {
  const call = probeCaller(probe, backend, idleMs);
  let buffered = "";
  const encoder = new TextEncoder();
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const [verb, n, tag] = buffered.slice(0, newline).split(" ");
      buffered = buffered.slice(newline + 1);
      if (verb !== "call") continue;
      const codes = await callMany(call, Number(n), tag);
      await Deno.stdout.write(encoder.encode(JSON.stringify(codes) + "\n"));
    }
  }
  Deno.exit(0);
}

// ---- Parent mode: backends, targets, rounds, report. ----

/** channelz's GetServerSockets handler, called in-process: the sockets a server has open. */
type GetServerSockets = (
  call: { request: { server_id: string; start_socket_id: string; max_results: string } },
  callback: (err: unknown, value?: { socket_ref: { socket_id: string }[] }) => void,
) => void;

/** A grpc-js backend that closes connections idle for `idleMs`; `connections()` lists them (channelz ids). */
async function startBackend(idleMs: number) {
  const server = new grpc.Server({ "grpc.max_connection_idle_ms": idleMs });
  const echo = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
    callback(null, call.request);
  server.addService(SERVICE, { Get: echo, Pass: echo });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  const getServerSockets = grpc.getChannelzHandlers().GetServerSockets as unknown as GetServerSockets;
  const connections = () =>
    new Promise<string[]>((resolve, reject) => {
      const request = {
        server_id: String(server.getChannelzRef().id),
        start_socket_id: "0",
        max_results: "0",
      };
      getServerSockets(
        { request },
        (err, value) => err ? reject(err) : resolve(value!.socket_ref.map((ref) => ref.socket_id)),
      );
    });
  return { address: `127.0.0.1:${port}`, connections, close: () => server.forceShutdown() };
}

/** A process under test: lines of standard error kept, and calls made through it. */
interface Target {
  name: string;
  child: Deno.ChildProcess;
  /** Standard error lines that are not JSON log lines (an abort message, a panic). */
  otherStderr: string[];
  exited: Deno.CommandStatus | undefined;
  /** When it exited (`performance.now()`). */
  exitedAt?: number;
  calls(n: number, tag: string): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Standard error lines that say nothing about the process's health: blank, or Deno waiting for a lock. */
function benign(line: string): boolean {
  // deno-lint-ignore no-control-regex
  const text = line.replace(/\x1b\[[0-9;]*m/g, "").trim();
  return text === "" || /^Blocking waiting for file lock/.test(text);
}

/** Collects a child's standard error; resolves `firstJson` with its first JSON line. */
function watchStderr(child: Deno.ChildProcess, otherStderr: string[]) {
  const first = Promise.withResolvers<Record<string, unknown>>();
  first.promise.catch(() => {}); // probes log nothing; a proxy's start-up awaits it
  const reading = (async () => {
    let buffered = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          first.resolve(JSON.parse(line));
        } catch {
          if (!benign(line)) otherStderr.push(line);
        }
      }
    }
    if (!benign(buffered)) otherStderr.push(buffered);
    first.reject(new Error(`exited before logging: ${otherStderr.join("\n")}`));
  })();
  return { firstJson: first.promise, reading };
}

async function startProxy(
  name: string,
  deno: string,
  root: string,
  backend: string,
  proxyArgs: string[],
): Promise<Target> {
  const child = new Deno.Command(deno, {
    args: [
      ...["run", "-A", "main.ts", "--backend", backend, "--host", "127.0.0.1", "--port", "0"],
      ...["--metrics-port", "0", "--cache-ttl", "0", "--no-collapse", PASS],
      ...proxyArgs,
    ],
    cwd: root,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const otherStderr: string[] = [];
  const { firstJson, reading } = watchStderr(child, otherStderr);
  const port = ((await firstJson).properties as { port: number }).port;
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (method: string, message: Buffer) =>
    new Promise<number>((resolve) => {
      const id = (b: Buffer) => b;
      client.makeUnaryRequest(method, id, id, message, (err) => resolve(err?.code ?? 0));
    });
  const target: Target = {
    name,
    child,
    otherStderr,
    exited: undefined,
    async calls(n, tag) {
      const codes = await callMany(call, n, tag);
      const pass = await call(PASS, Buffer.from(JSON.stringify({ key: `${tag}-pass` })));
      codes[pass] = (codes[pass] ?? 0) + 1;
      return codes;
    },
    async stop() {
      client.close();
      if (target.exited === undefined) child.kill("SIGKILL");
      await child.status;
      await reading;
    },
  };
  child.status.then((s) => {
    target.exited = s;
    target.exitedAt = performance.now();
  });
  return target;
}

function startProbe(probe: Probe, deno: string, backend: string, idleMs: number): Target {
  const child = new Deno.Command(deno, {
    args: [
      "run",
      "-A",
      "bench/idle_goaway.ts",
      "--child",
      probe,
      "--backend",
      backend,
      "--idle",
      `${idleMs}ms`,
    ],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const otherStderr: string[] = [];
  const { reading } = watchStderr(child, otherStderr);
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const target: Target = {
    name: probe,
    child,
    otherStderr,
    exited: undefined,
    async calls(n, tag) {
      await writer.write(new TextEncoder().encode(`call ${n} ${tag}\n`));
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error("the probe exited");
        buffered += value;
      }
      const newline = buffered.indexOf("\n");
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      return JSON.parse(line);
    },
    async stop() {
      await writer.close().catch(() => {});
      if (target.exited === undefined) child.kill("SIGKILL");
      await child.status;
      await lines.cancel().catch(() => {});
      await reading;
    },
  };
  child.status.then((s) => {
    target.exited = s;
    target.exitedAt = performance.now();
  });
  return target;
}

/** What happened to one target in one idle period. */
interface Round {
  /** Seconds from the end of the calls until the connections they used were closed (by either side). */
  closedAfterS: number | null;
  /** Seconds from the end of the calls until the process exited, if it did. */
  diedAfterS?: number;
  alive: boolean;
  callsBefore: Record<string, number>;
  callsAfter: Record<string, number> | null;
}

interface TargetResult {
  target: string;
  survived: boolean;
  rounds: Round[];
  exit: string | null;
  stderr: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function runTarget(
  start: (backend: string) => Promise<Target>,
  options: { idleMs: number; rounds: number; calls: number; settleMs: number },
): Promise<TargetResult> {
  const backend = await startBackend(options.idleMs);
  const target = await start(backend.address);
  const rounds: Round[] = [];
  let died: Deno.CommandStatus | undefined;
  const allOk = (codes: Record<string, number> | null) =>
    codes !== null && Object.keys(codes).every((code) => code === "0");
  try {
    let callsBefore = await target.calls(options.calls, "r0");
    for (let r = 1; r <= options.rounds; r++) {
      const idleFrom = performance.now();
      const limit = idleFrom + options.idleMs * 1.5 + 30_000;
      // The connections the calls used; new ones (a readiness probe's) may come and go meanwhile.
      const used = await backend.connections();
      let closedAfterS: number | null = null;
      // Until they are gone, and at least one backend idle period, so that any GOAWAY the backend was
      // going to send has been sent.
      while (target.exited === undefined && performance.now() < limit) {
        if (closedAfterS === null) {
          const open = new Set(await backend.connections());
          if (!used.some((id) => open.has(id))) closedAfterS = (performance.now() - idleFrom) / 1000;
        }
        if (closedAfterS !== null && performance.now() - idleFrom > options.idleMs + 1_000) break;
        await sleep(100);
      }
      await sleep(options.settleMs);
      const alive = target.exited === undefined;
      const callsAfter = alive ? await target.calls(options.calls, `r${r}`).catch(() => null) : null;
      const diedAfterS = target.exitedAt === undefined ? undefined : (target.exitedAt - idleFrom) / 1000;
      rounds.push({ closedAfterS, diedAfterS, alive, callsBefore, callsAfter });
      console.error(
        `${target.name}: round ${r}: connections used gone after ${closedAfterS?.toFixed(1) ?? "—"} s, ` +
          `${alive ? "alive" : `DEAD after ${diedAfterS?.toFixed(1)} s`}, calls after ${
            JSON.stringify(callsAfter)
          }`,
      );
      if (!alive || !allOk(callsAfter)) break;
      callsBefore = callsAfter!;
    }
  } finally {
    died = target.exited; // before stop() kills what is left
    await target.stop();
    backend.close();
  }
  const exit = died && !died.success ? `code ${died.code}${died.signal ? ` (${died.signal})` : ""}` : null;
  const survived = exit === null && target.otherStderr.length === 0 && rounds.length === options.rounds &&
    rounds.every((r) => r.alive && r.closedAfterS !== null && allOk(r.callsAfter));
  return { target: target.name, survived, rounds, exit, stderr: target.otherStderr };
}

/** A copy of the checkout as committed at `rev`, sharing this one's node_modules. */
async function checkoutAt(rev: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "collapser-" });
  const archive = new Deno.Command("git", {
    args: ["archive", "--format=tar", rev],
    cwd: ROOT,
    stdout: "piped",
  })
    .spawn();
  const untar = new Deno.Command("tar", { args: ["-x", "-C", dir], stdin: "piped" }).spawn();
  await archive.stdout.pipeTo(untar.stdin);
  if (!(await archive.status).success || !(await untar.status).success) throw new Error(`git archive ${rev}`);
  await Deno.symlink(`${ROOT}node_modules`, `${dir}/node_modules`);
  return dir;
}

async function version(deno: string): Promise<string> {
  const out = await new Deno.Command(deno, { args: ["--version"], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).split("\n")[0];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      deno: { type: "string", default: Deno.execPath() },
      idle: { type: "string", default: "4m" },
      rounds: { type: "string", default: "2" },
      calls: { type: "string", default: "13" },
      settle: { type: "string", default: "2s" },
      targets: { type: "string", default: ["proxy", ...PROBES].join(",") },
      ref: { type: "string" },
      root: { type: "string", multiple: true, default: [] },
      "proxy-args": { type: "string", default: "" },
      child: { type: "string" },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const idleMs = parseDuration(values.idle);
  if (values.child !== undefined) {
    await child(values.child as Probe, values.backend!, idleMs);
    return 0;
  }
  const options = {
    idleMs,
    rounds: Number(values.rounds),
    calls: Number(values.calls),
    settleMs: parseDuration(values.settle),
  };
  const names = values.targets.split(",");
  for (const name of names) {
    if (name !== "proxy" && !(PROBES as readonly string[]).includes(name)) {
      console.error(`idle_goaway: unknown target ${name}\n\n${USAGE}`);
      return 1;
    }
  }
  const deno = values.deno;
  const proxyArgs = values["proxy-args"].split(/\s+/).filter((arg) => arg !== "");
  const denoVersion = await version(deno);
  console.error(`${denoVersion}; backend idle ${formatDuration(idleMs)}; ${options.rounds} rounds`);
  const runs: Promise<TargetResult>[] = [];
  for (const name of names) {
    if (name === "proxy") {
      runs.push(runTarget((b) => startProxy("proxy", deno, ROOT, b, proxyArgs), options));
      for (const root of values.root) {
        const name = `proxy@${root.replace(/\/+$/, "").split("/").pop()}`;
        runs.push(runTarget((b) => startProxy(name, deno, root, b, proxyArgs), options));
      }
      if (values.ref !== undefined) {
        const root = await checkoutAt(values.ref);
        runs.push(
          runTarget((b) => startProxy(`proxy@${values.ref}`, deno, root, b, proxyArgs), options)
            .finally(() => Deno.remove(root, { recursive: true })),
        );
      }
    } else {
      runs.push(runTarget((b) => Promise.resolve(startProbe(name as Probe, deno, b, idleMs)), options));
    }
  }
  const results = await Promise.all(runs);
  const lines = [
    `# Idle GOAWAY: ${denoVersion}, backend idle ${formatDuration(idleMs)}, ${options.rounds} rounds`,
    "",
    `Generated by \`deno run -A bench/idle_goaway.ts ${Deno.args.join(" ")}\` on ${
      new Date().toISOString()
    }.`,
    "",
    "| Target | Survived | Connections gone after (s) | Died after (s) | Exit | Standard error |",
    "| --- | --- | --: | --: | --- | --- |",
    ...results.map((r) =>
      `| ${r.target} | ${r.survived ? "yes" : "**no**"} | ${
        r.rounds.map((x) => x.closedAfterS?.toFixed(1) ?? "—").join(", ")
      } | ${r.rounds.find((x) => x.diedAfterS !== undefined)?.diedAfterS?.toFixed(1) ?? "—"} | ${
        r.exit ?? "—"
      } | ${r.stderr.slice(0, 2).join(" / ").replaceAll("|", "\\|") || "—"} |`
    ),
    "",
  ];
  const text = lines.join("\n");
  console.log(text);
  await Deno.mkdir(`${ROOT}bench/out`, { recursive: true });
  await Deno.writeTextFile(`${ROOT}bench/out/idle-goaway-latest.md`, text);
  await Deno.writeTextFile(
    `${ROOT}bench/out/idle-goaway-latest.json`,
    JSON.stringify({ deno: denoVersion, ...options, results }, null, 2) + "\n",
  );
  return results.every((r) => r.survived) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
